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
}
