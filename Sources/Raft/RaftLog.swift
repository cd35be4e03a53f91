/// Entries and a snapshot that the core holds but the shell has not yet made durable.
///
/// Invariant: when `snapshot` is set, `offset == snapshot.index + 1`; `entries[i].index == offset + i`.
struct UnstableLog {
    var snapshot: Snapshot?
    var entries: [Entry] = []
    var offset: UInt64

    var firstIndexIfKnown: UInt64? {
        snapshot.map { $0.metadata.index + 1 }
    }

    var lastIndexIfKnown: UInt64? {
        if let last = entries.last { return last.index }
        return snapshot?.metadata.index
    }

    func termIfKnown(at index: UInt64) -> UInt64? {
        if index < offset {
            if let snapshot, snapshot.metadata.index == index { return snapshot.metadata.term }
            return nil
        }
        guard let last = lastIndexIfKnown, index <= last, !entries.isEmpty else { return nil }
        return entries[Int(index - offset)].term
    }

    /// The entries up to `index` (with `term`) are durable now.
    mutating func stable(to index: UInt64, term: UInt64) {
        // A stale acknowledgement: the entry was replaced (different term) or already dropped.
        guard let knownTerm = termIfKnown(at: index), knownTerm == term, index >= offset else { return }
        entries.removeFirst(Int(index - offset + 1))
        offset = index + 1
    }

    mutating func stableSnapshot(to index: UInt64) {
        if let snapshot, snapshot.metadata.index == index { self.snapshot = nil }
    }

    mutating func restore(_ newSnapshot: Snapshot) {
        offset = newSnapshot.metadata.index + 1
        entries = []
        snapshot = newSnapshot
    }

    mutating func truncateAndAppend(_ newEntries: [Entry]) {
        guard let first = newEntries.first else { return }
        let after = first.index
        if after == offset + UInt64(entries.count) {
            entries.append(contentsOf: newEntries)
        } else if after <= offset {
            // Replaces everything unstable; the storage's copy is overwritten when persisted.
            offset = after
            entries = newEntries
        } else {
            entries.removeSubrange(Int(after - offset)...)
            entries.append(contentsOf: newEntries)
        }
    }

    func slice(from low: UInt64, to high: UInt64) -> ArraySlice<Entry> {
        precondition(low >= offset && high <= offset + UInt64(entries.count) && low <= high, "unstable slice [\(low), \(high)) out of [\(offset), \(offset + UInt64(entries.count)))")
        return entries[Int(low - offset)..<Int(high - offset)]
    }
}

/// The log as the core sees it: durable entries in ``LogStorage``, newer ones in memory.
///
/// Invariants: `applied <= committed <= lastIndex`; `firstIndex - 1 <= applied` after a snapshot is applied.
struct RaftLog<Storage: LogStorage> {
    let storage: Storage
    var unstable: UnstableLog
    /// The highest index known to be stored on a quorum.
    var committed: UInt64
    /// The highest index handed to the application to apply.
    var applied: UInt64

    init(storage: Storage, appliedIndex: UInt64) {
        self.storage = storage
        let first = storage.firstIndex()
        let last = storage.lastIndex()
        unstable = UnstableLog(offset: last + 1)
        committed = first - 1
        applied = first - 1
        if appliedIndex > applied { applied = min(appliedIndex, last) }
    }

    var firstIndex: UInt64 {
        unstable.firstIndexIfKnown ?? storage.firstIndex()
    }

    var lastIndex: UInt64 {
        unstable.lastIndexIfKnown ?? storage.lastIndex()
    }

    /// The last index the shell has reported durable.
    var lastStableIndex: UInt64 {
        // A snapshot not yet durable replaces the whole stored log, so nothing above it counts yet.
        if let pending = unstable.snapshot { return min(storage.lastIndex(), pending.metadata.index) }
        return unstable.offset - 1
    }

    var lastTerm: UInt64 {
        (try? term(at: lastIndex)) ?? 0
    }

    func term(at index: UInt64) throws(StorageError) -> UInt64 {
        // The valid range is [firstIndex - 1, lastIndex]: the entry before the first is the snapshot's.
        let dummy = firstIndex - 1
        if index < dummy { throw .compacted }
        if index > lastIndex { throw .unavailable }
        if let known = unstable.termIfKnown(at: index) { return known }
        return try storage.term(at: index)
    }

