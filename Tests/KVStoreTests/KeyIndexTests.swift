import Foundation
import Testing

@testable import KVStore

/// The in-memory key index (``KeyIndex``): its ordered map against a plain model, and the store's
/// use of it (rollbacks, rebuilds, and a reader whose view is older than the index).
@Suite struct KeyIndexTests {
    static func version(_ revision: Int64, sub: Int64 = 0, tombstone: Bool = false) -> IndexedVersion {
        IndexedVersion(revision: revision, sub: sub, rowID: revision * 1_000 + sub, tombstone: tombstone,
                       createRevision: revision, version: 1, lease: 0)
    }

    static func randomKey(_ random: inout SeededGenerator) -> [UInt8] {
        // Short keys over a small alphabet with 0x00 and 0xFF: many shared prefixes and equal bytes.
        let alphabet: [UInt8] = [0x00, 0x01, 0x61, 0x62, 0x7F, 0xFE, 0xFF]
        return (0..<Int.random(in: 0...4, using: &random)).map { _ in alphabet.randomElement(using: &random)! }
    }

    @Test func keyOrderIsUnsignedBytesWithAPrefixFirst() {
        var random = SeededGenerator(seed: 7)
        for _ in 0..<5_000 {
            let (first, second) = (Self.randomKey(&random), Self.randomKey(&random))
            let expected = first == second ? 0 : (first.lexicographicallyPrecedes(second) ? -1 : 1)
            #expect(compareKeys(first, second) == expected, "\(first) vs \(second)")
        }
    }

    /// Thousands of keys (chunks split and vanish), appends, take-backs and removals of the
    /// oldest, with scans of random ranges in small batches: always what the model says.
    @Test(arguments: [1, 2] as [UInt64])
    func theIndexAgreesWithASortedModel(seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        let index = KeyIndex()
        var model: [[UInt8]: [IndexedVersion]] = [:]
        var revision: Int64 = 1
        func key() -> [UInt8] { Array("k\(Int.random(in: 0..<6_000, using: &random))".utf8) }
        for step in 0..<40_000 {
            let roll = Int.random(in: 0..<100, using: &random)
            let chosen = key()
            if roll < 70 {
                revision += 1
                let added = Self.version(revision, tombstone: Int.random(in: 0..<5, using: &random) == 0)
                index.append(added, to: chosen)
                model[chosen, default: []].append(added)
            } else if roll < 85 {
                index.removeNewest(of: chosen)
                model[chosen]?.removeLast()
            } else {
                let count = Int.random(in: 1...3, using: &random)
                index.removeOldest(count, of: chosen)
                if let versions = model[chosen] { model[chosen] = Array(versions.dropFirst(count)) }
            }
            if model[chosen]?.isEmpty == true { model[chosen] = nil }
            guard step % 4_000 == 3_999 else { continue }

            let sortedKeys = model.keys.sorted { $0.lexicographicallyPrecedes($1) }
            var seen: [[UInt8]] = []
            var after: [UInt8]?
            repeat {
                let batch = index.keys(after: after, keysMax: 97)
                seen += batch.entries.map(\.key)
                for entry in batch.entries { #expect(entry.versions == model[entry.key]) }
                after = batch.resume
            } while after != nil
            #expect(seen == sortedKeys)
            #expect(index.counts.keys == model.count)
            #expect(index.counts.versions == model.values.map(\.count).reduce(0, +))

            for _ in 0..<20 {
                let (low, high) = (key(), key())
                let at = Int64.random(in: 1...revision, using: &random)
                let range: KeyRange = Bool.random(using: &random) ? .interval(low, high) : .from(low)
                var found: [String] = []
                var resume: [UInt8]?
                repeat {
                    let batch = try index.live(in: range, at: at, after: resume, entriesMax: 7, examineMax: 13)
                    found += batch.entries.map { "\(text($0.key))@\($0.version.revision)" }
                    resume = batch.resume
                } while resume != nil
                let expected = sortedKeys.filter { range.contains($0) }.compactMap { key -> String? in
                    guard let live = model[key]!.last(where: { $0.revision <= at }), !live.tombstone else { return nil }
                    return "\(text(key))@\(live.revision)"
                }
                #expect(found == expected, "\(range) at \(at)")
            }
            let probe = key()
            #expect(try index.newest(of: probe, atOrBelow: revision) == model[probe]?.last)
        }
    }

    @Test func readsBelowTheFloorAreRefused() throws {
        let index = KeyIndex()
        index.append(Self.version(2), to: bytes("a"))
        index.append(Self.version(5), to: bytes("a"))
        index.raiseFloor(to: 4)
        index.raiseFloor(to: 3)
        #expect(index.floorRevision == 4)
        #expect(throws: KVError.compacted) { _ = try index.newest(of: bytes("a"), atOrBelow: 3) }
        #expect(throws: KVError.compacted) { _ = try index.live(in: .from([0]), at: 3, after: nil, entriesMax: 10) }
        #expect(try index.newest(of: bytes("a"), atOrBelow: 4)?.revision == 2)
    }

    /// A txn refused half-way and a batch that fails in the middle take their versions back
    /// out of the index, as SQLite takes their rows back.
    @Test func rolledBackWritesLeaveNoVersionInTheIndex() throws {
        let store = try TestStore()
        try store.put("a", "1")
        let before = store.store.index.counts
        let txn = TxnRequest(compare: [], success: [
            .put(PutRequest(key: bytes("b"), value: bytes("2"))),
            .put(PutRequest(key: bytes("a"), value: bytes("3"))),
            .put(PutRequest(key: bytes("c"), value: bytes("4"), lease: 12_345)),
        ], failure: [])
        #expect(try store.apply(.txn(txn)) == .error(.leaseNotFound))
        #expect(store.store.index.counts == before)
        try CompactionStepTests.expectIndexMatchesRows(store.store)

        let next = store.store.appliedIndex + 1
        #expect(throws: KVStoreError.self) {
            _ = try store.store.apply([
                (index: next, request: .put(PutRequest(key: bytes("d"), value: bytes("5")))),
                (index: next, request: .put(PutRequest(key: bytes("e"), value: bytes("6")))),
            ])
        }
        #expect(store.store.index.counts == before)
        try CompactionStepTests.expectIndexMatchesRows(store.store)
        store.index = store.store.appliedIndex
        try store.put("d", "7")
        #expect(try store.get("d")?.value == bytes("7"))
        #expect(try store.get("d")?.version == 1)
    }

