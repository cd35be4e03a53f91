/// Everything that tunes a ``RaftNode``, validated once at construction.
public struct Configuration: Sendable, Hashable {
    /// This node's identity; not ``noNode``.
    public var id: NodeID
    /// Ticks without hearing from a leader before a follower campaigns. The actual timeout is
    /// drawn at random from `[electionTimeoutTicks, 2 * electionTimeoutTicks)`.
    public var electionTimeoutTicks: Int = 10
    /// Ticks between a leader's heartbeats. Must be smaller than `electionTimeoutTicks`.
    public var heartbeatIntervalTicks: Int = 1
    /// Ask for a pre-vote before starting an election (thesis 9.6).
    public var preVote: Bool = true
    /// A leader steps down when it has not heard from a majority within an election timeout,
    /// and followers ignore vote requests while they have a live leader (thesis 6.2, 4.2.3).
    public var checkQuorum: Bool = true
    /// Upper bound for the entries in one append message (at least one entry is always sent).
    public var messageBytesMax: Int = 1 << 20
    /// Upper bound for append messages sent to one follower and not yet acknowledged.
    public var inflightMessagesMax: Int = 256
    /// Upper bound for entry bytes sent to one follower and not yet acknowledged.
    public var inflightBytesMax: Int = 32 << 20
    /// Upper bound for the bytes of entries appended by the leader and not yet applied.
    public var uncommittedBytesMax: Int = 64 << 20
    /// Upper bound for one proposal.
    public var entryBytesMax: Int = 8 << 20
    /// Upper bound for the committed entries handed out in one `Ready`.
    public var committedBytesPerReadyMax: Int = 16 << 20
    /// Upper bound for ReadIndex requests waiting for confirmation at a leader.
    public var pendingReadsMax: Int = 4096
    /// A learner may be promoted only when it is at most this many entries behind the leader.
    public var learnerPromotionLagMax: UInt64 = 1000
    /// Followers forward proposals to the leader instead of refusing them with `notLeader`.
    public var forwardProposals: Bool = true
    /// The highest index the state machine has already applied (and made durable), on restart.
    public var appliedIndex: UInt64 = 0
    /// Seed for the election timeout jitter; one seed replays one run.
    public var randomSeed: UInt64 = 0
    /// Deliberately broken rules, for proving that the simulator's checkers can fail.
    /// Never set them outside tests.
    public var unsafeTesting: UnsafeTestingSwitches = UnsafeTestingSwitches()

    public init(id: NodeID) {
        self.id = id
    }

    /// Throws the first value that cannot work.
    public func validate() throws(ConfigurationError) {
        func fail(_ field: String, _ reason: String) -> ConfigurationError {
            ConfigurationError(field: field, reason: reason)
        }
        if id == noNode { throw fail("id", "must not be \(noNode)") }
        if heartbeatIntervalTicks < 1 { throw fail("heartbeatIntervalTicks", "must be at least 1") }
        if electionTimeoutTicks <= heartbeatIntervalTicks {
            throw fail("electionTimeoutTicks", "must be greater than heartbeatIntervalTicks")
        }
        if messageBytesMax < 1 { throw fail("messageBytesMax", "must be positive") }
        if inflightMessagesMax < 1 { throw fail("inflightMessagesMax", "must be positive") }
        if inflightBytesMax < messageBytesMax { throw fail("inflightBytesMax", "must be at least messageBytesMax") }
        if entryBytesMax < 1 { throw fail("entryBytesMax", "must be positive") }
        if uncommittedBytesMax < entryBytesMax { throw fail("uncommittedBytesMax", "must be at least entryBytesMax") }
        if committedBytesPerReadyMax < 1 { throw fail("committedBytesPerReadyMax", "must be positive") }
        if pendingReadsMax < 1 { throw fail("pendingReadsMax", "must be positive") }
    }
}

/// Switches that break one rule of Raft each. They exist so that a test can show the simulator
/// catches the broken rule; a production configuration leaves them all off.
public struct UnsafeTestingSwitches: Sendable, Hashable {
    /// Commit an entry of an earlier term by counting replicas (what paper Figure 8 forbids).
    public var commitPreviousTermEntriesByCounting = false
    /// Grant votes without checking that the candidate's log is at least as up-to-date (paper 5.4.1).
    public var skipElectionRestriction = false
    /// Serve ReadIndex requests at once, without the heartbeat round that confirms leadership.
    public var skipReadIndexConfirmation = false

    public init() {}
}

/// A small, fast, seeded generator (SplitMix64): the core's only source of randomness.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}
