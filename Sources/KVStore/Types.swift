/// One version of one key, as etcd's `mvccpb.KeyValue`.
public struct KeyValue: Sendable, Hashable {
    public var key: [UInt8]
    /// The revision of the put that created the key since it was last deleted.
    public var createRevision: Int64
    /// The revision of the last write to the key.
    public var modRevision: Int64
    /// 1 on creation, +1 on each put, back to 0 when the key is deleted.
    public var version: Int64
    public var value: [UInt8]
    /// The lease the key is attached to, 0 for none.
    public var lease: Int64

    public init(key: [UInt8], createRevision: Int64, modRevision: Int64, version: Int64, value: [UInt8], lease: Int64) {
        self.key = key
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.value = value
        self.lease = lease
    }
}

/// The part of etcd's `ResponseHeader` that the state machine knows: the store's revision when
/// the response was made. The shell adds cluster ID, member ID and Raft term.
public struct ResponseHeader: Sendable, Hashable {
    public var revision: Int64

    public init(revision: Int64) {
        self.revision = revision
    }
}

// MARK: - Range

public struct RangeRequest: Sendable, Hashable {
    public enum SortOrder: UInt8, Sendable, Hashable, CaseIterable {
        case none = 0, ascend = 1, descend = 2
    }

    public enum SortTarget: UInt8, Sendable, Hashable, CaseIterable {
        case key = 0, version = 1, create = 2, mod = 3, value = 4
    }

    /// The first key of the range, or the only key when `rangeEnd` is empty.
    public var key: [UInt8]
    /// Empty: the single key `key`. `[0]`: every key >= `key`. Otherwise the half-open range
    /// `[key, rangeEnd)`. A prefix `p` is the range `[p, p with its last byte + 1)`.
    public var rangeEnd: [UInt8]
    /// The most keys to return; 0 for no limit.
    public var limit: Int64
    /// The revision to read at; 0 for the current one.
    public var revision: Int64
    public var sortOrder: SortOrder
    public var sortTarget: SortTarget
    /// Whether the shell may serve the read without the linearizable barrier. The store ignores it.
    public var serializable: Bool
    public var keysOnly: Bool
    public var countOnly: Bool
    public var minModRevision: Int64
    public var maxModRevision: Int64
    public var minCreateRevision: Int64
    public var maxCreateRevision: Int64

    public init(
        key: [UInt8], rangeEnd: [UInt8] = [], limit: Int64 = 0, revision: Int64 = 0,
        sortOrder: SortOrder = .none, sortTarget: SortTarget = .key, serializable: Bool = false,
        keysOnly: Bool = false, countOnly: Bool = false,
        minModRevision: Int64 = 0, maxModRevision: Int64 = 0, minCreateRevision: Int64 = 0, maxCreateRevision: Int64 = 0
    ) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.limit = limit
        self.revision = revision
        self.sortOrder = sortOrder
        self.sortTarget = sortTarget
        self.serializable = serializable
        self.keysOnly = keysOnly
        self.countOnly = countOnly
        self.minModRevision = minModRevision
        self.maxModRevision = maxModRevision
        self.minCreateRevision = minCreateRevision
        self.maxCreateRevision = maxCreateRevision
    }
}

public struct RangeResponse: Sendable, Hashable {
    public var header: ResponseHeader
    public var kvs: [KeyValue]
    /// Whether more keys than `limit` matched.
    public var more: Bool
    /// How many keys the range holds at the revision, whatever `limit` and the min/max filters.
    public var count: Int64

    public init(header: ResponseHeader, kvs: [KeyValue], more: Bool, count: Int64) {
        self.header = header
        self.kvs = kvs
        self.more = more
        self.count = count
    }
}

// MARK: - Put

public struct PutRequest: Sendable, Hashable {
    public var key: [UInt8]
    public var value: [UInt8]
    /// The lease to attach the key to; 0 for none (and detaches it from any lease it had).
    public var lease: Int64
    public var prevKv: Bool
    /// Keep the current value (the key must exist and `value` must be empty).
    public var ignoreValue: Bool
    /// Keep the current lease (the key must exist and `lease` must be 0).
    public var ignoreLease: Bool

    public init(key: [UInt8], value: [UInt8] = [], lease: Int64 = 0, prevKv: Bool = false,
                ignoreValue: Bool = false, ignoreLease: Bool = false) {
        self.key = key
        self.value = value
        self.lease = lease
        self.prevKv = prevKv
        self.ignoreValue = ignoreValue
        self.ignoreLease = ignoreLease
    }
}

public struct PutResponse: Sendable, Hashable {
    public var header: ResponseHeader
    public var prevKv: KeyValue?

