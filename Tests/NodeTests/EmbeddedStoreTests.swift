import ClusterHarness
import EtcdServer
import Foundation
import KVStore
import Logging
import Node
import Store
import Synchronization
import Testing

/// The store interface (``KeyValueStore``) on a real member assembled in this process by
/// ``StoreNode``: a real SQLite file, WAL and loopback sockets, no gRPC in between. Each test
/// starts its own one-member node in a fresh directory.
@Suite("Store interface, in-process member")
struct EmbeddedStoreTests {
    static let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    /// Runs a one-member node (heartbeats every 10 ms) until `body` returns; `adjust` changes
    /// its configuration first. A node that fails by itself (a listener whose port was taken
    /// between choosing it and binding it, by a parallel test or an outgoing connection) is
    /// started again on other ports, up to three times; a failure of `body` is not retried.
    static func withNode<Result: Sendable>(_ adjust: (inout StoreMemberConfiguration) -> Void = { _ in },
                                           _ body: @escaping @Sendable (StoreNode) async throws -> Result) async throws -> Result {
        for attempt in 1...3 {
            let nodeFailure = NodeFailure()
            do {
                return try await withNodeOnce(adjust, nodeFailure: nodeFailure, body)
            } catch {
                guard attempt < 3, let cause = nodeFailure.error.withLock({ $0 }) else { throw error }
                print("node failed by itself (\(cause)); starting it again on other ports")
            }
        }
        throw NodeError("unreachable")
    }

    /// How the node of one attempt failed by itself, if it did.
    final class NodeFailure: Sendable {
        let error = Mutex<(any Error)?>(nil)
    }

