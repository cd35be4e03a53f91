import ArgumentParser
import ClusterPKI
import Crypto
import EtcdServer
import Node
import KVStore
import Foundation
import Logging
import ServiceLifecycle
import X509

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
        guard let ttl = StoreNode.duration(tokenTtl), ttl > .zero else { throw ValidationError("--token-ttl: '\(tokenTtl)' is not a duration like 24h or 30m") }
        guard let controlPlaneTTL = StoreNode.duration(controlPlaneTokenTtl), controlPlaneTTL > .zero else {
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
        StoreCommand.bootstrapLogging()
        try await NodeRunner.run(config, dataDir: node.dataDir) { store, logger in
            for (token, seconds, controlPlane) in [(controlPlaneToken, controlPlaneSeconds, true), (workerToken, workerSeconds, false)] {
                while !Task.isCancelled {
                    do {
                        try await BootstrapTokens.create(token, ttl: seconds, description: "made by raftkube init", controlPlane: controlPlane, store: store)
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
        StoreCommand.bootstrapLogging()
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
        StoreCommand.bootstrapLogging()
        try await NodeRunner.run(try NodeConfig.require(dataDir), dataDir: dataDir, certificateCheckInterval: .seconds(certificateCheckInterval))
    }
}
