import KVStore

/// Why a store call failed, typed, so that a caller acts on the cause rather than on the text of
/// a message: the API server turns ``compacted(compactRevision:)`` into 410 Gone, retries
/// ``noLeader`` and ``membershipChangeInProgress``, and answers ``refused(_:)`` as a bad request.
///
/// The same errors come from every backend: the embedded member, and an etcd v3 endpoint whose
/// gRPC statuses are read back into these (see `EtcdServer`'s status mapping).
public enum StoreError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The revision asked for is below the compaction; `compactRevision` when known.
    case compacted(compactRevision: Int64?)
    /// The revision asked for is above the store's current one.
    case futureRevision
    /// A request the store refuses as etcd would (key not found, lease not found, too many
    /// operations, database space exceeded, ...): nothing was changed.
    case refused(KVError)
    /// The encoded request is larger than the member accepts (etcd's `--max-request-bytes`).
    case requestTooLarge
    /// A request the server could not take as sent (etcd's InvalidArgument with words this
    /// client does not know, e.g. from a newer etcd).
    case invalidRequest(String)
    /// No leader is known (an election is running, or this member is cut off): retry later.
    case noLeader
    /// The outcome is unknown: the request may still apply.
    case timedOut
    /// The leader the request went to was lost; whether it applied is unknown.
    case leaderLost
    /// Leadership changed before the request committed; it will never apply.
    case proposalDropped
    /// Too many requests are in flight on this member: retry later.
    case overloaded
    /// The member is shutting down.
    case stopped
    /// This member was removed from the cluster.
    case notMember
    /// Another membership change has not committed yet; one at a time (retry shortly).
    case membershipChangeInProgress
    /// A learner too far behind to be promoted yet.
    case learnerNotCaughtUp
    /// No member with that ID.
    case memberNotFound
    /// Peer URLs that are not URLs like `https://10.0.0.1:2380`.
    case invalidPeerURLs
    /// Another member has one of these peer URLs already.
    case peerURLsExist
    /// A member with the ID these peer URLs derive already exists.
    case memberIDExists
    /// Only a learner can be promoted.
    case notLearner
    /// Leadership can move only to a voter.
    case badLeaderTransferee
    /// The Raft core refused a change now (a leadership transfer or a new leader's first
    /// commit is under way, or the change is not valid in this configuration).
    case rejected(String)
    /// The member cannot answer now for another reason (the leader's address is not known yet,
    /// a forwarding connection failed): retry later.
    case unavailable(String)
    /// A watch could not be made (too many watchers on the member or the connection).
    case watchRefused(String)
    /// A watch fell so far behind that its buffer hit its byte or event cap; a new watch from
    /// `resumeRevision` misses nothing.
    case watchTooSlow(resumeRevision: Int64)
    /// Anything else (a bug, or an answer of the wrong kind).
    case internalError(String)

    /// The typed form of a refusal the state machine answered.
    public init(_ error: KVError) {
        switch error {
        case .compacted: self = .compacted(compactRevision: nil)
        case .futureRevision: self = .futureRevision
        case .requestTooLarge: self = .requestTooLarge
        default: self = .refused(error)
        }
    }

    /// Whether the same call may succeed if repeated a little later with nothing changed:
    /// elections, overload, one membership change at a time. (A timed-out write may have applied:
    /// it is not listed; a caller that can check, or whose write is idempotent, retries it.)
    public var isRetryable: Bool {
        switch self {
        case .noLeader, .overloaded, .membershipChangeInProgress, .unavailable, .proposalDropped, .learnerNotCaughtUp: true
        default: false
        }
    }

    /// etcd's words for the error (what etcdctl prints for the gRPC status it maps to).
    public var message: String {
        switch self {
        case .compacted: KVError.compacted.message
        case .futureRevision: KVError.futureRevision.message
        case .refused(let error): error.message
        case .requestTooLarge: KVError.requestTooLarge.message
        case .noLeader: "etcdserver: no leader"
        case .timedOut: "etcdserver: request timed out"
        case .leaderLost: "etcdserver: request timed out, possibly due to previous leader failure"
        case .proposalDropped: "etcdserver: request cancelled"
        case .overloaded: "etcdserver: too many requests"
        case .stopped: "etcdserver: server stopped"
        case .notMember: "etcdserver: the member has been permanently removed from the cluster"
        case .membershipChangeInProgress: "etcdserver: a membership change has not committed yet: one at a time"
        case .learnerNotCaughtUp: "etcdserver: can only promote a learner member which is in sync with leader"
        case .memberNotFound: "etcdserver: member not found"
        case .invalidPeerURLs: "etcdserver: given member URLs are invalid"
        case .peerURLsExist: "etcdserver: Peer URLs already exists"
        case .memberIDExists: "etcdserver: member ID already exist"
        case .notLearner: "etcdserver: can only promote a learner member"
        case .badLeaderTransferee: "etcdserver: bad leader transferee"
        case .rejected(let reason): "etcdserver: \(reason)"
        case .unavailable(let reason), .watchRefused(let reason), .invalidRequest(let reason): reason
        case .watchTooSlow(let resume): "etcdserver: watcher too slow; resume from revision \(resume)"
        case .internalError(let reason): reason
        }
    }

    public var description: String { message }
}
