import ArgumentParser
import ClusterPKI
import Crypto
import EtcdServer
import KVStore
import Foundation
import Logging
import ServiceLifecycle
import X509

/// A node's identity and settings, kept in `DATA/node.json` by `init` and `join` so that
/// `raftkube start` brings the same node back with no flags.
struct NodeConfig: Codable, Sendable {
    var clusterName: String
    /// The store's `--initial-cluster-token` (member IDs derive from it).
    var clusterToken: String
    var nodeName: String
    var advertiseAddress: String
    var clientPort: Int
    var peerPort: Int
    var joinPort: Int
    var worker: Bool
    /// name=peerURL of the members the store starts with, and whether it bootstraps them.
    var initialCluster: String
    var initialClusterState: String
    /// The CA this node belongs to: a data directory of another cluster is refused.
    var caHash: String
    var votersMax: Int

    static func path(_ dataDir: String) -> String { "\(dataDir)/node.json" }
    /// Where `leave` moves `node.json`, so that the node is not started again.
    static func leftPath(_ dataDir: String) -> String { path(dataDir) + ".left" }

    /// The node in `dataDir`, or why there is none to run or act for (it left; never made).
    static func require(_ dataDir: String) throws -> NodeConfig {
        if let config = try load(dataDir) { return config }
        if FileManager.default.fileExists(atPath: leftPath(dataDir)) {
            throw ValidationError("the node in \(dataDir) left its cluster (raftkube leave): join again with a new data directory")
        }
        throw ValidationError("\(dataDir) holds no node: run `raftkube init` or `raftkube join` first")
    }

    static func load(_ dataDir: String) throws -> NodeConfig? {
        guard let data = FileManager.default.contents(atPath: path(dataDir)) else { return nil }
        do {
            return try JSONDecoder().decode(NodeConfig.self, from: data)
        } catch {
            throw ValidationError("\(path(dataDir)) is not a raftkube node configuration: \(error)")
        }
    }

    func save(_ dataDir: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try DurableFile.write(String(decoding: try encoder.encode(self), as: UTF8.self) + "\n", to: Self.path(dataDir), secret: false)
    }
}

/// Where a node keeps things under its data directory (all of it private: 0600 files, 0700
/// directories). Each role has its own certificate:
/// - `peer`: control-plane nodes' store member (`raftkube:peers`, bound to the member ID): the
///   peer port, serving the store API and the join port, forwarding to the leader;
/// - `store-client`: the API server's client of the store (`raftkube:store-clients`);
/// - `node`: the kubelet's identity (`system:nodes`, CN `system:node:NAME`), on every node; a
///   worker holds only this and the CA certificate, never the CA key;
/// - `admin`: the administrator (`system:masters`), written by `init`.
struct NodePaths {
    let dataDir: String
    var pki: String { "\(dataDir)/pki" }
    var caCertificate: String { "\(pki)/ca.crt" }
    var caKey: String { "\(pki)/ca.key" }
    var peerCertificate: String { "\(pki)/peer.crt" }
    var peerKey: String { "\(pki)/peer.key" }
    var storeClientCertificate: String { "\(pki)/store-client.crt" }
    var storeClientKey: String { "\(pki)/store-client.key" }
    var nodeCertificate: String { "\(pki)/node.crt" }
    var nodeKey: String { "\(pki)/node.key" }
    var adminCertificate: String { "\(pki)/admin.crt" }
    var adminKey: String { "\(pki)/admin.key" }
    var adminConfig: String { "\(dataDir)/admin.conf" }
    var store: String { "\(dataDir)/store" }

