/// A snapshot of a node's state for operators and status APIs.
public struct Status: Sendable, Hashable {
    /// The leader's view of one member's replication.
    public struct Replication: Sendable, Hashable {
        public var match: UInt64
        public var next: UInt64
        /// `probe`, `replicate` or `snapshot`.
        public var state: String
        public var isLearner: Bool
        public var recentlyActive: Bool
    }

    public var id: NodeID
    public var term: UInt64
    public var vote: NodeID
    public var role: Role
    public var leader: NodeID
    public var commitIndex: UInt64
    public var appliedIndex: UInt64
    public var firstIndex: UInt64
    public var lastIndex: UInt64
    public var membership: Membership
    public var leadTransferee: NodeID
    /// Filled on the leader only.
    public var replication: [NodeID: Replication]
}

extension RaftNode {
    public func status() -> Status {
        var replication: [NodeID: Status.Replication] = [:]
        if role == .leader {
            for (node, follower) in progress {
                replication[node] = Status.Replication(
                    match: follower.match, next: follower.next, state: follower.state.rawValue,
                    isLearner: follower.isLearner, recentlyActive: follower.recentActive)
            }
        }
        return Status(
            id: id, term: term, vote: vote, role: role, leader: leader, commitIndex: log.committed,
            appliedIndex: log.applied, firstIndex: log.firstIndex, lastIndex: log.lastIndex,
            membership: membership, leadTransferee: leadTransferee, replication: replication)
    }
}
