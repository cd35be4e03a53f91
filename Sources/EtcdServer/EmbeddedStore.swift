import EtcdAPI
import Foundation
import KVStore
import NIOConcurrencyHelpers
import Raft
import Store

/// The store of the member running in this process, through ``KeyValueStore``: what the etcd
/// gRPC services, bootstrap and (next) the API server call. Writes go through the Raft log;
/// linearizable reads wait on the ReadIndex barrier, then read locally; membership changes and
/// keep-alives run on the leader (a follower forwards them over its link to the leader).
public struct EmbeddedStore: KeyValueStore {
    public let member: StoreMember
    let keeper: LeaseKeeper

    public init(member: StoreMember, leases: LeaseKeeper) {
        self.member = member
        keeper = leases
    }

    // MARK: Keys

    public func range(_ request: RangeRequest) async throws(StoreError) -> RangeResponse {
        if !request.serializable { try await member.barrier() }
        return try member.localRange(request)
    }

    public func put(_ request: PutRequest) async throws(StoreError) -> PutResponse {
        guard case .put(let response) = try await member.write(.put(request)) else { throw StoreMember.unexpected }
        return response
    }

    public func deleteRange(_ request: DeleteRangeRequest) async throws(StoreError) -> DeleteRangeResponse {
        guard case .deleteRange(let response) = try await member.write(.deleteRange(request)) else { throw StoreMember.unexpected }
        return response
    }

    public func txn(_ request: TxnRequest) async throws(StoreError) -> TxnResponse {
        guard case .txn(let response) = try await member.write(.txn(request)) else { throw StoreMember.unexpected }
        return response
    }

    public func compact(revision: Int64, physical: Bool) async throws(StoreError) -> CompactionResponse {
        guard case .compaction(let response) = try await member.write(.compaction(CompactionRequest(revision: revision, physical: physical))) else {
            throw StoreMember.unexpected
        }
        if physical {
            // etcd's physical compaction answers once this member has removed the rows.
            while member.stateMachine.physicalCompactRevision < revision {
                do {
                    try await Task.sleep(for: .milliseconds(10))
                } catch {
                    throw .stopped
                }
            }
        }
        return response
    }

    // MARK: Leases

    public func leaseGrant(ttl: Int64, id: Int64) async throws(StoreError) -> LeaseGrantResponse {
        guard case .leaseGrant(let granted) = try await member.write(.leaseGrant(LeaseGrantRequest(ttl: ttl, id: id))) else {
            throw StoreMember.unexpected
        }
        return granted
    }

    public func leaseRevoke(id: Int64) async throws(StoreError) -> LeaseRevokeResponse {
        guard case .leaseRevoke(let revoked) = try await member.write(.leaseRevoke(LeaseRevokeRequest(id: id))) else {
            throw StoreMember.unexpected
        }
        return revoked
    }

    /// On the leader, which keeps time for leases; a follower forwards it over the one
    /// keep-alive stream it keeps to the leader for all its clients (``LeaderLink``).
    public func leaseKeepAlive(id: Int64) async throws(StoreError) -> Int64 {
        try await member.onLeader { () throws(StoreError) in
            // TTL 0 tells the client the lease is gone, as etcd does.
            try keeper.renew(id) ?? 0
        } forward: { [member] client in
            var request = Etcdserverpb_LeaseKeepAliveRequest()
            request.id = id
            return try await member.leaderLink.keepAlive(request, client: client).ttl
        }
    }

    public func leaseTimeToLive(id: Int64, keys: Bool) async throws(StoreError) -> LeaseTimeToLiveResponse? {
        try await member.barrier()
        switch try member.read({ try $0.leaseTimeToLive(id: id, keys: keys) }) {
        case .success(var lease):
            lease.ttl = keeper.remaining(id) ?? lease.ttl
            return lease
        case .failure(.leaseNotFound):
            return nil
        case .failure(let error):
            throw StoreError(error)
        }
    }

    public func leases() async throws(StoreError) -> [Int64] {
        try member.read { try $0.leases() }.map(\.id)
    }

    // MARK: Members

    public func members(linearizable: Bool) async throws(StoreError) -> [ClusterMember] {
        if linearizable { try await member.barrier() }
        return try await member.members()
    }

