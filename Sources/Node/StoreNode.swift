import ClusterPKI
import EtcdServer
import Foundation
import KVStore
import Logging
import NIOConcurrencyHelpers
import Raft
import RaftRuntime
import ServiceLifecycle
import Store
import X509

/// A configuration or start-up problem, in words for whoever started the node.
public struct NodeError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Everything one store member needs, typed (what `raftkube store`'s flags say, etcd's names).
public struct StoreMemberConfiguration: Sendable {
    public var name: String
    /// The Raft log in `raft/`, the keyspace in `kv.sqlite`.
    public var dataDirectory: String
    public var listenClientURL: String
    public var listenPeerURL: String
    /// Defaults to the listen URLs.
    public var advertiseClientURL: String?
    public var advertisePeerURL: String?
    /// name=peer-URL of every initial member, comma-separated, in the same order on every member.
    public var initialCluster: String
    /// Bootstrap the listed members (`new`), or join a running cluster that added this one.
    public var bootstrapsCluster: Bool = true
    public var clusterToken: String = "etcd-cluster"
    public var watchProgressNotifyInterval: Duration = .seconds(600)
    /// etcd's `--snapshot-count`.
    public var snapshotCount: UInt64 = 100_000
    /// etcd's `--quota-backend-bytes`: 0 for the default (2 GiB), negative for none.
    public var quotaBackendBytes: Int64 = 0
    public var heartbeatIntervalMs: Int = 100
    /// TLS for the etcd API (https client URLs), as certificate, key and CA files.
    public var clientTLS: TLSFiles?
    /// nil: required with TLS (etcd's `--client-cert-auth`); false lets anyone in.
    public var clientCertificateRequired: Bool?
    public var peerTLS: TLSFiles?
    /// Plain http on addresses other than loopback is refused unless this says so.
    public var insecurePlaintext: Bool = false

    public struct TLSFiles: Sendable {
        public var certificate: String
        public var key: String
        public var trustedCA: String
        public init(certificate: String, key: String, trustedCA: String) {
            self.certificate = certificate
            self.key = key
            self.trustedCA = trustedCA
        }
    }

    public init(name: String, dataDirectory: String, listenClientURL: String, listenPeerURL: String, initialCluster: String) {
        self.name = name
        self.dataDirectory = dataDirectory
        self.listenClientURL = listenClientURL
        self.listenPeerURL = listenPeerURL
        self.initialCluster = initialCluster
    }

    var advertisedClient: String { advertiseClientURL ?? listenClientURL }
    var advertisedPeer: String { advertisePeerURL ?? listenPeerURL }
}

/// One store member assembled in this process: the Raft runtime over the keyspace, the etcd
/// API, leases, compaction, member attributes. `services` run it (in one `ServiceGroup`, with
/// whatever else the node runs); `store` is its ``KeyValueStore`` for in-process users.
public struct StoreNode: Sendable {
    public let configuration: StoreMemberConfiguration
    public let store: EmbeddedStore
    public let services: [any Service]
    public let logger: Logger
    /// The member's data directory lock, held for the life of the process.
    let lockDescriptor: Int32

    public var member: StoreMember { store.member }