    public init(header: ResponseHeader, prevKv: KeyValue? = nil) {
        self.header = header
        self.prevKv = prevKv
    }
}

// MARK: - DeleteRange

public struct DeleteRangeRequest: Sendable, Hashable {
    public var key: [UInt8]
    /// As ``RangeRequest/rangeEnd``.
    public var rangeEnd: [UInt8]
    public var prevKv: Bool

    public init(key: [UInt8], rangeEnd: [UInt8] = [], prevKv: Bool = false) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.prevKv = prevKv
    }
}

public struct DeleteRangeResponse: Sendable, Hashable {
    public var header: ResponseHeader
    public var deleted: Int64
    public var prevKvs: [KeyValue]

    public init(header: ResponseHeader, deleted: Int64, prevKvs: [KeyValue] = []) {
        self.header = header
        self.deleted = deleted
        self.prevKvs = prevKvs
    }
}

// MARK: - Txn

/// A condition of a transaction, as etcd's `Compare`. On a range, every key in it must satisfy
/// the condition. A missing key compares as version, create and mod revision and lease 0; a
/// value comparison on a missing key is always false, as in etcd.
public struct Compare: Sendable, Hashable {
    public enum Result: UInt8, Sendable, Hashable, CaseIterable {
        case equal = 0, greater = 1, less = 2, notEqual = 3
    }

    /// What to compare and the operand: etcd's `target` together with its `target_union`.
    public enum Target: Sendable, Hashable {
        case version(Int64)
        case createRevision(Int64)
        case modRevision(Int64)
        case value([UInt8])
        case lease(Int64)
    }

    public var result: Result
    public var target: Target
    public var key: [UInt8]
    /// As ``RangeRequest/rangeEnd``.
    public var rangeEnd: [UInt8]

    public init(key: [UInt8], rangeEnd: [UInt8] = [], target: Target, result: Result) {
        self.result = result
        self.target = target
        self.key = key
        self.rangeEnd = rangeEnd
    }
}

/// One operation of a transaction branch.
public indirect enum RequestOp: Sendable, Hashable {
    case range(RangeRequest)
    case put(PutRequest)
    case deleteRange(DeleteRangeRequest)
    case txn(TxnRequest)
}

/// The answer to one ``RequestOp``, in the same position.
public indirect enum ResponseOp: Sendable, Hashable {
    case range(RangeResponse)
    case put(PutResponse)
    case deleteRange(DeleteRangeResponse)
    case txn(TxnResponse)
}

public struct TxnRequest: Sendable, Hashable {
    public var compare: [Compare]
    /// Run when every compare holds.
    public var success: [RequestOp]
    /// Run otherwise.
    public var failure: [RequestOp]

    public init(compare: [Compare] = [], success: [RequestOp] = [], failure: [RequestOp] = []) {
        self.compare = compare
        self.success = success
        self.failure = failure
    }
}

public struct TxnResponse: Sendable, Hashable {
    public var header: ResponseHeader
    public var succeeded: Bool
    public var responses: [ResponseOp]

    public init(header: ResponseHeader, succeeded: Bool, responses: [ResponseOp]) {
        self.header = header
        self.succeeded = succeeded
        self.responses = responses
    }
}

// MARK: - Compaction

public struct CompactionRequest: Sendable, Hashable {
    public var revision: Int64
    /// Whether the client waits until compaction has removed the compacted rows (etcd's
    /// `physical`). The apply only moves the compact revision; the rows go in steps after it
    /// (``KVStore/compactStep(revisionsMax:)``), and a physical compaction is answered after them.
    public var physical: Bool

    public init(revision: Int64, physical: Bool = false) {
        self.revision = revision
        self.physical = physical
    }
}

public struct CompactionResponse: Sendable, Hashable {
    public var header: ResponseHeader

    public init(header: ResponseHeader) {
        self.header = header
    }
}

// MARK: - Leases

public struct LeaseGrantRequest: Sendable, Hashable {
    /// Seconds. Raised to ``KVLimits/leaseTTLSecondsMin``; more than
    /// ``KVLimits/leaseTTLSecondsMax`` is an error.
    public var ttl: Int64
    /// The lease ID to use; 0 asks the store for one, derived from the Raft index so that every
    /// replica picks the same.
    public var id: Int64

    public init(ttl: Int64, id: Int64 = 0) {
        self.ttl = ttl
        self.id = id
    }
}

public struct LeaseGrantResponse: Sendable, Hashable {
    public var header: ResponseHeader
    public var id: Int64
    /// The TTL granted, in seconds, after raising it to the minimum.
    public var ttl: Int64