    /// Issues a control-plane node's own certificates with the CA: its peer certificate and its
    /// store-client certificate (both bound to `memberID`), each with a key of its own.
    func issueControlPlane(ca: CertificateAuthority, name: String, address: String, memberID: UInt64) throws {
        let peerKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
        try PEMFiles.write([try ca.issue(profile: .peer(memberID: memberID), commonName: name, dnsNames: [name, "localhost"],
                                         ipAddresses: [address, "127.0.0.1"], publicKey: peerKey.publicKey)], to: peerCertificate)
        try PEMFiles.write(peerKey, to: self.peerKey)
        let clientKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
        try PEMFiles.write([try ca.issue(profile: .storeClient(memberID: memberID), commonName: "raftkube-apiserver \(name)",
                                         publicKey: clientKey.publicKey)], to: storeClientCertificate)
        try PEMFiles.write(clientKey, to: storeClientKey)
    }
}

/// Runs a node from its saved configuration: the store member with mutual TLS everywhere, the
/// join endpoint and the learner promoter on control-plane nodes; nothing yet on workers.
enum NodeRunner {
    static func run(_ config: NodeConfig, dataDir: String, certificateCheckInterval: Duration = CertificateRenewer.defaultInterval,
                    afterStart: (@Sendable (StoreMember, Logger) async -> Void)? = nil) async throws {
        let paths = NodePaths(dataDir: dataDir)
        StoreCommand.bootstrapLogging()
        try PrivateFiles.prepare(dataDir)
        // `raftkube leave` finds the running node by this file.
        try DurableFile.write("\(getpid())\n", to: "\(dataDir)/node.pid", secret: false)
        let logger = Logger(label: "raftkube.node")
        if config.worker {
            logger.info("worker node up; it runs no store member (the kubelet and proxy come later)", metadata: ["node": "\(config.nodeName)"])
            try await ServiceGroup(services: [IdleService()], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
            return
        }
        for (name, expiry) in try CertificateRenewal.renewDue(paths, clusterName: config.clusterName) {
            logger.info("renewed a certificate with fewer than \(CertificateRenewal.renewBeforeDays) days left", metadata: ["certificate": "\(name)", "expires": "\(expiry)"])
        }
        let address = config.advertiseAddress
        let tls = ["--cert-file", paths.peerCertificate, "--key-file", paths.peerKey, "--trusted-ca-file", paths.caCertificate, "--client-cert-auth",
                   "--peer-cert-file", paths.peerCertificate, "--peer-key-file", paths.peerKey, "--peer-trusted-ca-file", paths.caCertificate]
        let store = try StoreCommand.parse([
            "--name", config.nodeName, "--data-dir", paths.store,
            "--listen-client-urls", "https://\(address):\(config.clientPort)", "--listen-peer-urls", "https://\(address):\(config.peerPort)",
            "--initial-cluster", config.initialCluster, "--initial-cluster-state", config.initialClusterState,
            "--initial-cluster-token", config.clusterToken,
        ] + tls)
        let authority = CertificateAuthority(certificate: try PEMFiles.certificates(paths.caCertificate)[0], privateKey: try PEMFiles.privateKey(paths.caKey))
        let identity = try IdentityFiles(certificate: paths.peerCertificate, key: paths.peerKey, trustedCA: paths.caCertificate, logger: logger)
        try await store.runMember { member, logger in
            let join = JoinAuthority(member: member, authority: authority, clusterName: config.clusterName,
                                     clientPort: config.clientPort, peerPort: config.peerPort, logger: logger)
            var services: [any Service] = [
                JoinServer(authority: join, identity: identity, host: address, port: config.joinPort),
                AutoPromoter(member: member, votersMax: config.votersMax, logger: logger),
                TokenJanitor(member: member, logger: logger),
                CertificateRenewer(paths: paths, clusterName: config.clusterName, interval: certificateCheckInterval, logger: logger),
            ]
            if let afterStart { services.append(OneShot(member: member, logger: logger, body: afterStart)) }
            return services
        }
    }

    /// A service that does nothing until shutdown (a worker's placeholder).
    struct IdleService: Service {
        func run() async throws {
            try? await gracefulShutdown()
        }
    }

    /// Runs `body` once after start, then idles until shutdown.
    struct OneShot: Service {
        let member: StoreMember
        let logger: Logger
        let body: @Sendable (StoreMember, Logger) async -> Void
        func run() async throws {
            await body(member, logger)
            try? await gracefulShutdown()
        }
    }
}

/// Writes a line to standard output at once (no buffering: progress must show while the node runs).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// The first non-loopback IPv4 address of this machine (127.0.0.1 when there is none).
func defaultAddress() -> String {
    var list: UnsafeMutablePointer<ifaddrs>?
    guard getifaddrs(&list) == 0, let first = list else { return "127.0.0.1" }
    defer { freeifaddrs(list) }
    var cursor: UnsafeMutablePointer<ifaddrs>? = first
    while let entry = cursor {
        defer { cursor = entry.pointee.ifa_next }
        guard let socketAddress = entry.pointee.ifa_addr, socketAddress.pointee.sa_family == UInt16(AF_INET) else { continue }
        var address = socketAddress.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
        var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        inet_ntop(AF_INET, &address, &text, socklen_t(text.count))
        let string = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if !string.hasPrefix("127.") { return string }
    }
    return "127.0.0.1"
}

/// Options shared by init and join.
struct NodeOptions: ParsableArguments {
    @Option(help: "Address other nodes and clients reach this node at (default: this machine's first non-loopback IPv4 address).")
    var advertiseAddress: String?