    /// etcd's MemberAdd: the URLs are checked, the ID derived from the first one and the cluster
    /// token, a stale record of an earlier member with that ID removed, the member added to the
    /// Raft configuration, and its peer URLs recorded (its name comes when it starts).
    public func addMember(peerURLs: [String], learner: Bool) async throws(StoreError) -> AddedMember {
        try await member.onLeader { () throws(StoreError) in
            let addresses = peerURLs.map { StoreMember.address(ofURL: $0) }
            guard let first = peerURLs.first, let address = addresses.first ?? nil, !addresses.contains(where: { $0 == nil }) else {
                throw .invalidPeerURLs
            }
            let existing = try await member.members()
            if existing.contains(where: { !Set($0.peerURLs).isDisjoint(with: peerURLs) }) { throw .peerURLsExist }
            let id = StoreMember.memberID(peerURL: first, clusterToken: member.clusterToken)
            if existing.contains(where: { $0.id == id }) { throw .memberIDExists }
            _ = try await member.write(.memberAttributes(MemberAttributes(id: id, name: "", peerURLs: [], clientURLs: [], removed: true)))
            try await member.runtimeCall {
                if learner {
                    try await member.runtime.addLearner(id, address: address)
                } else {
                    try await member.runtime.addVoter(id, address: address)
                }
            }
            _ = try await member.write(.memberAttributes(MemberAttributes(id: id, name: "", peerURLs: peerURLs, clientURLs: [])))
            let members = try await member.members()
            let added = members.first { $0.id == id } ?? ClusterMember(id: id, name: "", peerURLs: peerURLs, clientURLs: [], isLearner: learner)
            return AddedMember(added: added, members: members)
        } forward: { client in
            var request = Etcdserverpb_MemberAddRequest()
            request.peerUrls = peerURLs
            request.isLearner = learner
            let answer = try await Etcdserverpb_Cluster.Client(wrapping: client).memberAdd(request)
            return AddedMember(added: Convert.member(answer.member), members: answer.members.map(Convert.member))
        }
    }

    public func removeMember(id: UInt64) async throws(StoreError) -> [ClusterMember] {
        try await member.onLeader { () throws(StoreError) in
            _ = try await existingMember(id)
            if id != member.runtime.id {
                _ = try await member.write(.memberAttributes(MemberAttributes(id: id, name: "", peerURLs: [], clientURLs: [], removed: true)))
            }
            try await member.runtimeCall { try await member.runtime.remove(id) }
            return try await member.members()
        } forward: { client in
            var request = Etcdserverpb_MemberRemoveRequest()
            request.id = id
            return try await Etcdserverpb_Cluster.Client(wrapping: client).memberRemove(request).members.map(Convert.member)
        }
    }

    public func updateMember(id: UInt64, peerURLs: [String]) async throws(StoreError) -> [ClusterMember] {
        try await member.onLeader { () throws(StoreError) in
            _ = try await existingMember(id)
            guard !peerURLs.isEmpty, peerURLs.allSatisfy({ StoreMember.address(ofURL: $0) != nil }) else { throw .invalidPeerURLs }
            // Every member points its transport at the new address when it applies this.
            _ = try await member.write(.memberAttributes(MemberAttributes(id: id, name: "", peerURLs: peerURLs, clientURLs: [])))
            return try await member.members()
        } forward: { client in
            var request = Etcdserverpb_MemberUpdateRequest()
            request.id = id
            request.peerUrls = peerURLs
            return try await Etcdserverpb_Cluster.Client(wrapping: client).memberUpdate(request).members.map(Convert.member)
        }
    }

    public func promoteMember(id: UInt64) async throws(StoreError) -> [ClusterMember] {
        try await member.onLeader { () throws(StoreError) in
            guard try await existingMember(id).isLearner else { throw .notLearner }
            try await member.runtimeCall { try await member.runtime.promote(id) }
            return try await member.members()
        } forward: { client in
            var request = Etcdserverpb_MemberPromoteRequest()
            request.id = id
            return try await Etcdserverpb_Cluster.Client(wrapping: client).memberPromote(request).members.map(Convert.member)
        }
    }

    /// Moves leadership to voter `id` (etcd's MoveLeader), from any member.
    public func moveLeader(to id: UInt64) async throws(StoreError) {
        try await member.onLeader { () throws(StoreError) in
            let status = try await member.runtimeCall { try await member.runtime.status() }
            guard status.membership.isVoter(id) else { throw .badLeaderTransferee }
            try await member.runtimeCall { try await member.runtime.transferLeadership(to: id) }
        } forward: { client in
            var request = Etcdserverpb_MoveLeaderRequest()
            request.targetID = id
            _ = try await Etcdserverpb_Maintenance.Client(wrapping: client).moveLeader(request)
        }
    }

