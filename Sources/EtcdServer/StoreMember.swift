import ClusterPKI
import EtcdAPI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import KVStore
import Logging
import NIOConcurrencyHelpers
import Raft
import RaftRuntime
import Store

/// One store member: the Raft runtime, the keyspace it drives, and what the etcd services need
/// to answer (who the members are, request limits).
public struct StoreMember: Sendable {
    public let runtime: RaftRuntime
    public let stateMachine: KVStateMachine
    public let clusterID: UInt64
    /// Mixed into member IDs, so that two clusters never share one (etcd's `--initial-cluster-token`).
    public let clusterToken: String
    /// This member's name and URLs, which it publishes through the log when it starts.
    public let attributes: MemberAttributes
    /// Names and peer URLs of the members given at bootstrap, shown until they publish their own.
    public let initialMembers: [NodeID: MemberAttributes]
    public let watches: WatchBroker
    /// Whether this member's NOSPACE alarm is being proposed (one proposal at a time, not one per
    /// refused write).
    let noSpaceRaising = NIOLockedValueBox(false)
    /// The connection to the leader for what a follower forwards (see ``onLeader(_:forward:)``).
    let leaderLink = LeaderLink()
    /// etcd's default request limit (1.5 MiB).
    public var requestBytesMax = 3 << 19
    /// How often an idle watch created with progress_notify hears the current revision (etcd's
    /// `--experimental-watch-progress-notify-interval`, 10 minutes by default).
    public var watchProgressNotifyInterval: Duration = .seconds(600)
    /// etcd's `--quota-backend-bytes` (2 GiB by default; 0 or less: no quota). A write that would
    /// take the database past it is refused with `mvcc: database space exceeded` and raises the
    /// NOSPACE alarm for the whole cluster, cleared by compaction, defragment and `alarm disarm`.
    public var quotaBackendBytes: Int64 = Self.defaultQuotaBackendBytes
    public static let defaultQuotaBackendBytes: Int64 = 2 << 30
    /// The largest quota allowed (etcd's suggested maximum): a database must fit a snapshot
    /// (``TransportLimits/snapshotBytesMax``, 8 GiB) with room for what is written while the
    /// alarm is raised.
    public static let quotaBackendBytesLimit: Int64 = 7 << 30
    /// TLS for the API and for forwarding to the leader (nil: plaintext).
    public var security: APISecurity?
    /// Where refusals of TLS peers met while forwarding are logged.
    public var logger = Logger(label: "raftkube.store")

    public init(runtime: RaftRuntime, stateMachine: KVStateMachine, watches: WatchBroker, clusterID: UInt64, clusterToken: String,
                attributes: MemberAttributes, initialMembers: [NodeID: MemberAttributes]) {
        self.runtime = runtime
        self.watches = watches
        self.stateMachine = stateMachine
        self.clusterID = clusterID
        self.clusterToken = clusterToken
        self.attributes = attributes
        self.initialMembers = initialMembers
    }