    /// Checks `configuration` and makes the member (files are opened, nothing listens until the
    /// services run).
    public static func make(_ configuration: StoreMemberConfiguration, logger base: Logger = Logger(label: "raftkube.store")) throws -> StoreNode {
        let c = configuration
        guard c.quotaBackendBytes <= StoreMember.quotaBackendBytesLimit else {
            throw NodeError("--quota-backend-bytes \(c.quotaBackendBytes) is above \(StoreMember.quotaBackendBytesLimit) (7 GiB): a snapshot of a larger database would not fit under the 8 GiB a member takes")
        }
        guard c.watchProgressNotifyInterval > .zero else { throw NodeError("the watch progress notify interval must be positive") }
        let client = try endpoint(c.listenClientURL, option: "--listen-client-urls")
        let peer = try endpoint(c.listenPeerURL, option: "--listen-peer-urls")
        _ = try endpoint(c.advertisedPeer, option: "--initial-advertise-peer-urls")
        _ = try endpoint(c.advertisedClient, option: "--advertise-client-urls")
        // Member IDs come from peer URLs and the token, as etcd's do, so a member added later by
        // `member add` and started with --initial-cluster-state existing knows its own.
        var initialMembers: [NodeID: MemberAttributes] = [:]
        var peers: [NodeID: PeerAddress] = [:]
        var myID: NodeID?
        for item in c.initialCluster.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw NodeError("--initial-cluster: '\(item)' is not name=URL") }
            let id = StoreMember.memberID(peerURL: parts[1], clusterToken: c.clusterToken)
            peers[id] = try endpoint(parts[1], option: "--initial-cluster")
            initialMembers[id] = MemberAttributes(id: id, name: parts[0], peerURLs: [parts[1]], clientURLs: [])
            if parts[0] == c.name {
                guard parts[1] == c.advertisedPeer else {
                    throw NodeError("--initial-cluster gives \(c.name) the peer URL \(parts[1]), but this member advertises \(c.advertisedPeer)")
                }
                myID = id
            }
        }
        guard let derivedID = myID else { throw NodeError("--name \(c.name) is not in --initial-cluster") }
        let plaintext = try checkPlaintext([c.listenClientURL, c.listenPeerURL, c.advertisedPeer, c.advertisedClient], allowed: c.insecurePlaintext)
        try PrivateFiles.prepare(c.dataDirectory)
        // One process per data directory: a second one fails at once. The lock lives as long as
        // the process.
        let lockDescriptor = open(c.dataDirectory + "/store.lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard lockDescriptor >= 0, flock(lockDescriptor, LOCK_EX | LOCK_NB) == 0 else {
            if lockDescriptor >= 0 { close(lockDescriptor) }
            throw NodeError("\(c.dataDirectory) is in use by another raftkube process (its store.lock is held): stop that one first")
        }
        do {
            return try assemble(c, client: client, peer: peer, initialMembers: initialMembers, peers: peers, derivedID: derivedID,
                                plaintext: plaintext, lockDescriptor: lockDescriptor, base: base)
        } catch {
            close(lockDescriptor)
            throw error
        }
    }

    private static func assemble(_ c: StoreMemberConfiguration, client: PeerAddress, peer: PeerAddress, initialMembers: [NodeID: MemberAttributes],
                                 peers: [NodeID: PeerAddress], derivedID: NodeID, plaintext: [String], lockDescriptor: Int32,
                                 base: Logger) throws -> StoreNode {
        var initialMembers = initialMembers
        var peers = peers
        // The ID is fixed at the first start and kept in the data directory, as etcd keeps it:
        // after `member update` changes this member's peer URL, the URL no longer derives it.
        let id = try memberID(dataDirectory: c.dataDirectory, derived: derivedID)
        if id != derivedID, let address = peers.removeValue(forKey: derivedID), var attributes = initialMembers.removeValue(forKey: derivedID) {
            peers[id] = address
            attributes.id = id
            initialMembers[id] = attributes
        }
        var logger = base
        logger[metadataKey: "member"] = "\(c.name)"
        if !plaintext.isEmpty {
            logger.warning("serving plain http on network addresses (--insecure-plaintext): anyone who reaches them can read and write the store or pose as a peer",
                           metadata: ["urls": "\(plaintext.joined(separator: ","))"])
        }
        let watches = WatchBroker()
        let stateMachine = try KVStateMachine(path: c.dataDirectory + "/kv.sqlite") { events, revision in
            watches.publish(events, revision: revision)
        }
        var runtimeConfiguration = RuntimeConfiguration(
            id: id, dataDirectory: c.dataDirectory + "/raft", listen: PeerAddress(host: peer.host, port: peer.port),
            peers: peers, bootstrap: c.bootstrapsCluster)
        runtimeConfiguration.heartbeatIntervalMs = c.heartbeatIntervalMs
        // As etcd: a snapshot every --snapshot-count entries, keeping 5,000 entries behind it
        // so a slightly lagging follower catches up from the log, not a whole snapshot.
        runtimeConfiguration.snapshotIntervalEntries = c.snapshotCount
        runtimeConfiguration.compactionMarginEntries = min(5_000, c.snapshotCount)
        let peerURLs = [c.listenPeerURL, c.advertisedPeer] + initialMembers.values.flatMap(\.peerURLs)
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
        if let peerIdentity = try identity(c.peerTLS, options: "--peer-cert-file, --peer-key-file and --peer-trusted-ca-file", urls: peerURLs,
                                           revocation: revocation, logger: logger) {
            // Peers accept only peer certificates of the cluster, each bound to one member, in both
            // directions; an accepted connection speaks only for the member its certificate names.
            let peers: Set<String> = [CertificateAuthority.peerOrganization]
            runtimeConfiguration.peerSecurity = ChannelSecurity(
                secureAccepted: try peerIdentity.serverSecurer(requiring: peers, memberBound: true, logger: logger, context: "peer connection in"),
                secureConnecting: try peerIdentity.clientSecurer(requiring: peers, memberBound: true, logger: logger, context: "peer connection out"),
                identifyAccepted: { channel in TLSIdentity.peerMemberID(of: channel) })
        }
        let clientIdentity = try identity(c.clientTLS, options: "--cert-file, --key-file and --trusted-ca-file", urls: [c.listenClientURL, c.advertisedClient],
                                          revocation: revocation, logger: logger)
        if c.clientCertificateRequired == true && clientIdentity == nil { throw NodeError("--client-cert-auth needs --cert-file, --key-file and --trusted-ca-file") }
        if c.clientCertificateRequired == false && clientIdentity != nil {
            logger.warning("https without client certificates (--no-client-cert-auth): anyone who reaches the client port can read and write the store")
        }
        let runtime = RaftRuntime(configuration: runtimeConfiguration, stateMachine: stateMachine, logger: logger)
        runtimeReference.withLockedValue { $0 = runtime }
        // The cluster ID is derived from the initial member list, so every member agrees on it.
        let clusterID = StoreMember.memberID(peerURL: c.initialCluster, clusterToken: c.clusterToken)
        let attributes = MemberAttributes(id: id, name: c.name, peerURLs: [c.advertisedPeer], clientURLs: [c.advertisedClient])
        watches.start(at: stateMachine.read { $0.currentRevision })
        var member = StoreMember(runtime: runtime, stateMachine: stateMachine, watches: watches, clusterID: clusterID,
                                 clusterToken: c.clusterToken, attributes: attributes, initialMembers: initialMembers)
        member.watchProgressNotifyInterval = c.watchProgressNotifyInterval
        member.quotaBackendBytes = c.quotaBackendBytes == 0 ? StoreMember.defaultQuotaBackendBytes : c.quotaBackendBytes
        member.logger = logger
        if let clientIdentity { member.security = try APISecurity(identity: clientIdentity, clientCertificateRequired: c.clientCertificateRequired ?? true) }
        let leases = LeaseKeeper(member: member, extensionMs: Int64(c.heartbeatIntervalMs * 10))
        let api = EtcdGRPCServer(member: member, leases: leases, host: client.host, port: client.port, logger: logger)
        let services: [any Service] = [runtime, leases, api, MemberPublisher(member: member), Compactor(stateMachine: stateMachine, logger: logger)]
        return StoreNode(configuration: c, store: EmbeddedStore(member: member, leases: leases), services: services, logger: logger,
                         lockDescriptor: lockDescriptor)
    }

    /// Runs the member and `extraServices` in one service group until SIGTERM or SIGINT (or
    /// until the task is cancelled), then shuts them all down gracefully.
    public func run(with extraServices: [any Service] = [], signals: Bool = true) async throws {
        // The data directory is free again once everything has stopped.
        defer { close(lockDescriptor) }
        let group = ServiceGroup(services: services + extraServices, gracefulShutdownSignals: signals ? [.sigterm, .sigint] : [], logger: logger)
        try await group.run()
    }

    // MARK: Checks of the configuration

    static func endpoint(_ url: String, option: String) throws -> PeerAddress {
        guard let address = StoreMember.address(ofURL: url) else {
            throw NodeError("\(option): '\(url)' is not a URL like http://127.0.0.1:2379")
        }
        return address
    }

    /// The TLS identity of `files`, or nil when none is given; https URLs without files (or
    /// the reverse) are refused. The files are read again when they change (renewal takes effect
    /// without a restart).
    static func identity(_ files: StoreMemberConfiguration.TLSFiles?, options: String, urls: [String],
                         revocation: (@Sendable (Certificate) -> String?)?, logger: Logger) throws -> IdentityFiles? {
        let https = urls.allSatisfy { $0.hasPrefix("https://") }
        guard urls.allSatisfy({ $0.hasPrefix("https://") == https }) else { throw NodeError("\(urls.joined(separator: ", ")): mixed http and https URLs") }
        guard let files else {
            if https { throw NodeError("\(urls.joined(separator: ", ")): https URLs need \(options)") }
            return nil
        }
        guard https else { throw NodeError("\(options) are given, so the URLs must be https: \(urls.joined(separator: ", "))") }
        do {
            return try IdentityFiles(certificate: files.certificate, key: files.key, trustedCA: files.trustedCA, revocation: revocation, logger: logger)
        } catch {
            throw NodeError("\(options): \(error)")
        }
    }

    /// The member ID recorded in `dataDirectory/member-id`, or `derived`, recorded there
    /// (durably) when the directory has none yet.
    static func memberID(dataDirectory: String, derived: NodeID) throws -> NodeID {
        let path = dataDirectory + "/member-id"
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            guard let saved = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines), radix: 16), saved != 0 else {
                throw NodeError("\(path) does not hold a member ID (16 hex digits)")
            }
            return saved
        }
        do {
            try DurableFile.write(String(derived, radix: 16) + "\n", to: path, secret: false)
        } catch {
            throw NodeError("cannot record the member ID in \(path): \(error)")
        }
        return derived
    }

    /// Refuses plain http on an address other than loopback unless `allowed`; returns the URLs
    /// that are plaintext off loopback (for the warning).
    public static func checkPlaintext(_ urls: [String], allowed: Bool) throws -> [String] {
        let exposed = urls.filter { url in
            guard url.hasPrefix("http://"), let address = StoreMember.address(ofURL: url) else { return false }
            return !isLoopback(address.host)
        }
        if !exposed.isEmpty && !allowed {
            throw NodeError("\(exposed.joined(separator: ", ")): plain http on a network address lets anyone who reaches it read and write the store or pose as a peer; use https with certificates (docs/etcd.md), a loopback address, or --insecure-plaintext if you mean it")
        }
        return exposed
    }

    /// Whether `host` is a loopback address or name (127.0.0.0/8, ::1, localhost).
    public static func isLoopback(_ host: String) -> Bool {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if bare == "localhost" || bare == "::1" { return true }
        guard let bytes = ipAddressBytes(bare) else { return false }
        if bytes.count == 4 { return bytes[0] == 127 }
        return bytes == [UInt8](repeating: 0, count: 15) + [1]
    }

    /// An etcd-style duration: a number and one of ms, s, m, h.
    public static func duration(_ text: String) -> Duration? {
        for (suffix, milliseconds) in [("ms", 1.0), ("s", 1_000.0), ("m", 60_000.0), ("h", 3_600_000.0)] where text.hasSuffix(suffix) {
            guard let value = Double(text.dropLast(suffix.count)), value.isFinite, value >= 0 else { return nil }
            return .milliseconds(Int64(value * milliseconds))
        }
        return nil
    }
}
