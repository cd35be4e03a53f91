import Foundation
import Testing

@testable import KVStore

/// Compaction removes rows in steps after the apply (``KVStore/compactStep(rowsMax:)``):
/// replicas that step at different paces, or not at all, must answer every read alike and
/// end with the rows that one pass over the whole history (the old in-apply statement) leaves.
@Suite struct CompactionStepTests {
    /// The statement compaction ran inside the apply before it went in steps: the reference.
    static func compactInOnePass(_ store: KVStore, revision: Int64) throws {
        let statement = try store.database.statement("""
            DELETE FROM kv WHERE revision <= ?1 AND (
                tombstone = 1 OR EXISTS (
                    SELECT 1 FROM kv AS newer
                    WHERE newer.key = kv.key AND newer.revision <= ?1
                      AND (newer.revision > kv.revision OR (newer.revision = kv.revision AND newer.sub > kv.sub))
                )
            )
            """)
        try statement.bind(1, revision)
        try statement.run()
    }

    /// Every stored row's (key, revision, sub), in order.
    static func rows(_ store: KVStore) throws -> [String] {
        let statement = try store.database.statement("SELECT key, revision, sub FROM kv ORDER BY key, revision, sub")
        defer { statement.reset() }
        var rows: [String] = []
        while try statement.step() { rows.append("\(text(statement.bytes(0)))@\(statement.int64(1)).\(statement.int64(2))") }
        return rows
    }

    /// The key index as it is, and as a rebuild from the rows would make it: they must agree after
    /// every apply, rollback and compaction step.
    static func expectIndexMatchesRows(_ store: KVStore, _ comment: Comment? = nil) throws {
        func described(_ entries: [IndexedKey]) -> [String] {
            entries.map { entry in
                text(entry.key) + ":" + entry.versions.map { "\($0.revision).\($0.sub)#\($0.rowID)\($0.tombstone ? "x" : "")" }.joined(separator: ",")
            }
        }
        let rebuilt = try KVStore.indexedKeys(of: store.database)
        let held = store.index.keys(after: nil, keysMax: .max).entries
        #expect(described(held) == described(rebuilt.keys.chunks.flatMap { $0 }), comment)
        #expect(store.index.counts.versions == rebuilt.versionCount, comment)
        #expect(store.index.counts.keys == held.count, comment)
    }

    /// What a client can read of `store`: the digest, full ranges at each readable revision up to
    /// `upTo`, and the watch history from the compact revision.
    static func observable(_ store: KVStore, upTo: Int64) throws -> [String] {
        var seen = ["digest \(try store.stateDigest())", "compact \(store.compactRevision)"]
        let from = max(store.compactRevision, 1)
        for revision in stride(from: from, through: upTo, by: Int64.Stride(max(1, (upTo - from) / 7))) {
            let response = try store.range(RangeRequest(key: [0], rangeEnd: [0], revision: revision)).get()
            seen.append("r\(revision): " + response.kvs.map { "\(text($0.key))=\(text($0.value))@\($0.modRevision)v\($0.version)" }.joined(separator: ","))
            let count = try store.range(RangeRequest(key: [0], rangeEnd: [0], revision: revision, countOnly: true)).get()
            seen.append("n\(revision): \(count.count)")
        }
        let events = try store.events(from: from, key: [0], rangeEnd: [0], eventsMax: 1_000_000).get()
        seen.append("events: " + events.map { "\($0.type)\(text($0.kv.key))@\($0.kv.modRevision)" }.joined(separator: ","))
        return seen
    }

