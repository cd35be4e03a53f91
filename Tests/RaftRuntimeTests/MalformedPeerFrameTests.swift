import ClusterHarness
import Foundation
import Testing

/// Issue 11, items 9 and 10, with real `raft-node` processes: hand-made frames on a member's
/// (plaintext) peer port, each a message no correct member sends. On bea4cd2 the follower died at
/// the `precondition` on entries conflicting with its commit index (and a garbage snapshot was
/// persisted, so it failed again on every restart), and the leader at `index + 1` overflowing.
/// Now each message is dropped with a log line, and the cluster keeps committing.
@Suite("Malformed peer frames", .serialized)
struct MalformedPeerFrameTests {
    typealias Entry = PeerFrames.RawEntry

    /// Waits until every member reports the same commit index; returns it with the term.
    static func settled(_ cluster: ProcessCluster, ids: [UInt64]) async -> (term: UInt64, commit: UInt64)? {
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            var commits: Set<String> = []
            var term: String?
            for id in ids {
                let status = await cluster.status(id)
                commits.insert(status?["commit"] ?? "?")
                term = status?["term"]
            }
            if commits.count == 1, let commit = commits.first.flatMap({ UInt64($0) }), let term = term.flatMap({ UInt64($0) }) {
                return (term, commit)
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return nil
    }

    @Test("Invalid peer messages to followers and the leader are dropped; every member stays up and the cluster keeps committing")
    func invalidPeerMessagesAreDropped() async throws {
        let cluster = try ProcessCluster(name: "badframes")
        defer { cluster.tearDown() }
        let ids: [UInt64] = [1, 2, 3]
        try cluster.bootstrap(ids)
        let leader = try #require(await cluster.waitForLeader(), "no leader: \(cluster.logTail(1))")
        for value in 0..<5 {
            let reply = await cluster.request(leader, "PUT before\(value)")
            #expect(reply?.hasPrefix("OK") == true, "\(String(describing: reply))")
        }
        let (term, commit) = try #require(await Self.settled(cluster, ids: ids))
        let followers = ids.filter { $0 != leader }
        let max = UInt64.max

        for follower in followers {
            let messages: [[UInt8]] = [
                // An entry that conflicts with the committed log (term above the message's).
                PeerFrames.message(.append, from: leader, to: follower, term: term, logTerm: term, index: commit,
                                   commit: commit, entries: [Entry(term: term + 5, index: 1)]),
                // An entry before `index`, of an older term than the log holds there.
                PeerFrames.message(.append, from: leader, to: follower, term: term, logTerm: term, index: commit,
                                   commit: commit + 5, entries: [Entry(term: term, index: 1)]),
                // A gap.
                PeerFrames.message(.append, from: leader, to: follower, term: term, logTerm: term, index: commit,
                                   entries: [Entry(term: term, index: commit + 1), Entry(term: term, index: commit + 3)]),
                PeerFrames.message(.append, from: leader, to: follower, term: term, logTerm: term, index: max),
                PeerFrames.message(.heartbeat, from: leader, to: follower, term: term, commit: max),
                PeerFrames.message(.append, from: leader, to: follower, term: max, logTerm: term, index: commit),
                PeerFrames.message(.requestVote, from: leader, to: follower, term: max, logTerm: max, index: max),
                PeerFrames.message(.readIndexResponse, from: leader, to: follower, term: term, index: max),
                // Item 10: a snapshot whose payload the state machine cannot restore. bea4cd2 made it
                // durable, then failed to restore it, on every start.
                PeerFrames.message(.snapshot, from: leader, to: follower, term: term, snapshot: PeerFrames.RawSnapshot(
                    index: commit + 1_000, term: term, voters: ids,
                    data: PeerFrames.runtimeSnapshot(stateMachineData: [0xFF, 0xFF, 0xFF, 0x7F]))),
                // From a stranger, and from the receiver itself.
                PeerFrames.message(.heartbeat, from: 77, to: follower, term: term + 1),
                PeerFrames.message(.heartbeat, from: follower, to: follower, term: term + 1),
            ]
            try await PeerFrames.send(PeerFrames.batch(messages), port: cluster.peerPort(follower))
        }
        let messagesToLeader: [[UInt8]] = [
            PeerFrames.message(.appendResponse, from: followers[0], to: leader, term: term, index: max),
            PeerFrames.message(.appendResponse, from: followers[0], to: leader, term: term, index: commit, reject: true, rejectHint: max),
            PeerFrames.message(.appendResponse, from: followers[0], to: leader, term: term, index: commit + 1_000),
            PeerFrames.message(.appendResponse, from: followers[1], to: leader, term: term, logTerm: max, index: commit, reject: true),
        ]
        try await PeerFrames.send(PeerFrames.batch(messagesToLeader), port: cluster.peerPort(leader))
        try await Task.sleep(for: .milliseconds(500))

        for id in ids {
            #expect(cluster.isRunning(id), "member \(id) died: \(cluster.logTail(id))")
        }
        let log = (try? String(contentsOfFile: "\(cluster.root)/n\(followers[0]).log", encoding: .utf8)) ?? ""
        #expect(log.contains("dropping invalid peer message"), "no drop was logged")
        #expect(log.contains("unknown member"), "the stranger's message was not logged")

        // Nothing moved the term, and the cluster still commits.
        let after = await cluster.status(leader)
        #expect(after?["term"] == "\(term)", "\(String(describing: after))")
        for value in 0..<5 {
            let reply = await cluster.request(leader, "PUT after\(value)")
            #expect(reply?.hasPrefix("OK") == true, "\(String(describing: reply))")
        }
        let expected = (0..<5).map { "before\($0)" } + (0..<5).map { "after\($0)" }
        let lists = await ProcessClusterTests.converge(cluster, ids: ids, acknowledged: expected)
        for id in ids { #expect(lists[id] == expected, "member \(id): \(String(describing: lists[id]))") }

        // A follower that was sent the bad snapshot restarts cleanly with its data.
        cluster.kill(followers[0])
        try cluster.start(followers[0])
        try await Task.sleep(for: .seconds(1))
        #expect(cluster.isRunning(followers[0]), "member \(followers[0]) does not restart: \(cluster.logTail(followers[0]))")
        let restarted = await ProcessClusterTests.converge(cluster, ids: ids, acknowledged: expected)
        #expect(restarted[followers[0]] == expected)
    }
}
