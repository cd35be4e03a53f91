import KVStore

/// The replicated store as its users inside raftkube see it, without gRPC: the API server keeps
/// its objects through it, `init`/`join` keep bootstrap tokens and members through it, and the
/// etcd v3 gRPC service is an adapter from the wire to it.
///
/// Two backends implement it: the member running in this process (`EtcdServer.EmbeddedStore`),
/// and an etcd v3 endpoint reached over gRPC (for an API server on a real etcd).
///
/// Reads are linearizable unless the request says `serializable` (then the member answers from
/// what it has applied, at once, possibly stale). Every write goes through the Raft log. Errors
/// are ``StoreError``s.
public protocol KeyValueStore: Sendable {
    func range(_ request: RangeRequest) async throws(StoreError) -> RangeResponse
    func put(_ request: PutRequest) async throws(StoreError) -> PutResponse
    func deleteRange(_ request: DeleteRangeRequest) async throws(StoreError) -> DeleteRangeResponse
    /// Compares, then the success or the failure operations, atomically at one revision.
    func txn(_ request: TxnRequest) async throws(StoreError) -> TxnResponse
    /// Forgets the versions below `revision` (reads and watches below it are refused with
    /// ``StoreError/compacted(compactRevision:)``). `physical`: answers once this member has
    /// removed them from its disk.
    func compact(revision: Int64, physical: Bool) async throws(StoreError) -> CompactionResponse

    /// Grants a lease of `ttl` seconds; `id` 0 lets the store pick the ID.
    func leaseGrant(ttl: Int64, id: Int64) async throws(StoreError) -> LeaseGrantResponse
    /// Revokes a lease and deletes every key attached to it.
    func leaseRevoke(id: Int64) async throws(StoreError) -> LeaseRevokeResponse
    /// Renews a lease: the TTL now granted in seconds, 0 if the lease is gone.
    func leaseKeepAlive(id: Int64) async throws(StoreError) -> Int64
    /// A lease's remaining and granted TTL (and its keys, if asked), nil when there is no such lease.
    func leaseTimeToLive(id: Int64, keys: Bool) async throws(StoreError) -> LeaseTimeToLiveResponse?
    /// The IDs of every lease.
    func leases() async throws(StoreError) -> [Int64]

    /// Every member with its name, URLs and role; `linearizable` waits until this member has
    /// caught up with the leader first.
    func members(linearizable: Bool) async throws(StoreError) -> [ClusterMember]
    /// Adds a member by its peer URLs (as a learner, or a voter); returns it and the new list.
    func addMember(peerURLs: [String], learner: Bool) async throws(StoreError) -> AddedMember
    func removeMember(id: UInt64) async throws(StoreError) -> [ClusterMember]
    func updateMember(id: UInt64, peerURLs: [String]) async throws(StoreError) -> [ClusterMember]
    func promoteMember(id: UInt64) async throws(StoreError) -> [ClusterMember]

    /// Watches a key or range from a revision (``WatchHub/Registration``: start revision 0 means
    /// "after the current one"). The watch ends with an error when its history is compacted
    /// away or it falls too far behind; the caller then lists again and watches from there, as
    /// Kubernetes' reflectors do.
    func watch(_ request: WatchHub.Registration, progressNotify: Bool) async throws(StoreError) -> StoreWatch
}

extension KeyValueStore {
    public func get(_ key: [UInt8], serializable: Bool = false) async throws(StoreError) -> KeyValue? {
        try await range(RangeRequest(key: key, serializable: serializable)).kvs.first
    }

    public func watch(_ request: WatchHub.Registration) async throws(StoreError) -> StoreWatch {
        try await watch(request, progressNotify: false)
    }
}

/// One member as the cluster lists it (etcd's `Member`).
public struct ClusterMember: Sendable, Hashable {
    public var id: UInt64
    /// Empty until the member has started and published it.
    public var name: String
    public var peerURLs: [String]
    public var clientURLs: [String]
    public var isLearner: Bool

    public init(id: UInt64, name: String, peerURLs: [String], clientURLs: [String], isLearner: Bool) {
        self.id = id
        self.name = name
        self.peerURLs = peerURLs
        self.clientURLs = clientURLs
        self.isLearner = isLearner
    }
}

/// The member an addition made, and the members after it.
public struct AddedMember: Sendable, Hashable {
    public var added: ClusterMember
    public var members: [ClusterMember]

    public init(added: ClusterMember, members: [ClusterMember]) {
        self.added = added
        self.members = members
    }
}

/// What a watch yields, in revision order.
public enum WatchUpdate: Sendable, Hashable {
    /// Events of one or more revisions, whole revisions at a time, in order.
    case events([WatchEvent])
    /// Every event at or below `revision` has been delivered (for watches made with
    /// `progressNotify`, when idle: Kubernetes' bookmarks).
    case progress(revision: Int64)
}

/// A running watch: an `AsyncSequence` of ``WatchUpdate``s that throws ``StoreError`` when the
/// watch ends for a reason (compacted history, too slow), and finishes when cancelled. One
/// consumer iterates it. Cancelled by ``cancel()``, or when the last copy goes away.
public struct StoreWatch: AsyncSequence, Sendable {
    public typealias Element = WatchUpdate
    public typealias Failure = StoreError

    /// What a backend supplies: the next update (nil once cancelled), and how to cancel.
    public protocol Source: AnyObject, Sendable {
        func next() async throws(StoreError) -> WatchUpdate?
        func cancel()
    }

    /// Cancels the source when the last copy of the watch is gone.
    final class Handle: Sendable {
        let source: any Source
        init(_ source: any Source) { self.source = source }
        deinit { source.cancel() }
    }

    private let handle: Handle
    /// The revision the watch started from (for a start revision of 0, the current one then).
    public let startRevision: Int64

    public init(source: any Source, startRevision: Int64) {
        handle = Handle(source)
        self.startRevision = startRevision
    }

    public func cancel() { handle.source.cancel() }

    public struct AsyncIterator: AsyncIteratorProtocol {
        public typealias Element = WatchUpdate
        public typealias Failure = StoreError
        let handle: Handle

        public mutating func next() async throws(StoreError) -> WatchUpdate? {
            try await handle.source.next()
        }

        public mutating func next(isolation actor: isolated (any Actor)?) async throws(StoreError) -> WatchUpdate? {
            try await handle.source.next()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(handle: handle) }
}