    /// The member with `id`, or etcd's "member not found".
    func existingMember(_ id: UInt64) async throws(StoreError) -> ClusterMember {
        guard let found = try await member.members().first(where: { $0.id == id }) else { throw .memberNotFound }
        return found
    }

    // MARK: Watches

    public func watch(_ request: WatchHub.Registration, progressNotify: Bool) async throws(StoreError) -> StoreWatch {
        try EmbeddedWatch.start(request, member: member, progressNotify: progressNotify)
    }
}

/// One in-process watch: a stream of its own in the member's ``WatchBroker`` (so it shares the
/// member's byte caps and watcher limit with gRPC watches), read when its consumer asks for
/// the next update: nothing is buffered here beyond one drain.
final class EmbeddedWatch: StoreWatch.Source, @unchecked Sendable {
    private let member: StoreMember
    private let stream: Int
    private let id: Int64
    private let closed = NIOLockedValueBox(false)
    private let progressDue = NIOLockedValueBox(false)
    private let ticker: Task<Void, Never>?
    // The consumer's state: one consumer at a time (``StoreWatch``'s rule).
    private var wakeups: AsyncStream<Void>.AsyncIterator
    private var pending: [WatchUpdate] = []
    private var ending: StoreError?
    private var finished = false

    static let connection = "in-process"

    static func start(_ request: WatchHub.Registration, member: StoreMember, progressNotify: Bool) throws(StoreError) -> StoreWatch {
        let broker = member.watches
        let (stream, wakeups) = broker.openStream(connection: connection)
        let (registered, current) = member.stateMachine.read { store in
            (broker.register(request, stream: stream, store: store), store.currentRevision)
        }
        switch registered {
        case .failure(let refusal):
            broker.closeStream(stream)
            throw .watchRefused(refusal.reason)
        case .success(let id):
            broker.announced(id, stream: stream)
            let watch = EmbeddedWatch(member: member, stream: stream, id: id, wakeups: wakeups, progressNotify: progressNotify)
            return StoreWatch(source: watch, startRevision: request.startRevision == 0 ? current + 1 : request.startRevision)
        }
    }

    private init(member: StoreMember, stream: Int, id: Int64, wakeups: AsyncStream<Void>, progressNotify: Bool) {
        self.member = member
        self.stream = stream
        self.id = id
        self.wakeups = wakeups.makeAsyncIterator()
        if progressNotify {
            let interval = member.watchProgressNotifyInterval
            ticker = Task { [progressDue, broker = member.watches] in
                while (try? await Task.sleep(for: interval)) != nil {
                    progressDue.withLockedValue { $0 = true }
                    broker.wake(stream)
                }
            }
        } else {
            ticker = nil
        }
    }

    func next() async throws(StoreError) -> WatchUpdate? {
        while true {
            if !pending.isEmpty { return pending.removeFirst() }
            if let ending {
                self.ending = nil
                finished = true
                throw ending
            }
            if finished || closed.withLockedValue({ $0 }) { return nil }
            let drained: WatchBroker.Batch
            do {
                drained = try member.watches.nextBatch(stream: stream, machine: member.stateMachine)
            } catch {
                throw StoreError.from(error)
            }
            pending = drained.events.map { .events($0.events) }
            switch drained.cancelled.first?.reason {
            case .compacted(let compactRevision): ending = .compacted(compactRevision: compactRevision)
            case .slow(let resumeRevision): ending = .watchTooSlow(resumeRevision: resumeRevision)
            case .requested: finished = true
            case nil: break
            }
            if pending.isEmpty && ending == nil && !finished && !drained.catchingUp {
                if progressDue.withLockedValue({ $0 }) {
                    let state = member.watches.progress(stream: stream, ids: [id])
                    if state.ready.contains(id) {
                        progressDue.withLockedValue { $0 = false }
                        return .progress(revision: state.revision)
                    }
                }
                // Woken by a publish, a cancellation, a progress tick, or the end of the stream.
                if await wakeups.next() == nil { finished = true }
            }
        }
    }

    func cancel() {
        guard closed.withLockedValue({ closed in
            defer { closed = true }
            return !closed
        }) else { return }
        ticker?.cancel()
        member.watches.closeStream(stream)
    }
}
