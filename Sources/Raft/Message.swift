/// The kinds of message Raft nodes exchange.
public enum MessageType: UInt8, Sendable, Hashable, CaseIterable {
    /// AppendEntries (paper 5.3): `index`/`logTerm` name the entry before `entries`.
    case append = 0
    /// `reject == false`: the follower's log matches up to `index`.
    /// `reject == true`: it did not match at `index`; `rejectHint`/`logTerm` say where to probe next.
    case appendResponse = 1
    /// RequestVote (paper 5.2): `index`/`logTerm` are the candidate's last entry.
    case requestVote = 2
    case requestVoteResponse = 3
    /// Pre-vote (thesis 9.6): asks whether a vote would be granted in `term` without changing anyone's term.
    case requestPreVote = 4
    case requestPreVoteResponse = 5
    /// Leader liveness and commit propagation; `context` carries the ReadIndex round it confirms.
    case heartbeat = 6
    case heartbeatResponse = 7
    /// InstallSnapshot (paper 7): the whole snapshot in `snapshot`; the transport chunks it.
    case snapshot = 8
    /// Leadership transfer (thesis 3.10): the receiver campaigns at once, bypassing pre-vote and leases.
    case timeoutNow = 9
    /// A proposal forwarded from a follower to the leader.
    case propose = 10
    /// A follower asks the leader for a read index; `context` identifies the request.
    case readIndex = 11
    case readIndexResponse = 12
    /// A follower forwards a leadership transfer request (`index` is the transferee) to the leader.
    case transferLeadership = 13
}

/// One message between two nodes. Fields not used by a message's type are zero or empty.
public struct Message: Sendable, Hashable {
    public var type: MessageType
    public var from: NodeID
    public var to: NodeID
    public var term: UInt64
    public var logTerm: UInt64
    public var index: UInt64
    public var entries: [Entry]
    public var commit: UInt64
    public var reject: Bool
    public var rejectHint: UInt64
    public var snapshot: Snapshot?
    /// ReadIndex request identity, heartbeat read round, or 1 for a vote that is part of a leadership transfer.
    public var context: UInt64

    public init(
        type: MessageType, from: NodeID = noNode, to: NodeID = noNode, term: UInt64 = 0,
        logTerm: UInt64 = 0, index: UInt64 = 0, entries: [Entry] = [], commit: UInt64 = 0,
        reject: Bool = false, rejectHint: UInt64 = 0, snapshot: Snapshot? = nil, context: UInt64 = 0
    ) {
        self.type = type
        self.from = from
        self.to = to
        self.term = term
        self.logTerm = logTerm
        self.index = index
        self.entries = entries
        self.commit = commit
        self.reject = reject
        self.rejectHint = rejectHint
        self.snapshot = snapshot
        self.context = context
    }

    /// A rough size for transport accounting.
    public var byteCount: Int {
        64 + entries.reduce(0) { $0 + $1.byteCount } + (snapshot?.data.count ?? 0)
    }
}

/// The `context` value marking a vote request that is part of a leadership transfer.
let transferCampaignContext: UInt64 = 1