    @Test(arguments: [1, 2, 3] as [UInt64])
    func replicasSteppingAtAnyPaceAgreeAndEndWithTheOnePassRows(seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        // eager: every step at once; lazy: none until the end; trickle: a few rows per request;
        // reference: the one-pass statement.
        let (eager, lazy, trickle, reference) = (try TestStore(), try TestStore(), try TestStore(), try TestStore())
        let all = [eager, lazy, trickle, reference]
        var compactions = 0
        for number in 0..<700 {
            let roll = Int.random(in: 0..<100, using: &random)
            let request: KVRequest
            if roll < 60 {
                request = .put(PutRequest(key: bytes("k\(Int.random(in: 0..<25, using: &random))"), value: bytes("v\(number)")))
            } else if roll < 80 {
                request = .deleteRange(DeleteRangeRequest(key: bytes("k\(Int.random(in: 0..<25, using: &random))")))
            } else if roll < 86 {
                // A deletion of many keys in one revision (many sub-revisions).
                request = .deleteRange(DeleteRangeRequest(key: bytes("k1"), rangeEnd: bytes("k3")))
            } else if roll < 94 || eager.store.currentRevision <= eager.store.compactRevision + 1 {
                request = .put(PutRequest(key: bytes("p\(number % 40)"), value: bytes("w\(number)")))
            } else {
                let revision = Int64.random(in: (eager.store.compactRevision + 1)...eager.store.currentRevision, using: &random)
                request = .compaction(CompactionRequest(revision: revision))
                compactions += 1
            }
            let answers = try all.map { try $0.apply(request) }
            #expect(Set(answers).count == 1, "replicas answered \(request) differently: \(answers)")
            if case .compaction(let compaction) = request {
                try eager.store.finishCompaction()
                try Self.compactInOnePass(reference.store, revision: compaction.revision)
                // The statement bypasses the key index: the reference rebuilds it from its rows.
                try reference.reopen()
            }
            try trickle.store.compactStep(rowsMax: Int.random(in: 1...7, using: &random))
            if number % 50 == 49 {
                let current = eager.store.currentRevision
                let views = try all.map { try Self.observable($0.store, upTo: current) }
                #expect(views.allSatisfy { $0 == views[0] }, "seed \(seed), request \(number): replicas read differently")
                for store in all { try Self.expectIndexMatchesRows(store.store, "seed \(seed), request \(number)") }
            }
        }
        #expect(compactions > 5)
        #expect(lazy.store.physicalCompactionPending)
        try lazy.store.finishCompaction()
        try trickle.store.finishCompaction()
        let expected = try Self.rows(reference.store)
        #expect(try Self.rows(eager.store) == expected)
        #expect(try Self.rows(lazy.store) == expected)
        #expect(try Self.rows(trickle.store) == expected)
        for store in all { try Self.expectIndexMatchesRows(store.store, "seed \(seed), at the end") }
        #expect(lazy.store.physicalCompactRevision == lazy.store.compactRevision)
    }

    @Test func aVersionKeptByOneCompactionIsRemovedByALaterOneOnceOverwritten() throws {
        let store = try TestStore()
        try store.put("a", "1")  // 2
        try store.put("b", "1")  // 3
        try store.apply(.compaction(CompactionRequest(revision: 3)))
        try store.store.finishCompaction()
        #expect(try Self.rows(store.store) == ["a@2.0", "b@3.0"])
        try store.put("a", "2")  // 4
        try store.put("c", "1")  // 5
        try store.apply(.compaction(CompactionRequest(revision: 5)))
        // a@2 was the newest at 3; by 5 it is overwritten, though no step window holds it.
        try store.store.finishCompaction()
        #expect(try Self.rows(store.store) == ["a@4.0", "b@3.0", "c@5.0"])
    }

    @Test func oneRevisionWithMoreRowsThanAWindowGoesInSeveralSteps() throws {
        let store = try TestStore()
        for number in 0..<1_200 { try store.put(String(format: "key%05d", number), "v") }
        try store.delete("key", "kez")  // one revision, 1,200 deletions
        let deletion = store.store.currentRevision
        try store.put("after", "1")
        try store.apply(.compaction(CompactionRequest(revision: deletion)))
        let before = try Self.observable(store.store, upTo: store.store.currentRevision)
        var steps = 0
        while try store.store.compactStep(rowsMax: 500) {
            steps += 1
            #expect(try Self.observable(store.store, upTo: store.store.currentRevision) == before)
        }
        // 1,200 puts and 1,200 deletions below or at the compact revision: five windows of 500.
        #expect(steps == 4)
        #expect(try Self.rows(store.store) == ["after@\(deletion + 1).0"])
    }

    @Test func whatIsLeftToRemoveSurvivesAReopenAndTravelsInASnapshot() throws {
        let store = try TestStore()
        for number in 0..<30 { try store.put("k\(number % 3)", "v\(number)") }
        try store.apply(.compaction(CompactionRequest(revision: 25)))
        try store.store.compactStep(rowsMax: 4)
        let progress = store.store.physicalCompactRevision
        #expect(store.store.physicalCompactionPending && progress < 25)
        try store.reopen()
        #expect(store.store.physicalCompactionPending)
        #expect(store.store.physicalCompactRevision == progress)

        let image = try store.store.snapshotData()
        let copy = try TestStore()
        try copy.store.restore(from: image)
        #expect(copy.store.physicalCompactionPending)
        try copy.store.finishCompaction()
        try store.store.finishCompaction()
        #expect(try Self.rows(copy.store) == Self.rows(store.store))
        #expect(try copy.store.stateDigest() == store.store.stateDigest())
        #expect(try Self.rows(store.store).count == 3 + 6)  // the newest at 25 of each key, and 26...31
    }
}
