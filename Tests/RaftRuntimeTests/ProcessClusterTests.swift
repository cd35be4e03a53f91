import ClusterHarness
import Foundation
import Testing

/// The runtime with real processes, real files and real kills: 3 (or 5) `raftkube raft-node`
/// members on 127.0.0.1.
@Suite("Process cluster", .serialized)
struct ProcessClusterTests {
    /// Records what clients were told: acknowledged values, and values whose outcome is unknown.
    actor Ledger {
        var acknowledged: [String] = []
        var unknown: [String] = []
        var failures: [String: Int] = [:]

        func record(_ value: String, reply: String?) {
            if let reply, reply.hasPrefix("OK") {
                acknowledged.append(value)
            } else {
                unknown.append(value)
                let reason = reply.map { String($0.prefix(40)) } ?? "no reply"
                failures[reason, default: 0] += 1
            }
        }
    }

    /// Clients write unique values to rotating nodes until `stop` is set.
    static func writeContinuously(_ cluster: ProcessCluster, ids: @escaping @Sendable () -> [UInt64], clients: Int, ledger: Ledger, until deadline: ContinuousClock.Instant, stop: StopFlag = StopFlag()) async {
        await withTaskGroup(of: Void.self) { group in
            for client in 0..<clients {
                group.addTask {
                    var sequence = 0
                    while ContinuousClock.now < deadline && !stop.isSet {
                        let targets = ids()
                        let target = targets[(sequence + client) % targets.count]
                        let value = "c\(client)-\(sequence)"
                        sequence += 1
                        let reply = await cluster.request(target, "PUT \(value)", timeoutMs: 3_000)
                        await ledger.record(value, reply: reply)
                        if reply == nil || reply?.hasPrefix("ERR") == true { try? await Task.sleep(for: .milliseconds(20)) }
                    }
                }
            }
        }
    }

    /// Waits until every listed node holds the same list, which contains every acknowledged value.
    static func converge(_ cluster: ProcessCluster, ids: [UInt64], acknowledged: [String], timeoutMs: Int = 30_000) async -> [UInt64: [String]] {
        let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
        var lists: [UInt64: [String]] = [:]
        while ContinuousClock.now < deadline {
            lists = [:]
            for id in ids { lists[id] = await cluster.dump(id) }
            let first = lists[ids[0]] ?? nil
            if let first, ids.allSatisfy({ lists[$0] == first }), Set(first).isSuperset(of: acknowledged) { return lists }
            try? await Task.sleep(for: .milliseconds(200))
        }
        return lists
    }

