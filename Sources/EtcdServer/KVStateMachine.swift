import KVStore
import NIOConcurrencyHelpers
import RaftRuntime

/// The etcd keyspace as the Raft runtime's state machine: each committed command is an encoded
/// ``KVRequest`` applied to the SQLite-backed ``KVStore``.
///
/// The runtime calls `apply`/`snapshot`/`restore` from its actor; gRPC handlers read (serializable
/// ranges, status) from other tasks. The lock serializes both, which is what makes the
/// `@unchecked Sendable` safe.
public final class KVStateMachine: StateMachine, @unchecked Sendable {
    private let lock = NIOLock()
    private let store: KVStore
    /// Typed responses of recently applied commands, by Raft index, for the member that proposed
    /// them to pick up (bounded: older ones are dropped).
    private var responses: [UInt64: KVResponse] = [:]
    private var responseOrder: [UInt64] = []
    private let responsesMax = 65_536
    /// Called with the events of each applied batch, under no lock, for the watch hub.
    private let onEvents: @Sendable ([WatchEvent], Int64) -> Void

    public init(path: String, onEvents: @escaping @Sendable ([WatchEvent], Int64) -> Void = { _, _ in }) throws {
        store = try KVStore.open(path: path)
        self.onEvents = onEvents
    }

    public func apply(_ commands: [AppliedCommand]) throws -> [[UInt8]] {
        var batch: [(index: UInt64, request: KVRequest)] = []
        batch.reserveCapacity(commands.count)
        // A snapshot sent by the leader holds its database as of sending, which may be past the
        // snapshot's index: the commands in between are already in it (etcd's consistent index).
        let held = lock.withLock { store.appliedIndex }
        let fresh = commands.filter { $0.index > held }
        // Responses travel by `takeResponse`; the runtime gets one empty answer per command.
        let answers = [[UInt8]](repeating: [], count: commands.count)
        guard !fresh.isEmpty else { return answers }
        for command in fresh {
            // A command that does not decode was refused before proposing; keep every replica in
            // step by applying it as a no-op read of nothing.
            let request = (try? KVRequest.decode(command.data)) ?? .range(RangeRequest(key: [0]))
            batch.append((command.index, request))
        }
        let (events, revision) = try lock.withLock { () throws -> ([WatchEvent], Int64) in
            let results = try store.apply(batch)
            for (position, command) in fresh.enumerated() {
                responses[command.index] = results[position]
                responseOrder.append(command.index)
            }
            if responseOrder.count > responsesMax {
                let excess = responseOrder.count - responsesMax
                for index in responseOrder.prefix(excess) { responses[index] = nil }
                responseOrder.removeFirst(excess)
            }
            return (store.lastAppliedEvents, store.currentRevision)
        }
        if !events.isEmpty { onEvents(events, revision) }
        return answers
    }

    public func persist() throws -> UInt64? {
        try lock.withLock {
            try store.checkpoint()
            return store.appliedIndex
        }
    }

    /// The typed response of the command applied at `index`, once.
    public func takeResponse(index: UInt64) -> KVResponse? {
        lock.withLock { responses.removeValue(forKey: index) }
    }

    public func snapshot() throws -> [UInt8] {
        try lock.withLock { try store.snapshotData() }
    }

    public func restore(_ data: [UInt8], index: UInt64) throws {
        try lock.withLock { try store.restore(from: data) }
    }

    /// A consistent copy of the database as an SQLite file (for `snapshot save`).
    public func databaseCopy() throws -> [UInt8] {
        try lock.withLock { try store.snapshotData() }
    }

    /// Rewrites the database file compactly.
    public func defragment() throws {
        try lock.withLock { try store.vacuum() }
    }

    public var durableAppliedIndex: UInt64 {
        lock.withLock { store.appliedIndex }
    }

    /// Runs `body` with the store under the lock (local reads).
    public func read<Result>(_ body: (KVStore) throws -> Result) rethrows -> Result {
        try lock.withLock { try body(store) }
    }
}
