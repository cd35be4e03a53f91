import Foundation
import KVStore
import RaftRuntime
import Testing

@testable import EtcdServer

/// The broker between applied events and watch streams, with a real store underneath.
struct WatchBrokerTests {
    /// A state machine in a temporary directory whose applied events go to `broker`, with `w/a`
    /// written at revisions 2 and 3.
    final class Fixture: @unchecked Sendable {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("watchbroker-\(UUID().uuidString)")
        let broker: WatchBroker
        let machine: KVStateMachine
        private var index: UInt64 = 0

        init(broker: WatchBroker = WatchBroker()) throws {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            self.broker = broker
            machine = try KVStateMachine(path: directory.appendingPathComponent("kv.sqlite").path) { events, revision in
                broker.publish(events, revision: revision)
            }
            try put("w/a", [1])
            try put("w/a", [2])
        }

        deinit { try? FileManager.default.removeItem(at: directory) }

        func apply(_ request: KVRequest) throws {
            index += 1
            _ = try machine.apply([AppliedCommand(index: index, term: 1, data: request.encoded())])
        }

        func put(_ key: String, _ value: [UInt8]) throws {
            try apply(.put(PutRequest(key: Array(key.utf8), value: value)))
        }

        func register(_ registration: WatchHub.Registration, stream: Int) -> Result<Int64, WatchBroker.Refusal> {
            machine.read { broker.register(registration, stream: stream, store: $0) }
        }

        /// Drains `stream` as the watch service does, catching up until nothing replays.
        func drainAll(stream: Int) throws -> [(id: Int64, events: [WatchEvent])] {
            var all: [(id: Int64, events: [WatchEvent])] = []
            var drained = broker.drain(stream: stream)
            while true {
                all += drained.events
                guard drained.catchingUp else { return all }
                try broker.catchUp(stream: stream, machine: machine)
                drained = broker.drain(stream: stream)
            }
        }
    }

    @Test("Nothing of a new watcher (history, or a cancellation for compacted history) is drained before its created answer")
    func createdComesFirst() throws {
        let fixture = try Fixture()
        let broker = fixture.broker
        let (stream, _) = broker.openStream(connection: "ipv4:127.0.0.1:1")
        // History from revision 2: held back until announced.
        let replaying = try fixture.register(WatchHub.Registration(key: Array("w/".utf8), rangeEnd: Array("w0".utf8), startRevision: 2), stream: stream).get()
        try broker.catchUp(stream: stream, machine: fixture.machine)
        #expect(broker.drain(stream: stream).events.isEmpty)
        #expect(broker.progress(stream: stream, ids: nil).allReady == false)
        broker.announced(replaying, stream: stream)
        let replayed = try fixture.drainAll(stream: stream)
        #expect(replayed.map(\.id) == [replaying])
        #expect(replayed.flatMap(\.events).map(\.kv.modRevision) == [2, 3])

        // A start below the compaction is cancelled at once, but the cancellation waits for the
        // created answer too (a client drops answers for a watch ID it has not seen created).
        try fixture.apply(.compaction(CompactionRequest(revision: 3)))
        let compacted = try fixture.register(WatchHub.Registration(key: Array("w/".utf8), startRevision: 2), stream: stream).get()
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

    @Test("A connection's watchers are capped over all its streams; closing a stream frees its share; other connections are not affected")
    func perConnectionCap() throws {
        let fixture = try Fixture(broker: WatchBroker(watchersPerConnectionMax: 3))
        let broker = fixture.broker
        let (first, _) = broker.openStream(connection: "ipv4:10.0.0.1:4000")
        let (second, _) = broker.openStream(connection: "ipv4:10.0.0.1:4000")
        let (other, _) = broker.openStream(connection: "ipv4:10.0.0.1:4001")
        for stream in [first, first, second] {
            #expect((try? fixture.register(.init(key: Array("k".utf8)), stream: stream).get()) != nil)
        }
        #expect(fixture.register(.init(key: Array("k".utf8)), stream: second) == .failure(.connectionFull(3)))
        #expect((try? fixture.register(.init(key: Array("k".utf8)), stream: other).get()) != nil)
        broker.closeStream(first)
        #expect((try? fixture.register(.init(key: Array("k".utf8)), stream: second).get()) != nil)
        #expect(WatchBroker.Refusal.connectionFull(3).reason.contains("too many watchers"))
    }

    @Test("A stream cannot cancel another stream's watcher")
    func cancelOnlyOwn() throws {
        let fixture = try Fixture()
        let broker = fixture.broker
        let (mine, _) = broker.openStream(connection: "ipv4:10.0.0.1:1")
        let (theirs, _) = broker.openStream(connection: "ipv4:10.0.0.2:1")
        let id = try fixture.register(.init(key: Array("k".utf8)), stream: theirs).get()
        broker.announced(id, stream: theirs)
        broker.cancel(id, stream: mine)
        try fixture.put("k", [7])
        #expect(try fixture.drainAll(stream: theirs).flatMap(\.events).map(\.kv.value) == [[7]], "the watch still runs")
        #expect(broker.drain(stream: mine).cancelled.isEmpty)
        broker.cancel(id, stream: theirs)
        #expect(broker.drain(stream: theirs).cancelled.map(\.id) == [id])
    }

    @Test("A watcher replaying history while writes go on gets every event once, in order, across the bulk read and going live")
    func replayUnderWrites() async throws {
        let fixture = try Fixture()
        let broker = fixture.broker
        for value in 0..<3_000 { try fixture.put("h/\(value % 17)", Array("\(value)".utf8)) }
        let (stream, _) = broker.openStream(connection: "ipv4:10.0.0.1:1")
        let id = try fixture.register(.init(key: Array("h/".utf8), rangeEnd: Array("h0".utf8), startRevision: 4), stream: stream).get()
        broker.announced(id, stream: stream)
        // Writes keep coming while the watcher catches up on another task.
        let writer = Task.detached {
            for value in 3_000..<4_000 { try fixture.put("h/\(value % 17)", Array("\(value)".utf8)) }
        }
        var revisions: [Int64] = []
        while revisions.last != 4_003 {
            revisions += try fixture.drainAll(stream: stream).flatMap(\.events).map(\.kv.modRevision)
            if revisions.last != 4_003 { try await Task.sleep(for: .milliseconds(1)) }
            if revisions.count > 4_000 { break }
        }
        try await writer.value
        revisions += try fixture.drainAll(stream: stream).flatMap(\.events).map(\.kv.modRevision)
        #expect(revisions == Array(4...4_003))
        #expect(broker.drain(stream: stream).cancelled.isEmpty)
    }
}