    /// The history reader reads a committed view that may be older than the index. When the
    /// writer's compaction removes versions meanwhile, a read of the old view below what was
    /// removed is refused, never answered from a half-removed history; previous versions of
    /// watch events that are gone are left out.
    @Test func aReaderOfAnOlderViewIsRefusedBelowWhatCompactionRemoved() throws {
        let store = try TestStore()
        for number in 1...5 { try store.put("k", "v\(number)") }  // revisions 2...6
        try store.put("other", "x")                               // 7
        let reader = try KVStore.openReader(path: store.path, sharing: store.store)
        defer { reader.close() }
        try reader.readConsistently { view in
            #expect(try view.range(RangeRequest(key: bytes("k"), revision: 3)).get().kvs.first?.value == bytes("v2"))
            // The writer compacts and removes the rows while this view is open.
            try store.apply(.compaction(CompactionRequest(revision: 5)))
            try store.store.finishCompaction()
            #expect(view.compactRevision == 0)
            #expect(try view.range(RangeRequest(key: bytes("k"), revision: 3)) == .failure(.compacted))
            #expect(try view.range(RangeRequest(key: bytes("k"), revision: 5)).get().kvs.first?.value == bytes("v4"))
            #expect(try view.range(RangeRequest(key: bytes("k"))).get().kvs.first?.value == bytes("v5"))
            // Events from revision 2 are still in this view's rows; their previous versions
            // below the removed ones are not in the index any more.
            let events = try view.events(from: 2, key: bytes("k"), rangeEnd: []).get()
            #expect(events.map(\.kv.modRevision) == [2, 3, 4, 5, 6])
            #expect(events.map { $0.prevKv.map { text($0.value) } } == [nil, nil, nil, nil, "v4"])
        }
        try reader.readConsistently { (view) throws in
            #expect(try view.range(RangeRequest(key: bytes("k"), revision: 3)) == .failure(.compacted))
            #expect(try view.events(from: 2, key: bytes("k"), rangeEnd: []) == .failure(.compacted))
        }
    }

    /// A reopened store rebuilds the same index from its rows, history, tombstones and all.
    @Test func aReopenedStoreRebuildsTheSameIndex() throws {
        let store = try TestStore()
        for number in 0..<3_000 { try store.put("k\(number % 1_100)", "v\(number)") }
        try store.delete("k1", "k2")
        try store.apply(.compaction(CompactionRequest(revision: 1_500)))
        try store.store.compactStep(rowsMax: 200)
        let view = try CompactionStepTests.observable(store.store, upTo: store.store.currentRevision)
        let counts = store.store.index.counts
        try store.reopen()
        #expect(store.store.index.counts == counts)
        try CompactionStepTests.expectIndexMatchesRows(store.store)
        #expect(try CompactionStepTests.observable(store.store, upTo: store.store.currentRevision) == view)
    }
}
