import Testing

@testable import KVStore

/// A seeded random workload touching every request kind, including refused ones.
struct Workload {
    var generator: SeededGenerator
    var leases: [Int64] = []
    var revision: Int64 = 1

    init(seed: UInt64) { generator = SeededGenerator(seed: seed) }

    mutating func key() -> [UInt8] { bytes("k\(Int.random(in: 0..<24, using: &generator))") }

    mutating func value() -> [UInt8] {
        (0..<Int.random(in: 0..<12, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    mutating func lease() -> Int64 {
        guard !leases.isEmpty, Bool.random(using: &generator) else { return 0 }
        return leases.randomElement(using: &generator)!
    }

    mutating func next() -> KVRequest {
        switch Int.random(in: 0..<100, using: &generator) {
        case 0..<40:
            return .put(PutRequest(key: key(), value: value(), lease: lease(), prevKv: Bool.random(using: &generator)))
        case 40..<50:
            return .deleteRange(DeleteRangeRequest(key: key(), prevKv: true))
        case 50..<54:
            let start = key()
            return .deleteRange(DeleteRangeRequest(key: start, rangeEnd: start + [UInt8(0x35)]))
        case 54..<72:
            let target: Compare.Target = switch Int.random(in: 0..<5, using: &generator) {
            case 0: .version(Int64.random(in: 0..<4, using: &generator))
            case 1: .createRevision(Int64.random(in: 0..<revision + 2, using: &generator))
            case 2: .modRevision(Int64.random(in: 0..<revision + 2, using: &generator))
            case 3: .value(value())
            default: .lease(lease())
            }
            let result = Compare.Result.allCases.randomElement(using: &generator)!
            return .txn(TxnRequest(
                compare: [Compare(key: key(), target: target, result: result)],
                success: [.put(PutRequest(key: bytes("a"), value: value(), lease: lease())), .range(RangeRequest(key: key()))],
                failure: [.deleteRange(DeleteRangeRequest(key: key())), .put(PutRequest(key: bytes("b"), value: value()))]))
        case 72..<80:
            let id = Bool.random(using: &generator) ? Int64.random(in: 1..<50, using: &generator) : 0
            return .leaseGrant(LeaseGrantRequest(ttl: Int64.random(in: 1..<100, using: &generator), id: id))
        case 80..<84:
            return .leaseRevoke(LeaseRevokeRequest(id: lease()))
        case 84..<87:
            return .leaseExpire(LeaseExpireRequest(ids: [lease(), lease()]))
        case 87..<89:
            return .leaseCheckpoint(LeaseCheckpointRequest(checkpoints: [LeaseCheckpoint(id: lease(), remainingTTL: 3)]))
        case 89..<92:
            return .compaction(CompactionRequest(revision: revision - Int64.random(in: 0..<60, using: &generator)))
        case 92..<96:
            return .put(PutRequest(key: key(), ignoreValue: true))
        default:
            return .range(RangeRequest(key: key(), rangeEnd: [0], limit: 3))
        }
    }

    /// Learns lease IDs and the revision from what the first store answered.
    mutating func observe(_ response: KVResponse) {
        if case .leaseGrant(let grant) = response { leases.append(grant.id) }
        if response.headerRevision > 0 { revision = max(revision, response.headerRevision) }
    }
}

@Suite struct DeterminismTests {
    @Test func twoReplicasAgreeAtEveryHundredthRevision() throws {
        let first = try TestStore()
        let second = try TestStore()
        let oneByOne = try TestStore()
        var workload = Workload(seed: 2024)
        var batches = SeededGenerator(seed: 99)
        var applied = 0
        var compared = 0
        var index: UInt64 = 0
        while applied < 2_000 {
            let size = min(Int.random(in: 1...16, using: &batches), 2_000 - applied)
            var batch: [(index: UInt64, request: KVRequest)] = []
            var firstResponses: [KVResponse] = []
            for _ in 0..<size {
                index += 1
                let request = workload.next()
                batch.append((index: index, request: request))
                // The workload needs each answer (lease IDs) before making the next request.
                let response = try oneByOne.store.apply([(index: index, request: request)])[0]
                workload.observe(response)
                firstResponses.append(response)
            }
            let before = first.store.currentRevision
            let responses = try first.store.apply(batch)
            #expect(try second.store.apply(batch) == responses)
            #expect(responses == firstResponses, "batching does not change answers")
            #expect(first.store.lastAppliedEvents == second.store.lastAppliedEvents)
            applied += size
            let after = first.store.currentRevision
            for revision in stride(from: (before / 100 + 1) * 100, through: after, by: 100)
            where revision >= first.store.compactRevision {
                let hash = try first.store.hashKV(revision: revision).get()
                #expect(try second.store.hashKV(revision: revision).get() == hash, "revision \(revision)")
                compared += 1
            }
        }
        #expect(first.store.currentRevision > 500, "the workload writes")
        #expect(compared >= 5)
        #expect(first.store.compactRevision > 1)
        #expect(try first.store.stateDigest() == second.store.stateDigest())
        #expect(try first.store.stateDigest() == oneByOne.store.stateDigest())
        #expect(first.store.appliedIndex == 2_000 && oneByOne.store.appliedIndex == 2_000)
    }

    @Test func differentHistoriesHashDifferently() throws {
        let first = try TestStore()
        let second = try TestStore()
        try first.put("a", "1")
        try second.put("a", "2")
        #expect(try first.store.hashKV(revision: 0).get().hash != second.store.hashKV(revision: 0).get().hash)
    }
}

@Suite struct SnapshotTests {
    @Test func restoreIntoAnotherStoreGivesTheSameState() throws {
        let source = try TestStore()
        var workload = Workload(seed: 5)
        for _ in 0..<300 { workload.observe(try source.apply(workload.next())) }
        let snapshot = try source.store.snapshotData()

        let target = try TestStore()
        try target.put("unrelated", "data")
        try target.store.restore(from: snapshot)
        #expect(target.store.appliedIndex == source.store.appliedIndex)
        #expect(target.store.currentRevision == source.store.currentRevision)
        #expect(target.store.compactRevision == source.store.compactRevision)
        #expect(try target.store.hashKV(revision: 0).get() == source.store.hashKV(revision: 0).get())
        #expect(try target.store.stateDigest() == source.store.stateDigest())
        let all = RangeRequest(key: [0], rangeEnd: [0])
        #expect(try target.range(all) == source.range(all))
        #expect(try target.store.leases() == source.store.leases())

        // Both continue identically, and the restored one survives a reopen.
        target.index = source.index
        for _ in 0..<50 {
            let request = workload.next()
            let response = try source.apply(request)
            workload.observe(response)
            #expect(try target.apply(request) == response)
        }
        try target.reopen()
        #expect(try target.store.stateDigest() == source.store.stateDigest())
    }

    @Test func aBadSnapshotChangesNothing() throws {
        let store = try TestStore()
        try store.put("a", "1")
        let digest = try store.store.stateDigest()
        #expect(throws: KVStoreError.self) { try store.store.restore(from: [1, 2, 3]) }
        var corrupt = try store.store.snapshotData()
        corrupt.replaceSubrange(100..<corrupt.count, with: [UInt8](repeating: 0xAB, count: corrupt.count - 100))
        #expect(throws: (any Error).self) { try store.store.restore(from: corrupt) }
        #expect(try store.store.stateDigest() == digest)
        #expect(try store.get("a")?.value == bytes("1"))
    }
}

@Suite struct WatchHistoryTests {
    @Test func replayReturnsExactlyTheAppliedEventsInOrder() throws {
        let store = try TestStore()
        var workload = Workload(seed: 11)
        var produced: [WatchEvent] = []
        for _ in 0..<400 {
            let request = workload.next()
            if case .compaction = request { continue }  // keep all history for this test
            workload.observe(try store.apply(request))
            produced += store.store.lastAppliedEvents
        }
        #expect(produced.count > 100)
        let replayed = try store.store.events(from: 1, key: [0], rangeEnd: [0], eventsMax: 1_000_000).get()
        #expect(replayed == produced)

        // A range filter and a start revision.
        let start = produced[produced.count / 2].kv.modRevision
        let filtered = try store.store.events(from: start, key: bytes("k1"), rangeEnd: bytes("k2"), eventsMax: 1_000_000).get()
        let expected = produced.filter {
            $0.kv.modRevision >= start && KeyRange(key: bytes("k1"), rangeEnd: bytes("k2")).contains($0.kv.key)
        }
        #expect(filtered == expected)
        #expect(!filtered.isEmpty)

        // Chunks never split a revision, and resuming after the last one continues seamlessly.
        var resumed: [WatchEvent] = []
        var from: Int64 = 1
        while true {
            let chunk = try store.store.events(from: from, key: [0], rangeEnd: [0], eventsMax: 7).get()
            guard let last = chunk.last else { break }
            resumed += chunk
            from = last.kv.modRevision + 1
        }
        #expect(resumed == produced)
    }

    @Test func eventsCarryPrevKv() throws {
        let store = try TestStore()
        try store.put("a", "1")
        try store.put("a", "2")
        try store.delete("a")
        let events = try store.store.events(from: 2, key: bytes("a"), rangeEnd: []).get()
        #expect(events.map(\.type) == [.put, .put, .delete])
        #expect(events.map { $0.prevKv?.value } == [nil, bytes("1"), bytes("2")])
        #expect(events[2].kv == KeyValue(key: bytes("a"), createRevision: 0, modRevision: 4, version: 0, value: [], lease: 0))
        #expect(try store.store.events(from: 0, key: [0], rangeEnd: [0]).get().isEmpty, "0 means from now")
        #expect(try store.store.events(from: 5, key: [0], rangeEnd: [0]).get().isEmpty)
    }
}
