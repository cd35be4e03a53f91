/// The read side of a node's durable log, which the core consults for entries it no longer holds
/// in memory. The shell writes to it (after persisting a ``Ready``); the core only reads.
///
/// The storage keeps the term of the entry just before ``firstIndex()`` (the snapshot's), so that
/// `term(at: firstIndex() - 1)` succeeds.
public protocol LogStorage: AnyObject {
    /// The persisted hard state and the membership of the latest snapshot (the bootstrap
    /// membership for a new cluster).
    func initialState() throws -> (hardState: HardState, membership: Membership)
    /// Entries in `[low, high)`, at most `maxBytes` of them but always at least one.
    func entries(from low: UInt64, to high: UInt64, maxBytes: Int) throws(StorageError) -> [Entry]
    /// The term of the entry at `index`; `firstIndex() - 1` answers with the snapshot's term.
    func term(at index: UInt64) throws(StorageError) -> UInt64
    /// The index of the first entry still held (the snapshot's index plus one).
    func firstIndex() -> UInt64
    /// The index of the last entry held (the snapshot's index when the log is empty).
    func lastIndex() -> UInt64
    /// The latest snapshot.
    func snapshot() throws(StorageError) -> Snapshot
}

/// A ``LogStorage`` kept in memory: for tests, the simulator and benchmarks.
///
/// Its whole content is the value ``MemoryStorage/State``, so a simulator can keep a copy of what
/// was last fsynced and restore it after a simulated crash.
public final class MemoryStorage: LogStorage {
    /// Everything the storage holds.
    public struct State: Sendable, Hashable {
        public var hardState = HardState()
        public var snapshot = Snapshot()
        /// `entries[0]` is a placeholder carrying the snapshot's index and term.
        public var entries: [Entry] = [Entry(term: 0, index: 0)]
    }

    public private(set) var state: State

    /// A storage for a node of a new cluster whose initial voters are `membership` (see
    /// ``Bootstrap``), or, with an empty membership, for a node that will join an existing cluster.
    public init(bootstrap membership: Membership = Membership()) {
        state = State()
        let entries = Bootstrap.entries(for: membership)
        state.entries += entries
        state.hardState = Bootstrap.hardState(for: membership)
    }

    /// A storage holding `state` (for restarts in the simulator).
    public init(state: State) {
        self.state = state
    }

    public func initialState() throws -> (hardState: HardState, membership: Membership) {
        (state.hardState, state.snapshot.metadata.membership)
    }

    private var offset: UInt64 { state.entries[0].index }

    public func firstIndex() -> UInt64 { offset + 1 }

    public func lastIndex() -> UInt64 { offset + UInt64(state.entries.count) - 1 }

    public func term(at index: UInt64) throws(StorageError) -> UInt64 {
        if index < offset { throw .compacted }
        if index > lastIndex() { throw .unavailable }
        return state.entries[Int(index - offset)].term
    }

    public func entries(from low: UInt64, to high: UInt64, maxBytes: Int) throws(StorageError) -> [Entry] {
        if low <= offset { throw .compacted }
        if high > lastIndex() + 1 { throw .unavailable }
        precondition(low <= high, "entries(from: \(low), to: \(high)): low above high")
        return Entry.prefix(of: state.entries[Int(low - offset)..<Int(high - offset)], maxBytes: maxBytes)
    }

    public func snapshot() throws(StorageError) -> Snapshot { state.snapshot }

    // MARK: Writing (the shell's side)

    public func setHardState(_ hardState: HardState) {
        state.hardState = hardState
    }

    /// Appends `entries`, replacing any held entries at the same or higher indexes.
    public func append(_ newEntries: [Entry]) {
        guard let first = newEntries.first else { return }
        // Entries already folded into the snapshot are skipped.
        let firstKept = newEntries.drop { $0.index <= offset }
        guard let firstNew = firstKept.first else { return }
        precondition(firstNew.index <= lastIndex() + 1, "append at \(first.index) leaves a gap after \(lastIndex())")
        state.entries.removeSubrange(Int(firstNew.index - offset)...)
        state.entries.append(contentsOf: firstKept)
    }

    /// Replaces the whole log with `snapshot` (a snapshot received from the leader).
    public func applySnapshot(_ snapshot: Snapshot) {
        guard snapshot.metadata.index > state.snapshot.metadata.index else { return }
        state.snapshot = snapshot
        state.entries = [Entry(term: snapshot.metadata.term, index: snapshot.metadata.index)]
    }

    /// Records a snapshot of the local state machine at `index` (which must be held).
    public func createSnapshot(index: UInt64, membership: Membership, data: [UInt8]) throws(StorageError) {
        if index <= state.snapshot.metadata.index { throw .compacted }
        let entryTerm = try term(at: index)
        state.snapshot = Snapshot(metadata: SnapshotMetadata(index: index, term: entryTerm, membership: membership), data: data)
    }

    /// Drops the entries up to `index`, which must not be above the snapshot's index.
    public func compact(upTo index: UInt64) throws(StorageError) {
        if index <= offset { throw .compacted }
        if index > lastIndex() { throw .unavailable }
        precondition(index <= state.snapshot.metadata.index, "compacting past the snapshot loses data")
        let placeholder = Entry(term: state.entries[Int(index - offset)].term, index: index)
        state.entries.removeSubrange(0...Int(index - offset))
        state.entries.insert(placeholder, at: 0)
    }
}

/// How a new cluster starts: every initial member's log begins with the same committed entries,
/// one membership change per initial voter (term 1, indexes 1...n), as etcd bootstraps. A node
/// that joins later starts empty and learns the whole membership history from the log or a
/// snapshot, so it never has to be told the initial members out of band.
public enum Bootstrap {
    public static func entries(for membership: Membership) -> [Entry] {
        var entries: [Entry] = []
        for voter in membership.voters {
            entries.append(Entry(term: 1, index: UInt64(entries.count + 1), kind: .membershipChange, data: MembershipChange(.addVoter, node: voter).encoded()))
        }
        for learner in membership.learners {
            entries.append(Entry(term: 1, index: UInt64(entries.count + 1), kind: .membershipChange, data: MembershipChange(.addLearner, node: learner).encoded()))
        }
        return entries
    }

    public static func hardState(for membership: Membership) -> HardState {
        membership.isEmpty ? HardState() : HardState(term: 1, vote: noNode, commit: UInt64(membership.voters.count + membership.learners.count))
    }
}