    func matchTerm(_ index: UInt64, _ term: UInt64) -> Bool {
        guard let actual = try? self.term(at: index) else { return false }
        return actual == term
    }

    /// A log is at least as up-to-date as ours if its last term is higher, or equal with an index at least ours (paper 5.4.1).
    func isUpToDate(lastIndex candidateIndex: UInt64, term candidateTerm: UInt64) -> Bool {
        candidateTerm > lastTerm || (candidateTerm == lastTerm && candidateIndex >= lastIndex)
    }

    /// The first index of `entries` whose term conflicts with ours, or whose index we don't have; 0 if none.
    func findConflict(_ entries: [Entry]) -> UInt64 {
        for entry in entries where !matchTerm(entry.index, entry.term) {
            return entry.index
        }
        return 0
    }

    /// The largest index at or below `index` whose term is at most `term`, with that term;
    /// the follower's hint that lets a leader skip a whole term of conflicting entries at once.
    func findConflictByTerm(index: UInt64, term: UInt64) -> (index: UInt64, term: UInt64) {
        var probe = index
        while true {
            guard let probeTerm = try? self.term(at: probe) else { return (probe, 0) }
            if probeTerm <= term || probe == 0 { return (probe, probeTerm) }
            probe -= 1
        }
    }

    @discardableResult
    mutating func append(_ entries: [Entry]) -> UInt64 {
        guard let first = entries.first else { return lastIndex }
        precondition(first.index > committed, "appending at \(first.index) would overwrite committed \(committed)")
        precondition(first.index <= lastIndex + 1, "appending at \(first.index) leaves a gap after \(lastIndex)")
        unstable.truncateAndAppend(entries)
        return lastIndex
    }

    mutating func commit(to index: UInt64) {
        guard index > committed else { return }
        precondition(index <= lastIndex, "commit \(index) is beyond the last index \(lastIndex)")
        committed = index
    }

    /// Commits `index` if it is above the commit index and of `term` (paper 5.4.2).
    mutating func maybeCommit(index: UInt64, term: UInt64, requireCurrentTerm: Bool = true) -> Bool {
        guard index > committed else { return false }
        if requireCurrentTerm {
            guard matchTerm(index, term) else { return false }
        }
        commit(to: index)
        return true
    }

    mutating func restore(_ snapshot: Snapshot) {
        committed = snapshot.metadata.index
        unstable.restore(snapshot)
    }

    /// Entries in `[low, high)`, at most `maxBytes` but at least one.
    func slice(from low: UInt64, to high: UInt64, maxBytes: Int) throws(StorageError) -> [Entry] {
        if low == high { return [] }
        if low < firstIndex { throw .compacted }
        if high > lastIndex + 1 { throw .unavailable }
        var result: [Entry] = []
        if low < unstable.offset {
            result = try storage.entries(from: low, to: min(high, unstable.offset), maxBytes: maxBytes)
            // The storage stopped early because of the size limit.
            if UInt64(result.count) < min(high, unstable.offset) - low { return result }
        }
        if high > unstable.offset {
            let unstableEntries = unstable.slice(from: max(low, unstable.offset), to: high)
            result += Entry.prefix(of: unstableEntries, maxBytes: maxBytes, alreadyBytes: result.reduce(0) { $0 + $1.byteCount }, alreadyCount: result.count)
        }
        return result
    }

    func entries(from index: UInt64, maxBytes: Int) throws(StorageError) -> [Entry] {
        if index > lastIndex { return [] }
        return try slice(from: index, to: lastIndex + 1, maxBytes: maxBytes)
    }

    /// The snapshot to send to a follower that needs compacted entries.
    func snapshot() throws(StorageError) -> Snapshot {
        if let pending = unstable.snapshot { return pending }
        return try storage.snapshot()
    }

    var hasNextCommittedEntries: Bool {
        committed > max(applied, firstIndex - 1)
    }

    func nextCommittedEntries(maxBytes: Int) -> [Entry] {
        let low = max(applied + 1, firstIndex)
        guard committed + 1 > low else { return [] }
        do {
            return try slice(from: low, to: committed + 1, maxBytes: maxBytes)
        } catch {
            preconditionFailure("committed entries [\(low), \(committed)] unavailable: \(error)")
        }
    }

    mutating func applied(to index: UInt64) {
        guard index > 0 else { return }
        precondition(index <= committed, "applied \(index) is beyond committed \(committed)")
        precondition(index >= applied, "applied moved back from \(applied) to \(index)")
        applied = index
    }
}
