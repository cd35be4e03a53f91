#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOConcurrencyHelpers

/// One version of a key as the key index holds it: everything of its `kv` row but the value,
/// and where the row is.
struct IndexedVersion: Hashable, Sendable {
    var revision: Int64
    var sub: Int64
    /// The row's rowid in `kv`, where the value is read from.
    var rowID: Int64
    var tombstone: Bool
    var createRevision: Int64
    var version: Int64
    var lease: Int64

    /// Whether this version is at or before the position (`revision`, `sub`) of the history.
    func isAtOrBefore(_ position: (revision: Int64, sub: Int64)) -> Bool {
        (revision, sub) <= position
    }
}

/// A key and its stored versions, oldest first (never empty in the index).
struct IndexedKey: Sendable {
    let key: [UInt8]
    var versions: [IndexedVersion]

    /// The newest version at or below `revision`, if any (a tombstone included).
    func newest(atOrBelow revision: Int64) -> IndexedVersion? {
        // Reads are nearly always of the newest version: look from the end.
        var position = versions.count - 1
        while position >= 0 {
            if versions[position].revision <= revision { return versions[position] }
            position -= 1
        }
        return nil
    }
}

/// The order of keys: bytes compared as unsigned, a prefix first (etcd's and SQLite's BLOB order).
@inline(__always)
func compareKeys(_ first: [UInt8], _ second: [UInt8]) -> Int {
    first.withUnsafeBufferPointer { a in
        second.withUnsafeBufferPointer { b in
            let common = min(a.count, b.count)
            if common > 0 {
                let order = memcmp(a.baseAddress!, b.baseAddress!, common)
                if order != 0 { return order < 0 ? -1 : 1 }
            }
            return a.count == b.count ? 0 : (a.count < b.count ? -1 : 1)
        }
    }
}

/// Keys in order, as sorted chunks of at most ``chunkMax`` entries: a lookup is two binary
/// searches, an insertion moves at most a chunk, and a scan walks the chunks in order.
struct SortedKeys: Sendable {
    /// Invariant: no chunk is empty; keys strictly increase within and across chunks.
    private(set) var chunks: [[IndexedKey]] = []
    private(set) var count = 0

    static let chunkMax = 1_024

    struct Position: Hashable {
        var chunk: Int
        var slot: Int
    }

    var endPosition: Position { Position(chunk: chunks.count, slot: 0) }

    /// The first position whose key is at or after `key` (``endPosition`` if none).
    func lowerBound(_ key: [UInt8]) -> Position {
        var low = 0
        var high = chunks.count
        while low < high {
            let middle = (low + high) / 2
            if compareKeys(chunks[middle][chunks[middle].count - 1].key, key) < 0 { low = middle + 1 } else { high = middle }
        }
        guard low < chunks.count else { return endPosition }
        var first = 0
        var last = chunks[low].count
        while first < last {
            let middle = (first + last) / 2
            if compareKeys(chunks[low][middle].key, key) < 0 { first = middle + 1 } else { last = middle }
        }
        return Position(chunk: low, slot: first)
    }

    /// The position of exactly `key`, if it is held.
    func position(of key: [UInt8]) -> Position? {
        let position = lowerBound(key)
        guard position.chunk < chunks.count, compareKeys(chunks[position.chunk][position.slot].key, key) == 0 else { return nil }
        return position
    }

    func entry(at position: Position) -> IndexedKey { chunks[position.chunk][position.slot] }

    func next(_ position: Position) -> Position {
        position.slot + 1 < chunks[position.chunk].count
            ? Position(chunk: position.chunk, slot: position.slot + 1)
            : Position(chunk: position.chunk + 1, slot: 0)
    }

    /// Changes the versions of the entry at `position` in place; removes the entry if none are left.
    mutating func update(at position: Position, _ change: (inout [IndexedVersion]) -> Void) {
        change(&chunks[position.chunk][position.slot].versions)
        if chunks[position.chunk][position.slot].versions.isEmpty {
            chunks[position.chunk].remove(at: position.slot)
            count -= 1
            if chunks[position.chunk].isEmpty { chunks.remove(at: position.chunk) }
        }
    }