    /// A member's ID: FNV-1a of its peer URL and the cluster token, as etcd derives IDs from the
    /// same two. Every member and the member itself compute it alike, so a new member started
    /// with `--initial-cluster-state existing` knows the ID its adder gave it.
    public static func memberID(peerURL: String, clusterToken: String) -> NodeID {
        let hash = Array((peerURL + "\u{0}" + clusterToken).utf8).reduce(UInt64(0xCBF2_9CE4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x0000_0100_0000_01B3 }
        return hash == 0 ? 1 : hash
    }

    /// `host:port` of a URL such as `http://127.0.0.1:2380`, or nil when it is not one.
    public static func address(ofURL url: String) -> PeerAddress? {
        var text = Substring(url)
        for scheme in ["http://", "https://"] where text.hasPrefix(scheme) { text = text.dropFirst(scheme.count) }
        return PeerAddress(String(text.split(separator: "/", omittingEmptySubsequences: false).first ?? ""))
    }

    /// A response header at the current revision.
    func header() -> Etcdserverpb_ResponseHeader {
        Convert.header(ResponseHeader(revision: stateMachine.read { $0.currentRevision }), headerContext())
    }

    func headerContext() -> HeaderContext {
        HeaderContext(clusterID: clusterID, memberID: runtime.id, raftTerm: runtime.observed.withLockedValue { $0.term })
    }

    /// Proposes a request through the log and returns the store's typed answer (a refusal as
    /// the error it is).
    func write(_ request: KVRequest) async throws(StoreError) -> KVResponse {
        let result = await withCheckedContinuation { continuation in
            write(request) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// ``write(_:)`` without a task: `completion` runs once with the store's answer, on the
    /// runtime's actor (or at once, on the caller's thread, for a request refused before the log).
    func write(_ request: KVRequest, completion: @escaping @Sendable (Result<KVResponse, StoreError>) -> Void) {
        if let problem = request.validate() { return completion(.failure(StoreError(problem))) }
        let encoded = request.encoded()
        if encoded.count > requestBytesMax { return completion(.failure(.requestTooLarge)) }
        if exceedsQuota(request) {
            raiseNoSpaceAlarm()
            return completion(.failure(.refused(.noSpace)))
        }
        let stateMachine = self.stateMachine
        runtime.submitProposal(encoded) { result in
            switch result {
            case .success(let applied):
                guard let response = stateMachine.takeResponse(index: applied.index) else { return completion(.failure(Self.unexpected)) }
                if case .error(let error) = response { return completion(.failure(StoreError(error))) }
                completion(.success(response))
            case .failure(let error):
                completion(.failure(StoreError.from(error)))
            }
        }
    }

    /// Whether `request` would take the database past the quota (etcd's `quotaKVServer` check,
    /// made where the request arrives, before it is proposed).
    func exceedsQuota(_ request: KVRequest) -> Bool {
        guard quotaBackendBytes > 0 else { return false }
        let cost = request.quotaCost
        return cost > 0 && stateMachine.databaseSizeBytes + Int64(cost) > quotaBackendBytes
    }

    /// Proposes this member's NOSPACE alarm unless it stands already; every member then refuses
    /// writes that add data until it is disarmed.
    func raiseNoSpaceAlarm() {
        let alarm = AlarmMember(memberID: runtime.id, alarm: .noSpace)
        guard !stateMachine.read({ $0.alarms.contains(alarm) }) else { return }
        guard noSpaceRaising.withLockedValue({ raising in
            defer { raising = true }
            return !raising
        }) else { return }
        logger.warning("database space exceeded: raising the NOSPACE alarm", metadata: [
            "sizeBytes": "\(stateMachine.databaseSizeBytes)", "quotaBackendBytes": "\(quotaBackendBytes)",
        ])
        runtime.submitProposal(KVRequest.alarm(AlarmRequest(action: .activate, member: alarm)).encoded()) { [stateMachine, noSpaceRaising] result in
            if case .success(let applied) = result { _ = stateMachine.takeResponse(index: applied.index) }
            noSpaceRaising.withLockedValue { $0 = false }
        }
    }

    /// Waits until this member has applied everything committed when it was called (Raft's
    /// ReadIndex): a local read after it is linearizable.
    func barrier() async throws(StoreError) {
        let result = await withCheckedContinuation { continuation in
            barrier { continuation.resume(returning: $0) }
        }
        try result.get()
    }

    /// ``barrier()`` without a task: `completion` runs once, on the runtime's actor.
    func barrier(completion: @escaping @Sendable (Result<Void, StoreError>) -> Void) {
        runtime.submitRead { result in completion(result.mapError(StoreError.from)) }
    }

    /// Runs a runtime call, its failure typed.
    func runtimeCall<Result: Sendable>(_ body: () async throws -> Result) async throws(StoreError) -> Result {
        do {
            return try await body()
        } catch {
            throw StoreError.from(error)
        }
    }

    /// A read of the local state, its failure (SQLite's) typed.
    func read<Result>(_ body: (KVStore) throws -> Result) throws(StoreError) -> Result {
        do {
            return try stateMachine.read(body)
        } catch {
            throw StoreError.from(error)
        }
    }

    /// A range of what this member has applied (serializable; linearizable after ``barrier()``).
    func localRange(_ request: RangeRequest) throws(StoreError) -> RangeResponse {
        try read { try $0.range(request) }.mapError(StoreError.init).get()
    }

    static let unexpected = StoreError.internalError("etcdserver: unexpected response")

    /// Publishes this member's name and URLs through the log, retrying until it is applied (a
    /// member has no leader to propose through for a while after it starts).
    func publish() async {
        while !Task.isCancelled {
            if (try? await write(.memberAttributes(attributes))) != nil { return }
            try? await Task.sleep(for: .milliseconds(500))
        }
    }

    // MARK: - Members

    /// Every member of the Raft configuration with what is known of it: its published
    /// attributes, else what bootstrap said, else the peer address the runtime knows.
    /// The scheme of peer URLs in this cluster: every member's is the same as this one's.
    var peerScheme: String { attributes.peerURLs.first?.hasPrefix("https://") == true ? "https" : "http" }

    func members() async throws(StoreError) -> [ClusterMember] {
        let status = try await runtimeCall { try await runtime.status() }
        let published = Dictionary(try read { try $0.members() }.map { ($0.id, $0) }, uniquingKeysWith: { $1 })
        let addresses = await runtime.peerAddresses()
        return status.membership.members.map { id in
            let record = published[id]
            let initial = initialMembers[id]
            return ClusterMember(
                id: id,
                name: [record?.name, initial?.name].compactMap { $0 }.first { !$0.isEmpty } ?? "",
                peerURLs: [record?.peerURLs, initial?.peerURLs].compactMap { $0 }.first { !$0.isEmpty }
                    ?? addresses[id].map { ["\(peerScheme)://\($0)"] } ?? [],
                clientURLs: record?.clientURLs ?? (id == runtime.id ? attributes.clientURLs : []),
                isLearner: status.membership.isLearner(id))
        }
    }

    /// Runs `local` on the leader; on a follower, `forward` with the client connected to the
    /// leader's client URL (one per member, kept while the leader stays) (membership changes, leader moves and lease keep-alives must run on
    /// the leader, as in etcd).
    func onLeader<Result: Sendable>(
        _ local: () async throws(StoreError) -> Result,
        forward: @Sendable (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Result
    ) async throws(StoreError) -> Result {
        // Routing only (the leader checks again): the last observed role, without an actor hop.
        let observed = runtime.observed.withLockedValue { $0 }
        if observed.isLeader { return try await local() }
        let client = try leaderClient(observed.leader)
        do {
            return try await forward(client)
        } catch let error as RPCError {
            // The leader's answer, read back into the error it stands for.
            throw StoreError(status: error)
        } catch {
            throw StoreError.unavailable("etcdserver: forwarding to the leader failed: \(error)")
        }
    }

    /// The shared client connected to `leader`'s client URL.
    func leaderClient(_ leader: NodeID) throws(StoreError) -> LeaderLink.Client {
        let address = try leaderAddress(leader)
        do {
            return try leaderLink.client(leader: leader, address: address, generation: security?.generation ?? 0,
                                         security: try security?.clientSecurity(logger: logger) ?? .plaintext)
        } catch {
            throw StoreError.unavailable("etcdserver: cannot connect to the leader: \(error)")
        }
    }

    /// A gRPC target for `address`: an IP literal as such (no DNS, and no IP in TLS's SNI, which
    /// TLS forbids), a name through DNS.
    public static func target(_ address: PeerAddress) -> any ResolvableTarget {
        switch ipAddressBytes(address.host)?.count {
        case 4: .ipv4(address: address.host, port: address.port)
        case 16: .ipv6(address: address.host, port: address.port)
        default: .dns(host: address.host, port: address.port)
        }
    }

    /// The client address of `leader`, from its published attributes.
    func leaderAddress(_ leader: NodeID) throws(StoreError) -> PeerAddress {
        guard leader != noNode else { throw .noLeader }
        let published = try read { try $0.members() }
        guard let url = published.first(where: { $0.id == leader })?.clientURLs.first, let address = Self.address(ofURL: url) else {
            throw .unavailable("etcdserver: the leader's client URL is not known yet")
        }
        return address
    }
}
