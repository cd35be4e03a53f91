import ArgumentParser
import ClusterPKI
import EtcdServer
import KVStore
import Foundation
import Logging
import NIOConcurrencyHelpers
import Raft
import X509
import RaftRuntime
import ServiceLifecycle

/// `raftkube store`: one member of the etcd-compatible replicated store, bootstrapped statically
/// the way etcd is (`--initial-cluster`). Restarting with the same data directory resumes.
struct StoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "Run a member of the etcd-compatible replicated store (etcd v3 gRPC API).")

    @Option(help: "This member's name, as listed in --initial-cluster.")
    var name: String

    @Option(help: "Data directory (the Raft log in raft/, the keyspace in kv.sqlite).")
    var dataDir: String

    @Option(help: "URL to serve the etcd v3 API on, e.g. http://127.0.0.1:2379.")
    var listenClientUrls: String

    @Option(help: "URL for peer traffic, e.g. http://127.0.0.1:2380.")
    var listenPeerUrls: String

    @Option(help: "Comma-separated name=peer-URL of every initial member, in the same order on every member.")
    var initialCluster: String

    @Option(help: "new (bootstrap the listed members) or existing.")
    var initialClusterState: String = "new"

    @Option(help: "Client URL to tell other members and clients (default: --listen-client-urls).")
    var advertiseClientUrls: String?

    @Option(help: "Peer URL to tell other members (default: --listen-peer-urls); must be this member's entry in --initial-cluster.")
    var initialAdvertisePeerUrls: String?

    @Option(help: "Mixed into member and cluster IDs, so that two clusters never share them.")
    var initialClusterToken: String = "etcd-cluster"

    @Option(help: "How often idle watches created with progress_notify hear the revision, e.g. 10m, 5s, 500ms.")
    var experimentalWatchProgressNotifyInterval: String = "10m"

    @Option(help: "Applied entries between snapshots of the keyspace (etcd's --snapshot-count).")
    var snapshotCount: UInt64 = 100_000

    @Option(help: "Database size in bytes past which writes that add data are refused and the NOSPACE alarm is raised (etcd's --quota-backend-bytes; 0: 2 GiB; at most 7 GiB, under the 8 GiB a snapshot may have; negative: no quota, which lets a database outgrow what a snapshot can carry).")
    var quotaBackendBytes: Int64 = 0

    @Option(help: "Milliseconds per Raft tick.")
    var heartbeatInterval: Int = 100

    @Option(help: "TLS certificate (PEM) for the etcd API; client URLs are then https.")
    var certFile: String?

    @Option(help: "Private key (PEM) of --cert-file.")
    var keyFile: String?

    @Option(help: "CA certificate (PEM) that client certificates must chain to.")
    var trustedCaFile: String?

    @Flag(inversion: .prefixedNo, help: "Require a client certificate issued by --trusted-ca-file on the etcd API (the default with https client URLs; --no-client-cert-auth lets anyone who reaches the port in).")
    var clientCertAuth: Bool?

    @Flag(help: "Allow plain http:// URLs on addresses other than loopback (anyone on the network can then read and write the store, or pose as a peer).")
    var insecurePlaintext = false

    @Option(help: "TLS certificate (PEM) for peer traffic; peer URLs are then https and peers must present a node certificate of the same CA.")
    var peerCertFile: String?

    @Option(help: "Private key (PEM) of --peer-cert-file.")
    var peerKeyFile: String?

    @Option(help: "CA certificate (PEM) that peer certificates must chain to.")
    var peerTrustedCaFile: String?

    /// Logs go to standard error at info level; set up once per process.
    static func bootstrapLogging() {
        LoggingOnce.bootstrap
    }

    /// The TLS identity given by a certificate/key/CA option triple, or nil when none is given;
    /// a partial triple, or an https URL without one (or the reverse), is a usage error. The
    /// files are read again when they change (renewal takes effect without a restart).
    static func identity(certificate: String?, key: String?, ca: String?, options: String, urls: [String],
                         revocation: (@Sendable (Certificate) -> String?)? = nil, logger: Logger) throws -> IdentityFiles? {
        let https = urls.allSatisfy { $0.hasPrefix("https://") }
        guard urls.allSatisfy({ $0.hasPrefix("https://") == https }) else { throw ValidationError("\(urls.joined(separator: ", ")): mixed http and https URLs") }
        guard let certificate, let key, let ca else {
            if certificate != nil || key != nil || ca != nil { throw ValidationError("\(options) go together: give all three or none") }
            if https { throw ValidationError("\(urls.joined(separator: ", ")): https URLs need \(options)") }
            return nil
        }
        guard https else { throw ValidationError("\(options) are given, so the URLs must be https: \(urls.joined(separator: ", "))") }
        do {
            return try IdentityFiles(certificate: certificate, key: key, trustedCA: ca, revocation: revocation, logger: logger)
        } catch {
            throw ValidationError("\(options): \(error)")
        }
    }

    static func endpoint(_ url: String, option: String) throws -> PeerAddress {
        guard let address = StoreMember.address(ofURL: url) else {
            throw ValidationError("\(option): '\(url)' is not a URL like http://127.0.0.1:2379")
        }
        return address
    }

    /// An etcd-style duration: a number and one of ms, s, m, h.
    static func duration(_ text: String) -> Duration? {
        for (suffix, milliseconds) in [("ms", 1.0), ("s", 1_000.0), ("m", 60_000.0), ("h", 3_600_000.0)] where text.hasSuffix(suffix) {
            guard let value = Double(text.dropLast(suffix.count)), value.isFinite, value >= 0 else { return nil }
            return .milliseconds(Int64(value * milliseconds))
        }
        return nil
    }

    /// The member ID recorded in `dataDir/member-id`, or `derived`, recorded there (durably)
    /// when the directory has none yet.
    static func memberID(dataDir: String, derived: NodeID) throws -> NodeID {
        let path = dataDir + "/member-id"
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            guard let saved = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines), radix: 16), saved != 0 else {
                throw ValidationError("\(path) does not hold a member ID (16 hex digits)")
            }
            return saved
        }
        do {
            try DurableFile.write(String(derived, radix: 16) + "\n", to: path, secret: false)
        } catch {
            throw ValidationError("cannot record the member ID in \(path): \(error)")
        }
        return derived
    }

    func run() async throws {
        try await runMember { _, _ in [] }
    }

    /// Refuses plain http on an address other than loopback unless `--insecure-plaintext` says so;
    /// returns the URLs that are plaintext off loopback (for the warning).
    static func checkPlaintext(_ urls: [String], allowed: Bool) throws -> [String] {
        let exposed = urls.filter { url in
            guard url.hasPrefix("http://"), let address = StoreMember.address(ofURL: url) else { return false }
            return !isLoopback(address.host)
        }
        if !exposed.isEmpty && !allowed {
            throw ValidationError("\(exposed.joined(separator: ", ")): plain http on a network address lets anyone who reaches it read and write the store or pose as a peer; use https with certificates (docs/etcd.md), a loopback address, or --insecure-plaintext if you mean it")
        }
        return exposed
    }

    /// Whether `host` is a loopback address or name (127.0.0.0/8, ::1, localhost).
    static func isLoopback(_ host: String) -> Bool {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if bare == "localhost" || bare == "::1" { return true }
        guard let bytes = ipAddressBytes(bare) else { return false }
        if bytes.count == 4 { return bytes[0] == 127 }
        return bytes == [UInt8](repeating: 0, count: 15) + [1]
    }

    /// Runs the member with `extraServices` (made from the member once it exists) in its
    /// service group: `init`/`join`/`start` add the join endpoint and the promoter.
    func runMember(extraServices: (StoreMember, Logger) throws -> [any Service]) async throws {
        guard ["new", "existing"].contains(initialClusterState) else { throw ValidationError("--initial-cluster-state must be new or existing") }
        guard quotaBackendBytes <= StoreMember.quotaBackendBytesLimit else {
            throw ValidationError("--quota-backend-bytes \(quotaBackendBytes) is above \(StoreMember.quotaBackendBytesLimit) (7 GiB): a snapshot of a larger database would not fit under the 8 GiB a member takes")
        }
        let client = try Self.endpoint(listenClientUrls, option: "--listen-client-urls")
        let peer = try Self.endpoint(listenPeerUrls, option: "--listen-peer-urls")
        let advertisedPeer = initialAdvertisePeerUrls ?? listenPeerUrls
        let advertisedClient = advertiseClientUrls ?? listenClientUrls
        _ = try Self.endpoint(advertisedPeer, option: "--initial-advertise-peer-urls")
        _ = try Self.endpoint(advertisedClient, option: "--advertise-client-urls")
        // Member IDs come from peer URLs and the token, as etcd's do, so a member added later by
        // `member add` and started with --initial-cluster-state existing knows its own.
        var initialMembers: [NodeID: MemberAttributes] = [:]
        var peers: [NodeID: PeerAddress] = [:]
        var myID: NodeID?
        for item in initialCluster.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw ValidationError("--initial-cluster: '\(item)' is not name=URL") }
            let id = StoreMember.memberID(peerURL: parts[1], clusterToken: initialClusterToken)
            peers[id] = try Self.endpoint(parts[1], option: "--initial-cluster")
            initialMembers[id] = MemberAttributes(id: id, name: parts[0], peerURLs: [parts[1]], clientURLs: [])
            if parts[0] == name {
                guard parts[1] == advertisedPeer else {
                    throw ValidationError("--initial-cluster gives \(name) the peer URL \(parts[1]), but this member advertises \(advertisedPeer)")
                }
                myID = id
            }
        }
        guard let derivedID = myID else { throw ValidationError("--name \(name) is not in --initial-cluster") }
        let plaintext = try Self.checkPlaintext([listenClientUrls, listenPeerUrls, advertisedPeer, advertisedClient], allowed: insecurePlaintext)
        try PrivateFiles.prepare(dataDir)
        // One process per data directory: a second one fails at once (it used to hang before
        // its first log line, and did not heed SIGTERM). The lock lives as long as the process.
        let lockDescriptor = open(dataDir + "/store.lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard lockDescriptor >= 0, flock(lockDescriptor, LOCK_EX | LOCK_NB) == 0 else {
            throw ValidationError("\(dataDir) is in use by another raftkube process (its store.lock is held): stop that one first")
        }
        // The ID is fixed at the first start and kept in the data directory, as etcd keeps it:
        // after `member update` changes this member's peer URL, the URL no longer derives it.
        let id = try Self.memberID(dataDir: dataDir, derived: derivedID)
        if id != derivedID, let address = peers.removeValue(forKey: derivedID), var attributes = initialMembers.removeValue(forKey: derivedID) {
            peers[id] = address
            attributes.id = id
            initialMembers[id] = attributes
        }
        StoreCommand.bootstrapLogging()
        var logger = Logger(label: "raftkube.store")
        logger[metadataKey: "member"] = "\(name)"
        if !plaintext.isEmpty {
            logger.warning("serving plain http on network addresses (--insecure-plaintext): anyone who reaches them can read and write the store or pose as a peer",
                           metadata: ["urls": "\(plaintext.joined(separator: ","))"])
        }
        guard let progressInterval = Self.duration(experimentalWatchProgressNotifyInterval), progressInterval > .zero else {
            throw ValidationError("--experimental-watch-progress-notify-interval: '\(experimentalWatchProgressNotifyInterval)' is not a duration like 10m, 5s or 500ms")
        }
        let watches = WatchBroker()
        let stateMachine = try KVStateMachine(path: dataDir + "/kv.sqlite") { events, revision in
            watches.publish(events, revision: revision)
        }
        var configuration = RuntimeConfiguration(
            id: id, dataDirectory: dataDir + "/raft", listen: PeerAddress(host: peer.host, port: peer.port),
            peers: peers, bootstrap: initialClusterState == "new")
        configuration.heartbeatIntervalMs = heartbeatInterval
        // As etcd: a snapshot every --snapshot-count entries, keeping 5,000 entries behind it
        // so a slightly lagging follower catches up from the log, not a whole snapshot.
        configuration.snapshotIntervalEntries = snapshotCount
        configuration.compactionMarginEntries = min(5_000, snapshotCount)
        let peerURLs = [listenPeerUrls, advertisedPeer] + initialMembers.values.flatMap(\.peerURLs)
        // Certificates bound to a member (peers', API servers' store clients) are good only while
        // that member is in the cluster: a removed node's certificates are refused at once, on
        // the peer port and the client port alike. The runtime is made below; until then no
        // connection is accepted anyway.
        let runtimeReference = NIOLockedValueBox<RaftRuntime?>(nil)
        let revocation: @Sendable (Certificate) -> String? = { certificate in
            guard let member = CertificateAuthority.memberID(of: certificate),
                  let runtime = runtimeReference.withLockedValue({ $0 }), !runtime.knowsMember(member)
            else { return nil }
            return "certificate \"\(certificate.subject)\" belongs to member \(String(member, radix: 16)), which is not a member of this cluster (removed, or never added)"
        }
        if let peerIdentity = try Self.identity(certificate: peerCertFile, key: peerKeyFile, ca: peerTrustedCaFile,
                                                options: "--peer-cert-file, --peer-key-file and --peer-trusted-ca-file", urls: peerURLs,
                                                revocation: revocation, logger: logger) {
            // Peers accept only peer certificates of the cluster, each bound to one member, in both
            // directions; an accepted connection speaks only for the member its certificate names.
            let peers: Set<String> = [CertificateAuthority.peerOrganization]
            configuration.peerSecurity = ChannelSecurity(
                secureAccepted: try peerIdentity.serverSecurer(requiring: peers, memberBound: true, logger: logger, context: "peer connection in"),
                secureConnecting: try peerIdentity.clientSecurer(requiring: peers, memberBound: true, logger: logger, context: "peer connection out"),
                identifyAccepted: { channel in TLSIdentity.peerMemberID(of: channel) })
        }
        let clientIdentity = try Self.identity(certificate: certFile, key: keyFile, ca: trustedCaFile,
                                               options: "--cert-file, --key-file and --trusted-ca-file", urls: [listenClientUrls, advertisedClient],
                                               revocation: revocation, logger: logger)
        if clientCertAuth == true && clientIdentity == nil { throw ValidationError("--client-cert-auth needs --cert-file, --key-file and --trusted-ca-file") }
        if clientCertAuth == false && clientIdentity != nil {
            logger.warning("https without client certificates (--no-client-cert-auth): anyone who reaches the client port can read and write the store")
        }
        let runtime = RaftRuntime(configuration: configuration, stateMachine: stateMachine, logger: logger)
        runtimeReference.withLockedValue { $0 = runtime }
        // The cluster ID is derived from the initial member list, so every member agrees on it.
        let clusterID = StoreMember.memberID(peerURL: initialCluster, clusterToken: initialClusterToken)
        let attributes = MemberAttributes(id: id, name: name, peerURLs: [advertisedPeer], clientURLs: [advertisedClient])
        watches.start(at: stateMachine.read { $0.currentRevision })
        var member = StoreMember(runtime: runtime, stateMachine: stateMachine, watches: watches, clusterID: clusterID,
                                 clusterToken: initialClusterToken, attributes: attributes, initialMembers: initialMembers)
        member.watchProgressNotifyInterval = progressInterval
        member.quotaBackendBytes = quotaBackendBytes == 0 ? StoreMember.defaultQuotaBackendBytes : quotaBackendBytes
        member.logger = logger
        if let clientIdentity { member.security = try APISecurity(identity: clientIdentity, clientCertificateRequired: clientCertAuth ?? true) }
        let leases = LeaseKeeper(member: member, extensionMs: Int64(heartbeatInterval * 10))
        let api = EtcdGRPCServer(member: member, leases: leases, host: client.host, port: client.port, logger: logger)
        let services: [any Service] = [runtime, leases, api, MemberPublisher(member: member), Compactor(stateMachine: stateMachine, logger: logger)]
            + (try extraServices(member, logger))
        let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
    }
}

/// `LoggingSystem.bootstrap` may run only once per process.
enum LoggingOnce {
    static let bootstrap: Void = LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = .info
        return handler
    }
}
