import Foundation
import KVStore
import Testing

@testable import EtcdServer

/// The broker between applied events and watch streams, with a real store underneath.
struct WatchBrokerTests {
    /// A store in a temporary directory with `w/a` written at revisions 2 and 3.
    static func store() throws -> (KVStore, URL) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("watchbroker-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let store = try KVStore.open(path: directory.appendingPathComponent("kv.sqlite").path)
        _ = try store.apply([(index: 1, request: .put(PutRequest(key: Array("w/a".utf8), value: [1])))])
        _ = try store.apply([(index: 2, request: .put(PutRequest(key: Array("w/a".utf8), value: [2])))])
        return (store, directory)
    }

    @Test("Nothing of a new watcher (history, or a cancellation for compacted history) is drained before its created answer")
    func createdComesFirst() throws {
        let (store, directory) = try Self.store()
        defer {
            store.close()
            try? FileManager.default.removeItem(at: directory)
        }
        let broker = WatchBroker()
        let (stream, _) = broker.openStream()
        // History from revision 2: buffered at registration, held back until announced.
        let replaying = try #require(try broker.register(WatchHub.Registration(key: Array("w/".utf8), rangeEnd: Array("w0".utf8), startRevision: 2), stream: stream, store: store))
        #expect(broker.drain(stream: stream).events.isEmpty)
        #expect(broker.progress(stream: stream, ids: nil).allReady == false)
        broker.announced(replaying, stream: stream)
        let replayed = broker.drain(stream: stream)
        #expect(replayed.events.map(\.id) == [replaying])
        #expect(replayed.events.first?.events.map(\.kv.modRevision) == [2, 3])

        // A start below the compaction is cancelled at once, but the cancellation waits for the
        // created answer too (a client drops answers for a watch ID it has not seen created).
        _ = try store.apply([(index: 3, request: .compaction(CompactionRequest(revision: 3)))])
        let compacted = try #require(try broker.register(WatchHub.Registration(key: Array("w/".utf8), startRevision: 2), stream: stream, store: store))
        #expect(broker.drain(stream: stream).cancelled.isEmpty)
        broker.announced(compacted, stream: stream)
        let cancelled = broker.drain(stream: stream).cancelled
        #expect(cancelled.map(\.id) == [compacted])
        if case .compacted(let revision)? = cancelled.first?.reason {
            #expect(revision == 3)
        } else {
            Issue.record("expected a compaction cancel, got \(cancelled)")
        }
        broker.closeStream(stream)
    }
}