    @Test("Acknowledged writes survive repeated SIGKILLs of any member, often the leader")
    func acknowledgedWritesSurviveKills() async throws {
        let cluster = try ProcessCluster(name: "kill")
        defer { cluster.tearDown() }
        try cluster.bootstrap([1, 2, 3])
        let firstLeader = await cluster.waitForLeader()
        try #require(firstLeader != nil, "no leader elected: \(cluster.logTail(1))")
        let ledger = Ledger()
        // Ten kills, however long they take on a loaded machine (bounded at 90 s).
        let deadline = ContinuousClock.now + .seconds(90)
        let running = ManagedIDs([1, 2, 3])
        let stop = StopFlag()
        var kills = 0
        var leaderKills = 0
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await Self.writeContinuously(cluster, ids: { running.ids }, clients: 6, ledger: ledger, until: deadline, stop: stop)
            }
            // The killer runs on this task: cluster membership changes happen here only.
            var round = 0
            while kills < 10 && ContinuousClock.now < deadline - .seconds(3) {
                try? await Task.sleep(for: .milliseconds(1_200))
                round += 1
                let leader = await cluster.leader()
                let victim: UInt64 = (round % 3 != 0 ? leader : nil) ?? UInt64(1 + round % 3)
                if victim == leader { leaderKills += 1 }
                cluster.kill(victim)
                running.set([1, 2, 3].filter { $0 != victim })
                kills += 1
                try? await Task.sleep(for: .milliseconds(700))
                try? cluster.start(victim)
                running.set([1, 2, 3])
            }
            // Let the writers run on a whole cluster for a moment, then stop them.
            try? await Task.sleep(for: .seconds(2))
            stop.set()
            await group.waitForAll()
        }
        let acknowledged = await ledger.acknowledged
        let unknown = await ledger.unknown
        let lists = await Self.converge(cluster, ids: [1, 2, 3], acknowledged: acknowledged)
        #expect(kills >= 10)
        #expect(leaderKills >= 4)
        let failures = await ledger.failures
        #expect(acknowledged.count > 200, "only \(acknowledged.count) writes acknowledged; failures: \(failures)")
        let reference = try #require(lists[1])
        for id: UInt64 in [2, 3] { #expect(lists[id] == reference, "node \(id) differs from node 1") }
        // Every acknowledged value exactly once; nothing that was never proposed; no duplicates.
        var counts: [String: Int] = [:]
        for value in reference { counts[value, default: 0] += 1 }
        #expect(counts.values.allSatisfy { $0 == 1 }, "duplicates: \(counts.filter { $0.value > 1 }.keys.prefix(5))")
        let missing = acknowledged.filter { counts[$0] == nil }
        #expect(missing.isEmpty, "acknowledged but lost: \(missing.prefix(10))")
        let proposed = Set(acknowledged).union(unknown)
        #expect(reference.allSatisfy { proposed.contains($0) })
        print("kill test: kills=\(kills) leader-kills=\(leaderKills) acknowledged=\(acknowledged.count) unknown=\(unknown.count) applied=\(reference.count)")
    }

    @Test("A member stopped while the log is compacted past it catches up by snapshot")
    func laggingMemberCatchesUpBySnapshot() async throws {
        let cluster = try ProcessCluster(name: "lag", snapshotInterval: 50, compactionMargin: 10)
        defer { cluster.tearDown() }
        try cluster.bootstrap([1, 2, 3])
        try #require(await cluster.waitForLeader() != nil)
        cluster.kill(3)
        var acknowledged: [String] = []
        var failures: [String] = []
        for value in 0..<300 {
            // Node 3 may have led: the other two elect a new leader within a fraction of a second,
            // and until then writes fail at once ("no leader"), so wait for one rather than spin.
            let leader = await cluster.waitForLeader() ?? 1
            let reply = await cluster.request(leader, "PUT v\(value)")
            if let reply, reply.hasPrefix("OK") { acknowledged.append("v\(value)") } else { failures.append("v\(value) to \(leader): \(reply ?? "no reply")") }
        }
        #expect(acknowledged.count >= 290, "\(failures)")
        let leader = try #require(await cluster.leader())
        let leaderStatus = try #require(await cluster.status(leader))
        // The leader's log no longer starts at the beginning: node 3 cannot be sent entries.
        #expect(Int(leaderStatus["first"] ?? "0")! > 100)
        try cluster.start(3)
        let lists = await Self.converge(cluster, ids: [1, 2, 3], acknowledged: acknowledged)
        #expect(lists[3] == lists[1])
        #expect(lists[3]?.count == acknowledged.count)
        let status = try #require(await cluster.status(3))
        #expect(Int(status["first"] ?? "0")! > 100, "node 3 should hold a log that starts after a snapshot")
        #expect(cluster.logTail(3).contains("restored snapshot"))
        // Its state machine keeps nothing on disk: the leader's image, kept beside its log, is
        // what a restart restores from.
        let images = try FileManager.default.contentsOfDirectory(atPath: "\(cluster.root)/n3/snap").filter { $0.hasSuffix(".image") }
        #expect(images.count == 1, "\(images)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(cluster.root)/n3/transfer").isEmpty)
        cluster.kill(3)
        try cluster.start(3)
        let again = await Self.converge(cluster, ids: [1, 2, 3], acknowledged: acknowledged)
        #expect(again[3] == lists[1])
    }

    @Test("Membership with processes: grow 3 -> 5 through learners, shrink back, remove the leader; writes continue")
    func membershipChangesWithWrites() async throws {
        let cluster = try ProcessCluster(name: "members")
        defer { cluster.tearDown() }
        try cluster.bootstrap([1, 2, 3])
        try #require(await cluster.waitForLeader() != nil)
        let ledger = Ledger()
        let voters = ManagedIDs([1, 2, 3])
        let deadline = ContinuousClock.now + .seconds(40)
        let writers = Task {
            await Self.writeContinuously(cluster, ids: { voters.ids }, clients: 3, ledger: ledger, until: deadline)
        }
        func onLeader(_ line: String) async -> String? {
            for _ in 0..<20 {
                if let leader = await cluster.leader(), let reply = await cluster.request(leader, line), reply.hasPrefix("OK") { return reply }
                try? await Task.sleep(for: .milliseconds(300))
            }
            return nil
        }
        for id: UInt64 in [4, 5] {
            try cluster.startJoining(id, peers: [1, 2, 3])
            #expect(await onLeader("ADD-LEARNER \(id) 127.0.0.1:\(cluster.peerPort(id))") != nil, "add learner \(id)")
            // A learner is promoted once it has caught up (the leader refuses earlier).
            #expect(await onLeader("PROMOTE \(id)") != nil, "promote \(id)")
        }
        var leaderNow = try #require(await cluster.leader())
        var status = try #require(await cluster.status(leaderNow))
        #expect(status["voters"] == "1,2,3,4,5")
        voters.set([1, 2, 3, 4, 5])
        try await Task.sleep(for: .seconds(2))
        for id: UInt64 in [5, 4] {
            voters.set(voters.ids.filter { $0 != id })
            #expect(await onLeader("REMOVE \(id)") != nil, "remove \(id)")
        }
        leaderNow = try #require(await cluster.leader())
        status = try #require(await cluster.status(leaderNow))
        #expect(status["voters"] == "1,2,3")
        // Remove the leader itself: it steps down once the removal commits and the rest elect a new one.
        let oldLeader = try #require(await cluster.leader())
        voters.set([1, 2, 3].filter { $0 != oldLeader })
        #expect(await cluster.request(oldLeader, "REMOVE \(oldLeader)")?.hasPrefix("OK") == true)
        try await Task.sleep(for: .seconds(2))
        let newLeader = try #require(await cluster.waitForLeader())
        #expect(newLeader != oldLeader)
        let before = await ledger.acknowledged.count
        try await Task.sleep(for: .seconds(3))
        #expect(await ledger.acknowledged.count > before, "writes stopped after removing the leader")
        writers.cancel()
        await writers.value
        let acknowledged = await ledger.acknowledged
        let remaining = voters.ids
        let lists = await Self.converge(cluster, ids: remaining, acknowledged: acknowledged)
        #expect(lists[remaining[0]] != nil && lists[remaining[0]] == lists[remaining[1]])
        #expect(Set(lists[remaining[0]] ?? []).isSuperset(of: acknowledged))
    }

    @Test("A member that is down does not stall commits on the majority")
    func downMemberDoesNotStallCommits() async throws {
        let cluster = try ProcessCluster(name: "down")
        defer { cluster.tearDown() }
        try cluster.bootstrap([1, 2, 3])
        let leader = try #require(await cluster.waitForLeader())
        let follower: UInt64 = leader == 1 ? 2 : 1
        cluster.kill(follower)
        let started = ContinuousClock.now
        var acknowledged = 0
        for value in 0..<200 {
            if let reply = await cluster.request(leader, "PUT d\(value)"), reply.hasPrefix("OK") { acknowledged += 1 }
        }
        let elapsed = ContinuousClock.now - started
        #expect(acknowledged == 200)
        #expect(elapsed < .seconds(20), "200 writes took \(elapsed) with one member down")
    }
}