    /// Inserts `entry` at `position` (from ``lowerBound(_:)`` of its key, which is not held).
    mutating func insert(_ entry: IndexedKey, at position: Position) {
        count += 1
        guard !chunks.isEmpty else {
            chunks = [[entry]]
            return
        }
        var target = position
        if target.chunk == chunks.count {
            target = Position(chunk: chunks.count - 1, slot: chunks[chunks.count - 1].count)
        }
        chunks[target.chunk].insert(entry, at: target.slot)
        if chunks[target.chunk].count > SortedKeys.chunkMax {
            let half = chunks[target.chunk].count / 2
            let upper = Array(chunks[target.chunk][half...])
            chunks[target.chunk].removeSubrange(half...)
            chunks.insert(upper, at: target.chunk + 1)
        }
    }

    /// Keys given in strictly increasing order, as chunks of half the maximum (room to grow).
    init(sorted entries: [IndexedKey]) {
        count = entries.count
        var start = 0
        while start < entries.count {
            let end = min(start + SortedKeys.chunkMax / 2, entries.count)
            chunks.append(Array(entries[start..<end]))
            start = end
        }
    }

    init() {}
}

/// The in-memory index of the keyspace, as etcd's `treeIndex`: every key in order, with the
/// revision, metadata and row of each of its stored versions. Reads find keys and versions
/// here and fetch only the values they return from SQLite (by rowid); writes append rows at
/// the end of `kv`, so no B-tree ordered by key is kept on disk. Rebuilt from `kv` at open.
///
/// Shared by the store's writer and its history reader, which reads a committed state that may
/// be behind the writer: the writer adds versions (newer than anything committed) before its
/// commit, so a reader that keeps to revisions at or below its own finds every version it
/// needs; compaction removes versions only after its rows are gone, and raises ``floorRevision``
/// first, below which reads are refused (`compacted`) in the same critical section.
final class KeyIndex: Sendable {
    private struct State: Sendable {
        var keys = SortedKeys()
        var versionCount = 0
        /// Reads below it may miss versions compaction has removed from the index.
        var floorRevision: Int64 = 0
    }

    /// A pthread mutex (NIO's), which ThreadSanitizer understands (it reports false races on
    /// Synchronization.Mutex: cluster/tsan).
    private let state = NIOLockedValueBox(State())

    init() {}

    /// How many keys and versions are held (for tests and status).
    var counts: (keys: Int, versions: Int) { state.withLockedValue { ($0.keys.count, $0.versionCount) } }

    var floorRevision: Int64 { state.withLockedValue { $0.floorRevision } }

    // MARK: Reads

    /// The newest version of `key` at or below `revision` (tombstones included), or nil.
    /// Throws ``KVError/compacted`` below ``floorRevision``.
    func newest(of key: [UInt8], atOrBelow revision: Int64) throws -> IndexedVersion? {
        try state.withLockedValue { state -> IndexedVersion? in
            if revision < state.floorRevision { throw KVError.compacted }
            guard let position = state.keys.position(of: key) else { return nil }
            return state.keys.entry(at: position).newest(atOrBelow: revision)
        }
    }

    /// Up to `entriesMax` keys of `range` after `after` (from the range's start when nil), each
    /// with its version at `revision` that is not a deletion, in key order; examines at most
    /// `examineMax` keys. `resume` is the last key examined when more may follow, nil at the end.
    func live(
        in range: KeyRange, at revision: Int64, after: [UInt8]?, entriesMax: Int, examineMax: Int = 4_096
    ) throws -> (entries: [(key: [UInt8], version: IndexedVersion)], resume: [UInt8]?) {
        try state.withLockedValue { state in
            if revision < state.floorRevision { throw KVError.compacted }
            var entries: [(key: [UInt8], version: IndexedVersion)] = []
            var examined = 0
            var position = KeyIndex.start(of: range, after: after, in: state.keys)
            while position.chunk < state.keys.chunks.count {
                let entry = state.keys.entry(at: position)
                guard range.admits(entry.key) else { return (entries, nil) }
                if let version = entry.newest(atOrBelow: revision), !version.tombstone {
                    entries.append((entry.key, version))
                }
                examined += 1
                if entries.count >= entriesMax || examined >= examineMax { return (entries, entry.key) }
                position = state.keys.next(position)
            }
            return (entries, nil)
        }
    }