    public init(header: ResponseHeader, id: Int64, ttl: Int64) {
        self.header = header
        self.id = id
        self.ttl = ttl
    }
}

public struct LeaseRevokeRequest: Sendable, Hashable {
    public var id: Int64

    public init(id: Int64) {
        self.id = id
    }
}

public struct LeaseRevokeResponse: Sendable, Hashable {
    public var header: ResponseHeader

    public init(header: ResponseHeader) {
        self.header = header
    }
}

/// The time a lease had left when the leader last measured it, as etcd's `LeaseCheckpoint`. A
/// new leader starts each lease from its checkpoint instead of the full TTL.
public struct LeaseCheckpoint: Sendable, Hashable {
    public var id: Int64
    public var remainingTTL: Int64

    public init(id: Int64, remainingTTL: Int64) {
        self.id = id
        self.remainingTTL = remainingTTL
    }
}

public struct LeaseCheckpointRequest: Sendable, Hashable {
    public var checkpoints: [LeaseCheckpoint]

    public init(checkpoints: [LeaseCheckpoint]) {
        self.checkpoints = checkpoints
    }
}

/// The leader's decision that these leases ran out. Each one that still exists is revoked as if
/// by a ``LeaseRevokeRequest``, one revision per lease that had keys; IDs no longer granted are
/// skipped, since a client may have revoked them meanwhile.
public struct LeaseExpireRequest: Sendable, Hashable {
    public var ids: [Int64]

    public init(ids: [Int64]) {
        self.ids = ids
    }
}

public struct LeaseExpireResponse: Sendable, Hashable {
    public var header: ResponseHeader
    /// The IDs that existed and are now revoked, in request order.
    public var revoked: [Int64]

    public init(header: ResponseHeader, revoked: [Int64]) {
        self.header = header
        self.revoked = revoked
    }
}

/// A granted lease as the replicated state knows it.
public struct LeaseStatus: Sendable, Hashable {
    public var id: Int64
    /// The TTL granted, in seconds.
    public var grantedTTL: Int64
    /// The last checkpointed remaining TTL in seconds, or `grantedTTL` if none was recorded.
    public var remainingTTL: Int64

    public init(id: Int64, grantedTTL: Int64, remainingTTL: Int64) {
        self.id = id
        self.grantedTTL = grantedTTL
        self.remainingTTL = remainingTTL
    }
}

public struct LeaseTimeToLiveResponse: Sendable, Hashable {
    public var header: ResponseHeader
    public var id: Int64
    /// Remaining seconds as far as the replicated state knows (the last checkpoint); the leader's
    /// shell replaces it with its live ``LeaseDeadlines`` value.
    public var ttl: Int64
    public var grantedTTL: Int64
    /// Attached keys, in key order; empty unless asked for.
    public var keys: [[UInt8]]

    public init(header: ResponseHeader, id: Int64, ttl: Int64, grantedTTL: Int64, keys: [[UInt8]]) {
        self.header = header
        self.id = id
        self.ttl = ttl
        self.grantedTTL = grantedTTL
        self.keys = keys
    }
}

// MARK: - Hash

public struct HashKVResponse: Sendable, Hashable {
    public var header: ResponseHeader
    /// CRC-32C (Castagnoli) over the compact revision and every stored key version at or below
    /// the requested revision; see ``KVStore/hashKV(revision:)``.
    public var hash: UInt32
    public var compactRevision: Int64

    public init(header: ResponseHeader, hash: UInt32, compactRevision: Int64) {
        self.header = header
        self.hash = hash
        self.compactRevision = compactRevision
    }
}

// MARK: - Requests and responses that travel through Raft

/// A command for the replicated state machine: the payload of a Raft entry.
public enum KVRequest: Sendable, Hashable {
    /// A read through the log (etcd's old linearizable read path); changes nothing.
    case range(RangeRequest)
    case put(PutRequest)
    case deleteRange(DeleteRangeRequest)
    case txn(TxnRequest)
    case compaction(CompactionRequest)
    case leaseGrant(LeaseGrantRequest)
    case leaseRevoke(LeaseRevokeRequest)
    case leaseCheckpoint(LeaseCheckpointRequest)
    case leaseExpire(LeaseExpireRequest)
    /// A member's name and URLs (etcd's "publish"), kept beside the keyspace.
    case memberAttributes(MemberAttributes)
    /// Raises or clears an alarm (etcd's `AlarmRequest` through the log).
    case alarm(AlarmRequest)
}