extension ProcessClusterTests {
    @Test("A frozen (very slow) member does not stall commits, and catches up when it thaws")
    func slowMemberDoesNotStallCommits() async throws {
        let cluster = try ProcessCluster(name: "slow")
        defer { cluster.tearDown() }
        try cluster.bootstrap([1, 2, 3])
        let leader = try #require(await cluster.waitForLeader())
        let follower: UInt64 = leader == 3 ? 2 : 3
        cluster.pause(follower)
        var acknowledged: [String] = []
        let started = ContinuousClock.now
        for value in 0..<300 {
            // Values of 2 KiB fill the frozen member's socket buffers quickly.
            let padded = "s\(value)-" + String(repeating: "p", count: 2_000)
            if let reply = await cluster.request(leader, "PUT \(padded)"), reply.hasPrefix("OK") { acknowledged.append(padded) }
        }
        #expect(acknowledged.count == 300)
        #expect(ContinuousClock.now - started < .seconds(30))
        cluster.resume(follower)
        let lists = await Self.converge(cluster, ids: [1, 2, 3], acknowledged: acknowledged)
        #expect(lists[follower]?.count == 300)
    }

    @Test("SIGTERM shuts a member down gracefully; it restarts as the same member with its data")
    func gracefulShutdownAndRestart() async throws {
        let cluster = try ProcessCluster(name: "term")
        defer { cluster.tearDown() }
        try cluster.bootstrap([1, 2, 3])
        let leader = try #require(await cluster.waitForLeader())
        for value in 0..<20 { _ = await cluster.request(leader, "PUT t\(value)") }
        let exitStatus = await cluster.terminate(2)
        #expect(exitStatus == 0)
        try cluster.start(2)
        let expected = (0..<20).map { "t\($0)" }
        let lists = await Self.converge(cluster, ids: [1, 2, 3], acknowledged: expected)
        #expect(lists[2] == expected)
        #expect(await cluster.status(2)?["id"] == "2")
    }
}

/// A flag the writers poll to stop.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}

/// A thread-safe list of node ids the writers may target.
final class ManagedIDs: @unchecked Sendable {
    private let lock = NSLock()
    private var current: [UInt64]
    init(_ ids: [UInt64]) { current = ids }
    var ids: [UInt64] { lock.withLock { current } }
    func set(_ ids: [UInt64]) { lock.withLock { current = ids } }
}