    @Option(help: "Data directory (certificates, node.json, the store).")
    var dataDir: String = "/var/lib/raftkube"

    @Option(help: "This node's name (default: the host name).")
    var nodeName: String?

    @Option(help: "Port of the etcd API.")
    var clientPort: Int = 2379

    @Option(help: "Port of peer traffic.")
    var peerPort: Int = 2380

    @Option(help: "Port of the join endpoint (control-plane nodes).")
    var joinPort: Int = 2381

    var name: String {
        nodeName ?? ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "node"
    }

    var address: String { advertiseAddress ?? defaultAddress() }

    /// Refuses a data directory that already holds a node.
    func checkFresh(caHash: String?) throws {
        guard let existing = try NodeConfig.load(dataDir) else { return }
        if let caHash, existing.caHash != caHash {
            throw ValidationError("\(dataDir) belongs to another cluster (\(existing.clusterName), CA \(existing.caHash)): use another --data-dir, or remove it if that cluster is gone. Nothing was changed.")
        }
        throw ValidationError("\(dataDir) already holds node \(existing.nodeName) of cluster \(existing.clusterName): start it with `raftkube start --data-dir \(dataDir)`. Nothing was changed.")
    }
}

struct InitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create a new cluster on this machine and run its first node (in the foreground, as a systemd unit would).")

    @OptionGroup var node: NodeOptions

    @Option(help: "Name of the cluster (in its CA's name).")
    var clusterName: String = "raftkube"

    @Option(help: "Lifetime of the printed worker join token, e.g. 24h, 30m, 10s.")
    var tokenTtl: String = "24h"

    @Option(help: "Lifetime of the printed control-plane join token (it hands over the CA key, so it lives short), e.g. 2h.")
    var controlPlaneTokenTtl: String = "2h"

    @Option(help: "How many control-plane nodes become voters (later ones stay learners).")
    var votersMax: Int = 3

    @Option(help: "Start the new cluster's store from a backup (a file of `etcdctl snapshot save`): its keys, their history and revisions, and leases; not its members.")
    var restore: String?