/// What applying one ``KVRequest`` produced. A request that etcd would reject produces
/// `.error` and changes nothing, identically on every replica.
public enum KVResponse: Sendable, Hashable {
    case range(RangeResponse)
    case put(PutResponse)
    case deleteRange(DeleteRangeResponse)
    case txn(TxnResponse)
    case compaction(CompactionResponse)
    case leaseGrant(LeaseGrantResponse)
    case leaseRevoke(LeaseRevokeResponse)
    /// Checkpoints change no revision; the header is the current one.
    case leaseCheckpoint(ResponseHeader)
    case leaseExpire(LeaseExpireResponse)
    /// Member attributes change no revision; the header is the current one.
    case memberAttributes(ResponseHeader)
    case alarm(AlarmResponse)
    case error(KVError)

    /// The store revision the response reports (the current one for errors is not known here: 0).
    public var headerRevision: Int64 {
        switch self {
        case .range(let response): response.header.revision
        case .put(let response): response.header.revision
        case .deleteRange(let response): response.header.revision
        case .txn(let response): response.header.revision
        case .compaction(let response): response.header.revision
        case .leaseGrant(let response): response.header.revision
        case .leaseRevoke(let response): response.header.revision
        case .leaseCheckpoint(let header): header.revision
        case .leaseExpire(let response): response.header.revision
        case .memberAttributes(let header): header.revision
        case .alarm(let response): response.header.revision
        case .error: 0
        }
    }
}

// MARK: - Alarms

/// etcd's alarm types, with its protobuf numbers.
public enum AlarmType: UInt8, Sendable, Hashable, CaseIterable, Comparable {
    case none = 0
    /// The database passed its quota: writes that add data are refused until it is disarmed.
    case noSpace = 1
    /// A member's data differs from the others': every write is refused until it is disarmed.
    case corrupt = 2

    /// etcd's name (`NOSPACE`), as `etcdctl alarm list` prints it.
    public var name: String {
        switch self {
        case .none: "NONE"
        case .noSpace: "NOSPACE"
        case .corrupt: "CORRUPT"
        }
    }

    public static func < (left: AlarmType, right: AlarmType) -> Bool { left.rawValue < right.rawValue }
}

/// One raised alarm: which member raised it, and which alarm. Part of the replicated state, so
/// every member refuses the same writes while it stands.
public struct AlarmMember: Sendable, Hashable, Comparable {
    public var memberID: UInt64
    public var alarm: AlarmType

    public init(memberID: UInt64, alarm: AlarmType) {
        self.memberID = memberID
        self.alarm = alarm
    }

    public static func < (left: AlarmMember, right: AlarmMember) -> Bool {
        (left.memberID, left.alarm.rawValue) < (right.memberID, right.alarm.rawValue)
    }
}

public struct AlarmRequest: Sendable, Hashable {
    public enum Action: UInt8, Sendable, Hashable {
        case activate = 1
        case deactivate = 2
    }

    public var action: Action
    public var member: AlarmMember

    public init(action: Action, member: AlarmMember) {
        self.action = action
        self.member = member
    }
}

public struct AlarmResponse: Sendable, Hashable {
    public var header: ResponseHeader
    /// The alarm this request raised or cleared; empty when it changed nothing (as etcd answers).
    public var alarms: [AlarmMember]

    public init(header: ResponseHeader, alarms: [AlarmMember]) {
        self.header = header
        self.alarms = alarms
    }
}

// MARK: - Members

/// What the cluster knows of one member besides its Raft role: its name and URLs, as etcd's
/// member list shows them. A member publishes its own name and client URLs when it starts; the
/// member that adds another records its peer URLs first (with no name, as etcd shows a member
/// that has not started). Replicated through the log so every member can list every other.
/// Changes no revision and no key.
public struct MemberAttributes: Sendable, Hashable {
    public var id: UInt64
    public var name: String
    public var peerURLs: [String]
    public var clientURLs: [String]
    /// Removes the record instead (after the member leaves the cluster).
    public var removed: Bool

    public init(id: UInt64, name: String, peerURLs: [String], clientURLs: [String], removed: Bool = false) {
        self.id = id
        self.name = name
        self.peerURLs = peerURLs
        self.clientURLs = clientURLs
        self.removed = removed
    }
}

// MARK: - Watch events

public struct WatchEvent: Sendable, Hashable {
    public enum EventType: UInt8, Sendable, Hashable {
        case put = 0, delete = 1
    }

    public var type: EventType
    /// For a delete: the key with `modRevision` set to the deletion revision and everything else 0.
    public var kv: KeyValue
    /// The key's version before this event, if it existed and is not compacted away.
    public var prevKv: KeyValue?

    public init(type: EventType, kv: KeyValue, prevKv: KeyValue?) {
        self.type = type
        self.kv = kv
        self.prevKv = prevKv
    }
}
