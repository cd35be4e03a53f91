import Testing

@testable import KVStore

@Suite struct WatchHubTests {
    @Test func liveCatchingUpFilteredSlowAndCompactedWatchers() throws {
        let store = try TestStore()
        var hub = WatchHub(bufferedEventsMax: 4)
        try store.put("a", "1")  // 2
        try store.put("b", "1")  // 3

        let liveRegistered = hub.register(.init(key: [0], rangeEnd: [0]), currentRevision: 3, compactRevision: 0)
        let live = try #require(liveRegistered)
        let historyRegistered = hub.register(.init(key: bytes("a"), startRevision: 2, prevKv: true),
                                                currentRevision: 3, compactRevision: 0)
        let history = try #require(historyRegistered)
        let noDeletesRegistered = hub.register(.init(key: bytes("b"), noDelete: true), currentRevision: 3,
                                                  compactRevision: 0)
        let noDeletes = try #require(noDeletesRegistered)
        #expect(hub.isCatchingUp(history) && !hub.isCatchingUp(live))
        try hub.catchUp(from: store.store)
        #expect(hub.take(history).map { $0.kv.modRevision } == [2])
        #expect(!hub.isCatchingUp(history))

        try store.put("a", "2")  // 4
        hub.publish(store.store.lastAppliedEvents, revision: store.store.currentRevision)
        try store.delete("b")  // 5
        hub.publish(store.store.lastAppliedEvents, revision: store.store.currentRevision)
        #expect(hub.take(live).map(\.type) == [.put, .delete])
        #expect(hub.take(live).isEmpty, "taking empties the buffer")
        let fromHistory = hub.take(history)
        #expect(fromHistory.map { $0.kv.modRevision } == [4] && fromHistory[0].prevKv?.value == bytes("1"))
        #expect(hub.take(noDeletes).isEmpty)

        // Five events into a four-event buffer: the live watcher is cancelled, resumable at 6.
        for value in 0..<5 {
            try store.put("a", "v\(value)")
            hub.publish(store.store.lastAppliedEvents, revision: store.store.currentRevision)
        }
        let cancelled = hub.takeCancellations()
        #expect(cancelled.map(\.id).sorted() == [live, history].sorted())
        #expect(cancelled.allSatisfy { $0.reason == .slow(resumeRevision: 6) })
        #expect(hub.watcherCount == 1)

        // Compacted history cancels at once with the compact revision.
        try store.apply(.compaction(CompactionRequest(revision: 8)))
        let lateRegistered = hub.register(.init(key: bytes("a"), startRevision: 3), currentRevision: 10,
                                             compactRevision: 8)
        let late = try #require(lateRegistered)
        #expect(hub.takeCancellations().map(\.id) == [late])
    }

    /// Publishes what the store's last apply produced.
    static func publish(_ hub: inout WatchHub, _ store: TestStore) {
        hub.publish(store.store.lastAppliedEvents, revision: store.store.currentRevision)
    }

    @Test("A watcher past its byte bound is cancelled as slow, resumable at its first undelivered revision; one event larger than the bound is still delivered")
    func perWatcherByteBound() throws {
        let store = try TestStore()
        var hub = WatchHub(bufferedEventsMax: 100, bufferedBytesMax: 1_000, totalBufferedBytesMax: 10_000)
        let bigRegistered = hub.register(.init(key: bytes("big")), currentRevision: 1, compactRevision: 0)
        let big = try #require(bigRegistered)
        let smallRegistered = hub.register(.init(key: bytes("small")), currentRevision: 1, compactRevision: 0)
        let small = try #require(smallRegistered)
        try store.put("big", String(repeating: "x", count: 1_500))  // 2: alone over the bound
        Self.publish(&hub, store)
        #expect(hub.takeCancellations().isEmpty, "a single event is always delivered")
        #expect(hub.take(big).map(\.kv.modRevision) == [2])
        try store.put("big", String(repeating: "y", count: 600))  // 3
        Self.publish(&hub, store)
        try store.put("small", "s")  // 4
        Self.publish(&hub, store)
        try store.put("big", String(repeating: "z", count: 600))  // 5: 1,200+ bytes buffered
        Self.publish(&hub, store)
        #expect(hub.takeCancellations().map(\.reason) == [.slow(resumeRevision: 3)])
        #expect(hub.take(small).map(\.kv.modRevision) == [4], "the other watcher is untouched")
        #expect(hub.totalBufferedBytes == 0)
    }