    /// Up to `keysMax` keys after `after` (from the first when nil), in order, with all their
    /// versions; `resume` as in ``live(in:at:after:entriesMax:examineMax:)``.
    func keys(after: [UInt8]?, keysMax: Int) -> (entries: [IndexedKey], resume: [UInt8]?) {
        state.withLockedValue { state in
            var entries: [IndexedKey] = []
            var position = KeyIndex.start(of: .from([]), after: after, in: state.keys)
            while position.chunk < state.keys.chunks.count {
                let entry = state.keys.entry(at: position)
                entries.append(entry)
                if entries.count >= keysMax { return (entries, entry.key) }
                position = state.keys.next(position)
            }
            return (entries, nil)
        }
    }

    /// All versions of `key`, oldest first (empty if it is not held).
    func versions(of key: [UInt8]) -> [IndexedVersion] {
        state.withLockedValue { state in state.keys.position(of: key).map { state.keys.entry(at: $0).versions } ?? [] }
    }

    private static func start(of range: KeyRange, after: [UInt8]?, in keys: SortedKeys) -> SortedKeys.Position {
        guard let after else { return keys.lowerBound(range.lowestKey) }
        // The first key strictly after `after`: the lower bound of its successor, `after` + 0x00.
        return keys.lowerBound(after + [0])
    }

    // MARK: Writes (the store's writer only)

    /// Adds `version` as the newest of `key` (newer than every version held for it).
    func append(_ version: IndexedVersion, to key: [UInt8]) {
        state.withLockedValue { state in
            let position = state.keys.lowerBound(key)
            if position.chunk < state.keys.chunks.count, compareKeys(state.keys.entry(at: position).key, key) == 0 {
                state.keys.update(at: position) { $0.append(version) }
            } else {
                state.keys.insert(IndexedKey(key: key, versions: [version]), at: position)
            }
            state.versionCount += 1
        }
    }

    /// Takes back the newest version of `key` (an ``append(_:to:)`` rolled back).
    func removeNewest(of key: [UInt8]) {
        state.withLockedValue { state in
            guard let position = state.keys.position(of: key) else { return }
            state.keys.update(at: position) { $0.removeLast() }
            state.versionCount -= 1
        }
    }

    /// Raises the floor to `revision` (never lowers it): before compaction removes versions.
    func raiseFloor(to revision: Int64) {
        state.withLockedValue { $0.floorRevision = max($0.floorRevision, revision) }
    }

    /// Removes the oldest `count` versions of `key` (rows compaction has deleted).
    func removeOldest(_ count: Int, of key: [UInt8]) {
        guard count > 0 else { return }
        state.withLockedValue { state in
            guard let position = state.keys.position(of: key) else { return }
            let removed = min(count, state.keys.entry(at: position).versions.count)
            state.keys.update(at: position) { $0.removeFirst(removed) }
            state.versionCount -= removed
        }
    }

    /// Replaces everything with `built` (a rebuild after open or restore); the floor goes back to 0.
    func replace(with built: (keys: SortedKeys, versionCount: Int)) {
        state.withLockedValue { $0 = State(keys: built.keys, versionCount: built.versionCount, floorRevision: 0) }
    }
}

extension KeyRange {
    /// The smallest key of the range.
    var lowestKey: [UInt8] {
        switch self {
        case .single(let key), .from(let key), .interval(let key, _): key
        }
    }

    /// For a key at or after ``lowestKey``: whether it is still in the range (scans stop at the
    /// first that is not).
    func admits(_ key: [UInt8]) -> Bool {
        switch self {
        case .single(let only): compareKeys(key, only) == 0
        case .from: true
        case .interval(_, let end): compareKeys(key, end) < 0
        }
    }
}