    func run() async throws {
        try node.checkFresh(caHash: nil)
        guard let ttl = StoreCommand.duration(tokenTtl), ttl > .zero else { throw ValidationError("--token-ttl: '\(tokenTtl)' is not a duration like 24h or 30m") }
        guard let controlPlaneTTL = StoreCommand.duration(controlPlaneTokenTtl), controlPlaneTTL > .zero else {
            throw ValidationError("--control-plane-token-ttl: '\(controlPlaneTokenTtl)' is not a duration like 2h or 30m")
        }
        guard (1...5).contains(votersMax) else { throw ValidationError("--voters-max must be 1 to 5") }
        let address = node.address
        let name = node.name
        let paths = NodePaths(dataDir: node.dataDir)
        try PrivateFiles.prepare(node.dataDir)
        func progress(_ line: String) { say("[init] \(line)") }
        if let restore {
            progress("restoring the store from \(restore)")
            let revision = try Self.restoreBackup(restore, into: paths.store)
            progress("restored keys up to revision \(revision)")
        }
        progress("creating the cluster CA for \(clusterName)")
        let ca = try CertificateAuthority.create(clusterName: clusterName)
        try PEMFiles.write([ca.certificate], to: paths.caCertificate)
        try PEMFiles.write(ca.privateKey!, to: paths.caKey)
        let clusterToken = String(ca.hash.dropFirst("sha256:".count).prefix(16))
        let peerURL = "https://\(address):\(node.peerPort)"
        progress("issuing the certificates of node \(name) for \(address): peer, store client, node")
        try paths.issueControlPlane(ca: ca, name: name, address: address, memberID: StoreMember.memberID(peerURL: peerURL, clusterToken: clusterToken))
        let nodeKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
        try PEMFiles.write([try ca.issue(profile: .node, commonName: JoinAuthority.nodeCommonName(name), dnsNames: [name, "localhost"],
                                         ipAddresses: [address, "127.0.0.1"], publicKey: nodeKey.publicKey)], to: paths.nodeCertificate)
        try PEMFiles.write(nodeKey, to: paths.nodeKey)
        progress("issuing the administrator's certificate and writing \(paths.adminConfig)")
        let adminKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let admin = try ca.issue(profile: .client(organization: CertificateAuthority.adminOrganization), commonName: "admin", publicKey: adminKey.publicKey)
        try PEMFiles.write([admin], to: paths.adminCertificate)
        try PEMFiles.write(adminKey, to: paths.adminKey)
        try DurableFile.write(AdminConfig.kubeconfig(clusterName: clusterName, server: "https://\(address):6443",
                                                  ca: ca.certificate, certificate: admin, key: adminKey),
                           to: paths.adminConfig, secret: true)
        let config = NodeConfig(clusterName: clusterName, clusterToken: clusterToken, nodeName: name, advertiseAddress: address,
                                clientPort: node.clientPort, peerPort: node.peerPort, joinPort: node.joinPort, worker: false,
                                initialCluster: "\(name)=\(peerURL)", initialClusterState: "new", caHash: ca.hash, votersMax: votersMax)
        try config.save(node.dataDir)
        progress("starting node \(name): store on https://\(address):\(node.clientPort), peers on :\(node.peerPort), joins on :\(node.joinPort)")
        let workerToken = BootstrapToken(), controlPlaneToken = BootstrapToken()
        let workerSeconds = Double(ttl.components.seconds), controlPlaneSeconds = Double(controlPlaneTTL.components.seconds)
        let joinPort = node.joinPort
        let (workerTTLText, controlPlaneTTLText) = (tokenTtl, controlPlaneTokenTtl)
        try await NodeRunner.run(config, dataDir: node.dataDir) { member, logger in
            for (token, seconds, controlPlane) in [(controlPlaneToken, controlPlaneSeconds, true), (workerToken, workerSeconds, false)] {
                while !Task.isCancelled {
                    do {
                        try await BootstrapTokens.create(token, ttl: seconds, description: "made by raftkube init", controlPlane: controlPlane, member: member)
                        break
                    } catch {
                        try? await Task.sleep(for: .milliseconds(300))
                    }
                }
            }
            say("[init] the cluster is up")
            say("[init] join more control-plane nodes (store members; this token hands over the CA key and expires in \(controlPlaneTTLText)) with:")
            say("raftkube join \(address):\(joinPort) --token \(controlPlaneToken) --ca-cert-hash \(ca.hash) --control-plane")
            say("[init] join workers (the token expires in \(workerTTLText)) with:")
            say("raftkube join \(address):\(joinPort) --token \(workerToken) --ca-cert-hash \(ca.hash)")
        }
    }
}

