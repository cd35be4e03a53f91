import Raft

/// What one simulated run does. Everything random is drawn from `seed`.
public struct SimulationOptions: Sendable {
    public var seed: UInt64
    /// Initial voters (3, 5 or 7); up to two more nodes may join during the run.
    public var nodeCount: Int
    /// Ticks of the fault phase, during which the network and nodes misbehave.
    public var faultPhaseTicks: Int = 300
    /// Ticks the healed cluster has, after the faults stop, to elect a leader and commit.
    public var livenessTicksMax: Int = 150
    /// Simulated microseconds per tick (each node's `tick()` runs this often).
    public var tickIntervalMicroseconds: UInt64 = 100_000
    /// Bytes of each client proposal.
    public var proposalBytes: Int = 16
    /// A node snapshots and compacts its log once this many entries are applied since the last one.
    public var snapshotIntervalEntries: UInt64 = 40
    /// Entries kept below a snapshot so that slightly lagging followers need no snapshot.
    public var compactionMarginEntries: UInt64 = 5
    /// Rules to break on purpose, to prove that the checkers catch them.
    public var unsafeTesting = UnsafeTestingSwitches()
    /// Record a line per event (for replaying one seed by hand).
    public var trace = false

    public init(seed: UInt64, nodeCount: Int = 3) {
        self.seed = seed
        self.nodeCount = nodeCount
    }
}

/// A broken rule, found by a checker.
public struct Violation: Sendable, CustomStringConvertible {
    public var step: Int
    public var rule: String
    public var detail: String
    public var description: String { "step \(step): \(rule): \(detail)" }
}

/// What a run did and found.
public struct SimulationResult: Sendable {
    public var seed: UInt64
    public var nodeCount: Int
    public var steps = 0
    public var ticks = 0
    public var messagesDelivered = 0
    public var messagesDropped = 0
    public var committedIndex: UInt64 = 0
    public var writesAcknowledged = 0
    public var readsCompleted = 0
    public var crashes = 0
    public var membershipChanges = 0
    public var leaderElections = 0
    public var snapshotsSent = 0
    public var violation: Violation?
    public var traceLines: [String] = []

    public init(seed: UInt64, nodeCount: Int) {
        self.seed = seed
        self.nodeCount = nodeCount
    }

    public var passed: Bool { violation == nil }
}