    private static func withNodeOnce<Result: Sendable>(_ adjust: (inout StoreMemberConfiguration) -> Void,
                                                       nodeFailure: NodeFailure,
                                                       _ body: @escaping @Sendable (StoreNode) async throws -> Result) async throws -> Result {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("embedded-store-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let peerURL = "http://127.0.0.1:\(try FreePort.next())"
        var configuration = StoreMemberConfiguration(name: "m1", dataDirectory: directory, listenClientURL: "http://127.0.0.1:\(try FreePort.next())",
                                                     listenPeerURL: peerURL, initialCluster: "m1=\(peerURL)")
        configuration.heartbeatIntervalMs = 10
        adjust(&configuration)
        let node = try StoreNode.make(configuration, logger: quiet)
        return try await withThrowingTaskGroup(of: Result?.self) { group in
            group.addTask {
                do {
                    try await node.run(signals: false)
                } catch where !(error is CancellationError) {
                    nodeFailure.error.withLock { $0 = error }
                    throw error
                }
                return nil
            }
            group.addTask {
                // Ready once a write goes through (the member has elected itself).
                let deadline = ContinuousClock.now + .seconds(20)
                while true {
                    do {
                        _ = try await node.store.put(PutRequest(key: bytes("ready"), value: []))
                        break
                    } catch let error as StoreError where error.isRetryable && ContinuousClock.now < deadline {
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
                return try await body(node)
            }
            defer { group.cancelAll() }
            while let next = try await group.next() {
                if let result = next { return result }
            }
            throw NodeError("the node stopped before the test finished")
        }
    }

    /// The error `body` throws, or nil when it throws none (an error of another type than
    /// StoreError comes back as an internal error naming it, which no expectation matches).
    static func storeError<T>(_ body: () async throws -> T) async -> StoreError? {
        do {
            _ = try await body()
            return nil
        } catch let error as StoreError {
            return error
        } catch {
            return .internalError("not a StoreError: \(error)")
        }
    }

    @Test("put, range, txn and delete, linearizable and serializable")
    func keys() async throws {
        try await Self.withNode { node in
            let store = node.store
            let first = try await store.put(PutRequest(key: Self.bytes("/registry/pods/default/a"), value: Self.bytes("one")))
            _ = try await store.put(PutRequest(key: Self.bytes("/registry/pods/default/b"), value: Self.bytes("two")))
            let listed = try await store.range(RangeRequest(key: Self.bytes("/registry/pods/"), rangeEnd: Self.bytes("/registry/pods0")))
            #expect(listed.kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["one", "two"])
            #expect(listed.count == 2)
            let stale = try await store.range(RangeRequest(key: Self.bytes("/registry/pods/default/a"), serializable: true))
            #expect(stale.kvs.first?.modRevision == first.header.revision)

            // Create only if absent (Kubernetes' create), then update on the mod revision.
            let key = Self.bytes("/registry/pods/default/c")
            let absent = Compare(key: key, target: .createRevision(0), result: .equal)
            let create = TxnRequest(compare: [absent], success: [.put(PutRequest(key: key, value: Self.bytes("v1")))],
                                    failure: [.range(RangeRequest(key: key))])
            let created = try await store.txn(create)
            #expect(created.succeeded)
            let again = try await store.txn(create)
            #expect(!again.succeeded)
            guard case .range(let existing) = again.responses.first else {
                Issue.record("the failure branch's range is missing")
                return
            }
            let revision = try #require(existing.kvs.first).modRevision
            let stale1 = TxnRequest(compare: [Compare(key: key, target: .modRevision(revision - 1), result: .equal)],
                                    success: [.put(PutRequest(key: key, value: Self.bytes("lost")))])
            #expect(try await !store.txn(stale1).succeeded)
            let current = TxnRequest(compare: [Compare(key: key, target: .modRevision(revision), result: .equal)],
                                     success: [.put(PutRequest(key: key, value: Self.bytes("v2")))])
            #expect(try await store.txn(current).succeeded)
            #expect(try await store.get(key)?.value == Self.bytes("v2"))

            let deleted = try await store.deleteRange(DeleteRangeRequest(key: Self.bytes("/registry/pods/"), rangeEnd: Self.bytes("/registry/pods0"), prevKv: true))
            #expect(deleted.deleted == 3)
            #expect(deleted.prevKvs.count == 3)
            #expect(try await store.get(key) == nil)
        }
    }

    @Test("refusals come back as typed errors")
    func typedErrors() async throws {
        try await Self.withNode { node in
            let store = node.store
            let put = try await store.put(PutRequest(key: Self.bytes("k"), value: Self.bytes("1")))
            _ = try await store.put(PutRequest(key: Self.bytes("k"), value: Self.bytes("2")))
            let future = await Self.storeError { try await store.range(RangeRequest(key: Self.bytes("k"), revision: put.header.revision + 100)) }
            #expect(future == .futureRevision)
            _ = try await store.compact(revision: put.header.revision + 1, physical: true)
            let compacted = await Self.storeError { try await store.range(RangeRequest(key: Self.bytes("k"), revision: put.header.revision)) }
            if case .compacted = compacted {} else { Issue.record("expected compacted, got \(String(describing: compacted))") }
            let large = await Self.storeError { try await store.put(PutRequest(key: Self.bytes("big"), value: [UInt8](repeating: 1, count: 2 << 20))) }
            #expect(large == .requestTooLarge)
            let manyOps = TxnRequest(success: (0..<200).map { .put(PutRequest(key: Self.bytes("t\($0)"), value: [])) })
            #expect(await Self.storeError { try await store.txn(manyOps) } == .refused(.tooManyOperations))
            #expect(await Self.storeError { try await store.put(PutRequest(key: [], value: [])) } == .refused(.emptyKey))
            #expect(await Self.storeError { try await store.put(PutRequest(key: Self.bytes("l"), value: [], lease: 12345)) } == .refused(.leaseNotFound))
            #expect(await Self.storeError { try await store.leaseRevoke(id: 777) } == .refused(.leaseNotFound))
            #expect(await Self.storeError { try await store.removeMember(id: 42) } == .memberNotFound)
            #expect(await Self.storeError { try await store.addMember(peerURLs: ["not a url"], learner: true) } == .invalidPeerURLs)
            let me = try #require(try await store.members(linearizable: true).first)
            #expect(await Self.storeError { try await store.promoteMember(id: me.id) } == .notLearner)
            #expect(await Self.storeError { try await store.addMember(peerURLs: me.peerURLs, learner: true) } == .peerURLsExist)
            // Nothing refused changed anything.
            #expect(try await store.get(Self.bytes("k"))?.value == Self.bytes("2"))
            #expect(try await store.get(Self.bytes("t0")) == nil)
        }
    }

    @Test("leases: grant, keep-alive, time to live with keys, revoke deletes the keys")
    func leases() async throws {
        try await Self.withNode { node in
            let store = node.store
            let lease = try await store.leaseGrant(ttl: 30, id: 0)
            #expect(lease.ttl == 30)
            _ = try await store.put(PutRequest(key: Self.bytes("leased"), value: Self.bytes("x"), lease: lease.id))
            #expect(try await store.leaseKeepAlive(id: lease.id) == 30)
            #expect(try await store.leaseKeepAlive(id: lease.id + 1) == 0)
            let alive = try #require(try await store.leaseTimeToLive(id: lease.id, keys: true))
            #expect(alive.grantedTTL == 30)
            #expect(alive.ttl > 0 && alive.ttl <= 30)
            #expect(alive.keys == [Self.bytes("leased")])
            #expect(try await store.leaseTimeToLive(id: lease.id + 1, keys: false) == nil)
            #expect(try await store.leases() == [lease.id])
            _ = try await store.leaseRevoke(id: lease.id)
            #expect(try await store.get(Self.bytes("leased")) == nil)
            #expect(try await store.leases().isEmpty)
        }
    }

    @Test("members: this one, by name and URLs, as a voter")
    func members() async throws {
        try await Self.withNode { node in
            let members = try await node.store.members(linearizable: true)
            #expect(members.count == 1)
            #expect(members.first?.name == "m1")
            #expect(members.first?.isLearner == false)
            #expect(members.first?.clientURLs.first?.hasPrefix("http://127.0.0.1:") == true)
        }
    }

    /// Reads updates until `count` events have arrived.
    static func events(_ watch: StoreWatch, count: Int) async throws -> [WatchEvent] {
        var events: [WatchEvent] = []
        for try await update in watch {
            if case .events(let batch) = update { events += batch }
            if events.count >= count { break }
        }
        return events
    }

    @Test("watch: history from a revision, then live events, in order; cancel ends it")
    func watch() async throws {
        try await Self.withNode { node in
            let store = node.store
            let start = try await store.put(PutRequest(key: Self.bytes("w/0"), value: Self.bytes("0"))).header.revision
            // More history than one batch of the hub holds for a watcher (1,024 events).
            for chunk in 0..<25 {
                let puts = (0..<100).map { RequestOp.put(PutRequest(key: Self.bytes("w/\(chunk)-\($0)"), value: Self.bytes("\($0)"))) }
                _ = try await store.txn(TxnRequest(success: puts))
            }
            _ = try await store.put(PutRequest(key: Self.bytes("other"), value: []))
            let watch = try await store.watch(WatchHub.Registration(key: Self.bytes("w/"), rangeEnd: Self.bytes("w0"), startRevision: start, prevKv: true))
            #expect(watch.startRevision == start)
            let live = Task {
                try await Task.sleep(for: .milliseconds(100))
                _ = try await store.put(PutRequest(key: Self.bytes("w/0"), value: Self.bytes("again")))
                _ = try await store.deleteRange(DeleteRangeRequest(key: Self.bytes("w/0")))
            }
            let events = try await Self.events(watch, count: 2_503)
            try await live.value
            #expect(events.count == 2_503)
            #expect(events.map(\.kv.modRevision) == events.map(\.kv.modRevision).sorted())
            #expect(events.first?.kv.key == Self.bytes("w/0"))
            #expect(!events.contains { $0.kv.key == Self.bytes("other") })
            #expect(events[2_501].type == .put && events[2_501].prevKv?.value == Self.bytes("0"))
            #expect(events[2_502].type == .delete && events[2_502].prevKv?.value == Self.bytes("again"))
            watch.cancel()
            var after = watch.makeAsyncIterator()
            #expect(try await after.next() == nil)
        }
    }

    @Test("a watch from a compacted revision ends with .compacted and the compact revision")
    func watchCompacted() async throws {
        try await Self.withNode { node in
            let store = node.store
            let old = try await store.put(PutRequest(key: Self.bytes("c"), value: Self.bytes("1"))).header.revision
            let newer = try await store.put(PutRequest(key: Self.bytes("c"), value: Self.bytes("2"))).header.revision
            _ = try await store.compact(revision: newer, physical: false)
            let watch = try await store.watch(WatchHub.Registration(key: Self.bytes("c"), startRevision: old))
            var iterator = watch.makeAsyncIterator()
            let ended = await Self.storeError { try await iterator.next() }
            #expect(ended == .compacted(compactRevision: newer))
        }
    }

    @Test("a watcher that stops reading is ended as too slow, with the revision to resume from")
    func watchTooSlow() async throws {
        try await Self.withNode { node in
            let store = node.store
            let watch = try await store.watch(WatchHub.Registration(key: Self.bytes("s/"), rangeEnd: Self.bytes("s0")))
            let first = try await store.put(PutRequest(key: Self.bytes("s/first"), value: [])).header.revision
            // 1,200 events without reading: past the per-watcher cap of 1,024.
            for chunk in 0..<12 {
                _ = try await store.txn(TxnRequest(success: (0..<100).map { .put(PutRequest(key: Self.bytes("s/\(chunk)-\($0)"), value: [])) }))
            }
            var delivered = 0
            do {
                for try await update in watch {
                    if case .events(let batch) = update { delivered += batch.count }
                }
                Issue.record("the watch finished without an error after \(delivered) events")
            } catch {
                guard case .watchTooSlow(let resume) = error as? StoreError else {
                    Issue.record("expected watchTooSlow, got \(error)")
                    return
                }
                #expect(resume >= first && resume <= first + 12)
                #expect(delivered < 1_201)
            }
        }
    }

    @Test("progress notifications for an idle watch made with progressNotify")
    func watchProgress() async throws {
        try await Self.withNode({ $0.watchProgressNotifyInterval = .milliseconds(100) }) { node in
            let store = node.store
            let revision = try await store.put(PutRequest(key: Self.bytes("p"), value: [])).header.revision
            let watch = try await store.watch(WatchHub.Registration(key: Self.bytes("q")), progressNotify: true)
            var iterator = watch.makeAsyncIterator()
            let update = try await iterator.next()
            #expect(update == .progress(revision: revision))
            _ = try await store.put(PutRequest(key: Self.bytes("q"), value: Self.bytes("now")))
            let next = try await iterator.next()
            guard case .events(let events) = next else {
                Issue.record("expected the put, got \(String(describing: next))")
                return
            }
            #expect(events.map(\.kv.value) == [Self.bytes("now")])
        }
    }

    @Test("a second node on the same data directory is refused at once")
    func dataDirectoryLock() async throws {
        try await Self.withNode { node in
            let directory = node.configuration.dataDirectory
            var configuration = StoreMemberConfiguration(name: "m1", dataDirectory: directory, listenClientURL: "http://127.0.0.1:1",
                                                         listenPeerURL: "http://127.0.0.1:2", initialCluster: "m1=http://127.0.0.1:2")
            configuration.heartbeatIntervalMs = 10
            #expect(throws: NodeError.self) { _ = try StoreNode.make(configuration, logger: Self.quiet) }
        }
    }

    @Test("plain http off loopback is refused unless insecurePlaintext")
    func plaintext() throws {
        #expect(throws: NodeError.self) { _ = try StoreNode.checkPlaintext(["http://10.1.2.3:2379"], allowed: false) }
        #expect(try StoreNode.checkPlaintext(["http://10.1.2.3:2379"], allowed: true) == ["http://10.1.2.3:2379"])
        #expect(try StoreNode.checkPlaintext(["http://127.0.0.1:2379", "https://10.1.2.3:2379"], allowed: false).isEmpty)
    }
}