extension InitCommand {
    /// Writes the store database of a new node from a backup file, checked first (checksum,
    /// SQLite integrity, schema); returns the backup's revision. On a refusal nothing is left.
    static func restoreBackup(_ file: String, into storeDirectory: String) throws -> Int64 {
        guard let contents = FileManager.default.contents(atPath: file) else { throw ValidationError("--restore: cannot read \(file)") }
        let bytes = [UInt8](contents)
        // `etcdctl snapshot save` files end in the database's SHA-256; a bare database file also
        // works. Either way the store checks the image (SQLite header, integrity, schema).
        let database = SnapshotFile.database(from: bytes) ?? bytes
        let path = "\(storeDirectory)/kv.sqlite"
        guard !FileManager.default.fileExists(atPath: path) else {
            throw ValidationError("--restore: \(storeDirectory) already holds a store; use an empty --data-dir. Nothing was changed.")
        }
        try FileManager.default.createDirectory(atPath: storeDirectory, withIntermediateDirectories: true)
        do {
            let store = try KVStore.open(path: path)
            defer { store.close() }
            try store.restoreBackup(database)
            return store.currentRevision
        } catch {
            try? FileManager.default.removeItem(atPath: storeDirectory)
            throw ValidationError("--restore: \(file) cannot be restored: \(error). Nothing was changed.")
        }
    }
}

struct JoinCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "join",
        abstract: "Join this machine to a cluster (checks the cluster's CA against the pinned hash before sending anything).")

    @Argument(help: "A control-plane node's join endpoint, ADDRESS:PORT (the join command printed by init).")
    var endpoint: String

    @Option(help: "Bootstrap token, [a-z0-9]{6}.[a-z0-9]{16}.")
    var token: String

    @Option(help: "sha256:<hex> of the cluster CA's public key.")
    var caCertHash: String

    @Flag(help: "Join as a control-plane node (a store member that holds the CA key): needs a control-plane token. Without it the node joins as a worker.")
    var controlPlane = false

    @OptionGroup var node: NodeOptions

    func run() async throws {
        do {
            _ = try BootstrapToken(parsing: token)
            try CertificateAuthority.validateHash(caCertHash)
        } catch {
            throw ValidationError("\(error)")
        }
        guard let colon = endpoint.lastIndex(of: ":"), let port = Int(endpoint[endpoint.index(after: colon)...]), (1...65535).contains(port) else {
            throw ValidationError("'\(endpoint)' is not ADDRESS:PORT (init prints the exact join command)")
        }
        try node.checkFresh(caHash: caCertHash)
        try PrivateFiles.prepare(node.dataDir)
        let host = String(endpoint[..<colon])
        let address = node.address
        let name = node.name
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        say("[join] checking \(endpoint) against \(caCertHash), then asking to join as \(controlPlane ? "control-plane" : "worker") node \(name) (\(address))")
        let response: JoinResponse
        do {
            response = try await JoinClient.join(host: host, port: port, caHash: caCertHash, request: JoinRequest(
                token: token, nodeName: name, advertiseAddress: address, controlPlane: controlPlane, publicKey: try key.publicKey.serializeAsPEM().pemString))
        } catch {
            say("[join] refused: \(error)")
            throw ExitCode(1)
        }
        if let error = response.error {
            say("[join] refused: \(error). Nothing was changed.")
            throw ExitCode(1)
        }
        guard let certificate = response.certificate, let caCertificate = response.caCertificate, let clusterName = response.clusterName,
              let clusterToken = response.clusterToken
        else {
            say("[join] the server's answer is incomplete")
            throw ExitCode(1)
        }
        let paths = NodePaths(dataDir: node.dataDir)
        try PEMFiles.write(caCertificate, to: paths.caCertificate, secret: false)
        try PEMFiles.write(certificate, to: paths.nodeCertificate, secret: false)
        try PEMFiles.write(key, to: paths.nodeKey)
        if controlPlane {
            guard let caKey = response.caKey, response.initialCluster != nil else {
                say("[join] the server's answer to a control-plane join has no CA key or member list")
                throw ExitCode(1)
            }
            try PEMFiles.write(caKey, to: paths.caKey, secret: true)
            let ca = CertificateAuthority(certificate: try PEMFiles.certificates(paths.caCertificate)[0], privateKey: try PEMFiles.privateKey(paths.caKey))
            let memberID = StoreMember.memberID(peerURL: "https://\(address):\(node.peerPort)", clusterToken: clusterToken)
            try paths.issueControlPlane(ca: ca, name: name, address: address, memberID: memberID)
        }
        let config = NodeConfig(clusterName: clusterName, clusterToken: clusterToken, nodeName: name, advertiseAddress: address,
                                clientPort: node.clientPort, peerPort: node.peerPort, joinPort: node.joinPort, worker: !controlPlane,
                                initialCluster: response.initialCluster ?? "", initialClusterState: "existing", caHash: caCertHash, votersMax: 3)
        try config.save(node.dataDir)
        say("[join] joined \(clusterName) as \(name); starting the node\(controlPlane ? " (a learner until it has caught up)" : " (a worker: no store member, no CA key)")")
        try await NodeRunner.run(config, dataDir: node.dataDir)
    }
}

