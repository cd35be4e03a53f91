/// Why a proposal (or membership change, or transfer) was refused. The shell can act on each:
/// retry on the leader, wait for an election, or report the limit to the caller.
public enum ProposalError: Error, Sendable, Hashable, CustomStringConvertible {
    /// This node is not the leader; the leader is the given node. Retry there.
    case notLeader(leader: NodeID)
    /// No leader is known (an election is in progress or this node is partitioned).
    case noLeader
    /// Accepting the proposal would take the uncommitted log past `uncommittedBytesMax`.
    case uncommittedBytesExceeded(limit: Int)
    /// A single entry may not be larger than `entryBytesMax`.
    case entryTooLarge(bytes: Int, limit: Int)
    /// The leader is handing leadership over and accepts no proposals meanwhile.
    case leadershipTransferInProgress(to: NodeID)
    /// A previous membership change is not committed yet: only one at a time (thesis 4.1).
    case membershipChangeInProgress(index: UInt64)
    /// The leader has not committed an entry of its own term yet, so it may not change the
    /// membership (the fix to single-server changes, Ongaro, raft-dev 2015).
    case leaderNotReady
    /// The change makes no sense against the current membership.
    case invalidMembershipChange(MembershipChangeRejection)
    /// A learner is promoted only once it has caught up.
    case learnerNotCaughtUp(node: NodeID, lagEntries: UInt64)
    /// Too many ReadIndex requests are waiting.
    case tooManyPendingReads(limit: Int)
    /// The target of a leadership transfer is not a voter, or is this node.
    case invalidTransferTarget(NodeID)

    public var description: String {
        switch self {
        case .notLeader(let leader): "not leader, leader is \(leader)"
        case .noLeader: "no leader"
        case .uncommittedBytesExceeded(let limit): "too many uncommitted bytes (limit \(limit))"
        case .entryTooLarge(let bytes, let limit): "entry of \(bytes) bytes is larger than the limit of \(limit)"
        case .leadershipTransferInProgress(let node): "leadership transfer to \(node) in progress"
        case .membershipChangeInProgress(let index): "membership change at index \(index) not yet committed"
        case .leaderNotReady: "leader has not yet committed an entry in its term"
        case .invalidMembershipChange(let reason): "invalid membership change: \(reason)"
        case .learnerNotCaughtUp(let node, let lag): "learner \(node) is \(lag) entries behind"
        case .tooManyPendingReads(let limit): "too many pending reads (limit \(limit))"
        case .invalidTransferTarget(let node): "cannot transfer leadership to \(node)"
        }
    }
}

/// A configuration value that cannot work.
public struct ConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    public var field: String
    public var reason: String

    public init(field: String, reason: String) {
        self.field = field
        self.reason = reason
    }

    public var description: String { "invalid Raft configuration: \(field) \(reason)" }
}

/// Errors a ``LogStorage`` reports for a read it cannot serve.
public enum StorageError: Error, Sendable, Hashable {
    /// The requested index is below the first index: it was compacted into a snapshot.
    case compacted
    /// The requested index is above the last index.
    case unavailable
    /// No snapshot exists yet (or it is being made); try again later.
    case snapshotTemporarilyUnavailable
}