    @Test("Past the hub's total byte bound the watcher holding the most is cancelled until the total fits")
    func totalByteBound() throws {
        let store = try TestStore()
        var hub = WatchHub(bufferedEventsMax: 100, bufferedBytesMax: 1_000, totalBufferedBytesMax: 1_000)
        let ids = (0..<3).map { _ in hub.register(.init(key: bytes("k"), rangeEnd: bytes("l")), currentRevision: 1, compactRevision: 0)! }
        let quietRegistered = hub.register(.init(key: bytes("q")), currentRevision: 1, compactRevision: 0)
        let quiet = try #require(quietRegistered)
        _ = hub.take(ids[0])
        try store.put("k1", String(repeating: "a", count: 200))  // 2: ~250 bytes to each of three
        Self.publish(&hub, store)
        #expect(hub.takeCancellations().isEmpty)
        _ = hub.take(ids[0])
        try store.put("k2", String(repeating: "b", count: 300))  // 3: ids 1 and 2 hold ~600, id 0 ~350
        Self.publish(&hub, store)
        let cancelled = hub.takeCancellations()
        #expect(cancelled.count == 1 && [ids[1], ids[2]].contains(cancelled[0].id))
        #expect(cancelled.first?.reason == .slow(resumeRevision: 2))
        #expect(hub.totalBufferedBytes <= 1_000)
        #expect(hub.watcherCount == 3 && !hub.isCatchingUp(quiet))
    }

    @Test("Fan-out by key and by range delivers exactly what a scan of every watcher would")
    func indexedFanOut() throws {
        let store = try TestStore()
        var hub = WatchHub(bufferedEventsMax: 10_000)
        let registrations: [WatchHub.Registration] = [
            .init(key: bytes("a")), .init(key: bytes("a")), .init(key: bytes("b/1")),
            .init(key: bytes("b/"), rangeEnd: bytes("b0")), .init(key: bytes("b/"), rangeEnd: bytes("b0"), noDelete: true),
            .init(key: bytes("b/5"), rangeEnd: [0]), .init(key: [0], rangeEnd: [0], noPut: true), .init(key: bytes("zz")),
        ]
        let ids = registrations.map { hub.register($0, currentRevision: 1, compactRevision: 0)! }
        var expected: [Int64: [Int64]] = [:]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<300 {
            let key = ["a", "b/1", "b/5", "b/9", "c", "b0", "zz"].randomElement(using: &generator)!
            if Bool.random(using: &generator) { try store.put(key, "v") } else { _ = try store.delete(key) }
            for event in store.store.lastAppliedEvents {
                for (id, registration) in zip(ids, registrations) where registration.admits(event) {
                    expected[id, default: []].append(event.kv.modRevision)
                }
            }
            Self.publish(&hub, store)
        }
        for id in ids {
            #expect(hub.take(id).map(\.kv.modRevision) == expected[id, default: []], "watcher \(id)")
        }
        #expect(hub.takeCancellations().isEmpty)
    }

    @Test("History reads stop at their event and byte bounds on a revision boundary and say whether they reached the store's revision")
    func boundedHistory() throws {
        let store = try TestStore()
        for value in 0..<10 { try store.put("k\(value)", String(repeating: "v", count: 100)) }  // 2...11
        let all = try store.store.history(from: 2, key: [0], rangeEnd: [0], eventsMax: 100).get()
        #expect(all.complete && all.events.count == 10)
        let counted = try store.store.history(from: 2, key: [0], rangeEnd: [0], eventsMax: 4).get()
        #expect(!counted.complete && counted.events.map(\.kv.modRevision) == [2, 3, 4, 5])
        let weighed = try store.store.history(from: 2, key: [0], rangeEnd: [0], eventsMax: 100, bytesMax: 300).get()
        #expect(!weighed.complete && weighed.events.count == 2, "each event is 150 bytes: two reach 300")
        let exact = try store.store.history(from: 2, key: [0], rangeEnd: [0], eventsMax: 10).get()
        #expect(exact.complete, "exactly the events left is complete")
    }
}