struct StartCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start",
        abstract: "Start this machine's node again from its data directory (what a systemd unit runs after init or join).")

    @Option(help: "Data directory given to init or join.")
    var dataDir: String = "/var/lib/raftkube"

    @Option(help: "Seconds between checks of the node's certificates: those with fewer than 30 days left are renewed and used for new connections.")
    var certificateCheckInterval: Int = 3_600

    func validate() throws {
        guard (1...86_400).contains(certificateCheckInterval) else {
            throw ValidationError("--certificate-check-interval: \(certificateCheckInterval) is not between 1 and 86400 seconds")
        }
    }

    func run() async throws {
        try await NodeRunner.run(try NodeConfig.require(dataDir), dataDir: dataDir, certificateCheckInterval: .seconds(certificateCheckInterval))
    }
}

/// Renews a control-plane node's certificates while it runs, before fewer than
/// ``CertificateRenewal/renewBeforeDays`` remain (kubeadm renews only on upgrades; a node that
/// runs for a year would otherwise lose its peers). The listeners read their certificate files
/// again when they change (``IdentityFiles``): the next connection presents the renewed one.
struct CertificateRenewer: Service {
    static let defaultInterval: Duration = .seconds(3_600)
    let paths: NodePaths
    let clusterName: String
    let interval: Duration
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard !Task.isCancelled else { return }
                do {
                    for (name, expiry) in try CertificateRenewal.renewDue(paths, clusterName: clusterName) {
                        logger.info("renewed a certificate with fewer than \(CertificateRenewal.renewBeforeDays) days left", metadata: ["certificate": "\(name)", "expires": "\(expiry)"])
                    }
                } catch {
                    logger.error("cannot renew the node's certificates; retrying at the next check", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}

/// The administrator's client configuration, in kubeconfig's format (what kubectl reads; the API
/// server comes later; until then its server URL names the port the API server will have).
enum AdminConfig {
    static func kubeconfig(clusterName: String, server: String, ca: Certificate, certificate: Certificate, key: Certificate.PrivateKey) throws -> String {
        func base64(_ pem: String) -> String { Data(pem.utf8).base64EncodedString() }
        return """
        apiVersion: v1
        kind: Config
        clusters:
        - name: \(clusterName)
          cluster:
            server: \(server)
            certificate-authority-data: \(base64(try ca.serializeAsPEM().pemString))
        users:
        - name: admin
          user:
            client-certificate-data: \(base64(try certificate.serializeAsPEM().pemString))
            client-key-data: \(base64(try key.serializeAsPEM().pemString))
        contexts:
        - name: admin@\(clusterName)
          context:
            cluster: \(clusterName)
            user: admin
        current-context: admin@\(clusterName)

        """
    }
}
