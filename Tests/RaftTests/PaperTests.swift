@testable import Raft
import Testing

/// Scenarios from the Raft paper (Ongaro and Ousterhout, 2014).
@Suite struct PaperTests {
    // Figure 7: the leader of term 8 and six possible follower logs (a)-(f), as terms per index.
    static let figure7Leader: [UInt64] = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
    static let figure7Followers: [NodeID: [UInt64]] = [
        2: [1, 1, 1, 4, 4, 5, 5, 6, 6],  // (a) missing an entry
        3: [1, 1, 1, 4],  // (b) missing many entries
        4: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],  // (c) an extra uncommitted entry of term 6
        5: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],  // (d) extra entries of term 7
        6: [1, 1, 1, 4, 4, 4, 4],  // (e) extra entries of term 4, missing others
        7: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],  // (f) entries of terms 2 and 3 nobody else has
    ]

    /// Seven nodes holding the Figure 7 logs; node 1 holds the leader's. Everyone is in term 7.
    static func figure7Cluster() -> TestCluster {
        let membership = Membership(voters: Array(1...7))
        var storages: [NodeID: MemoryStorage] = [1: TestCluster.storage(membership: membership, terms: figure7Leader, hardState: HardState(term: 7))]
        for (id, terms) in figure7Followers {
            storages[id] = TestCluster.storage(membership: membership, terms: terms, hardState: HardState(term: 7))
        }
        return TestCluster(storages: storages)
    }

    @Test func leaderElectionFigure7FollowerLogs() throws {
        let cluster = Self.figure7Cluster()
        cluster.elect(1)
        #expect(cluster[1].role == .leader)
        #expect(cluster[1].term == 8)
        // The leader's log plus the no-op it appended in term 8.
        let expected = Self.figure7Leader + [8]
        for id in cluster.ids {
            #expect(cluster.logTerms(id) == expected, "node \(id)")
            #expect(cluster.storedTerms(id) == expected, "node \(id) storage")
            #expect(cluster[id].commitIndex == 11, "node \(id)")
            #expect(cluster.lastApplied[id] == 11, "node \(id)")
            #expect(cluster[id].leader == 1, "node \(id)")
        }
        // (c) and (d) refused their votes: their logs are more up-to-date than the leader's.
        let refusals = cluster.sent(.requestVoteResponse, to: 1).filter(\.reject).map(\.from).sorted()
        #expect(refusals == [4, 5])
    }

    /// Paper 5.4.1: only a candidate whose log is at least as up-to-date as a majority's can win.
    /// Among the Figure 7 logs, the leader, (a), (c) and (d) can; (b), (e) and (f) cannot.
    @Test(arguments: [
        (NodeID(1), true), (2, true), (3, false), (4, true), (5, true), (6, false), (7, false),
    ])
    func figure7ElectionRestrictionDecidesWhoCanWin(candidate: NodeID, canWin: Bool) {
        let cluster = Self.figure7Cluster()
        cluster.elect(candidate)
        #expect((cluster[candidate].role == .leader) == canWin)
        if canWin {
            #expect(cluster[candidate].term == 8)
            // Whoever wins, every log converges to the winner's.
            let expected = cluster.logTerms(candidate)
            for id in cluster.ids { #expect(cluster.logTerms(id) == expected, "node \(id)") }
        } else {
            // A lost pre-vote leaves every term alone.
            for id in cluster.ids { #expect(cluster[id].term == 7, "node \(id)") }
            #expect(cluster.leaders.isEmpty)
        }
    }

    /// Figure 8: S1 is leader in term 4 and a majority (S1, S2, S3) stores the term-2 entry at
    /// index 2. It must not count that majority to commit index 2; it commits index 2 only once
    /// its own term-4 entry at index 3 reaches a majority.
    @Test func figure8PreviousTermEntryNotCommittedByCounting() throws {
        let cluster = Self.figure8Cluster(unsafeCounting: false)
        let leader = cluster[1]
        #expect(leader.role == .leader)
        #expect(leader.term == 4)
        // A majority stores index 2 (term 2), and the leader knows it.
        let holders = cluster.ids.filter { cluster[$0].term(at: 2) == 2 }
        #expect(holders == [1, 2, 3])
        #expect(leader.progress[3]?.match == 2)
        #expect(leader.progress[2]?.match == 3)
        // ... yet index 2 is not committed.
        #expect(leader.commitIndex == 1)
        #expect(cluster.lastApplied[1] == 1)

        // Once S3 receives the term-4 entry, index 3 is committed and index 2 with it.
        cluster.heal()
        cluster.isolate(4)
        cluster.isolate(5)
        cluster.tick(1)
        cluster.tick(1)
        #expect(leader.commitIndex == 3)
        for id: NodeID in [1, 2, 3] {
            #expect(cluster[id].commitIndex == 3, "node \(id)")
            #expect(cluster.applied[id]?.map(\.term) == [1, 2, 4], "node \(id)")
        }
    }

    /// The same scenario with the unsafe switch on: the assertion above is what catches it.
    @Test func figure8UnsafeCountingCommitsPreviousTermEntry() {
        let cluster = Self.figure8Cluster(unsafeCounting: true)
        #expect(cluster[1].role == .leader)
        #expect(cluster[1].commitIndex == 2)
    }

    /// Figure 8 (d), played to the end: S1 crashes, and S5, whose log holds term 3 at index 2,
    /// wins term 5 with the votes of S3 and S4. With the safe rule nothing committed is lost;
    /// with counting, the index-2 entry S1 "committed" is missing from the new leader's log.
    @Test(arguments: [false, true])
    func figure8NewLeaderWithoutTheCountedEntry(unsafeCounting: Bool) {
        let cluster = Self.figure8Cluster(unsafeCounting: unsafeCounting)
        let committedBeforeCrash = cluster[1].commitIndex
        cluster.crash(1)
        cluster.heal()
        // S5's appends would make S2 and S3 overwrite index 2; the election alone is the point.
        cluster.drop { $0.from == 5 && $0.type == .append }
        // Let the followers' leader lease run out so that they listen to S5.
        for id: NodeID in [2, 3, 4] { cluster.tick(id, times: cluster.configurations[id]!.electionTimeoutTicks, stabilizing: false) }
        for _ in 0..<3 where cluster[5].role != .leader { cluster.elect(5) }
        #expect(cluster[5].role == .leader)
        #expect(cluster[5].term(at: 2) == 3)
        if unsafeCounting {
            // Leader completeness is broken: index 2 (term 2) was committed, the new leader lacks it.
            #expect(committedBeforeCrash == 2)
        } else {
            #expect(committedBeforeCrash == 1)
        }
    }

    /// Builds Figure 8 (c): S1 [1,2], S2 [1,2], S3 [1], S4 [1], S5 [1,3]; S4 and S5 are
    /// unreachable, S1 wins term 4, and S3 receives index 2 but never the term-4 entry at 3.
    static func figure8Cluster(unsafeCounting: Bool) -> TestCluster {
        let membership = Membership(voters: Array(1...5))
        let logs: [NodeID: [UInt64]] = [1: [1, 2], 2: [1, 2], 3: [1], 4: [1], 5: [1, 3]]
        var storages: [NodeID: MemoryStorage] = [:]
        for (id, terms) in logs {
            storages[id] = TestCluster.storage(membership: membership, terms: terms, hardState: HardState(term: 3, commit: 1))
        }
        let cluster = TestCluster(storages: storages) {
            $0.messageBytesMax = 1  // one entry per append
            $0.unsafeTesting.commitPreviousTermEntriesByCounting = unsafeCounting
        }
        cluster.isolate(4)
        cluster.isolate(5)
        // Drop appends carrying index 3 to S3 once it holds index 2.
        cluster.drop { [unowned cluster] message in
            message.type == .append && message.to == 3 && message.entries.contains { $0.index == 3 } && cluster[3].lastIndex >= 2
        }
        cluster.elect(1)
        return cluster
    }

    @Test func electionRestrictionRejectsOutOfDateCandidate() {
        let membership = Membership(voters: [1, 2, 3])
        let cluster = TestCluster(storages: [
            1: TestCluster.storage(membership: membership, terms: [1, 1, 2], hardState: HardState(term: 2)),
            2: TestCluster.storage(membership: membership, terms: [1, 1, 2], hardState: HardState(term: 2)),
            // Longer, but its last term is older.
            3: TestCluster.storage(membership: membership, terms: [1, 1, 1, 1], hardState: HardState(term: 2)),
        ]) { $0.preVote = false }
        cluster.elect(3)
        #expect(cluster[3].role != .leader)
        let answers = cluster.sent(.requestVoteResponse, to: 3)
        #expect(answers.count == 2)
        #expect(answers.allSatisfy { $0.reject })
        // The voters moved to the candidate's term but kept their vote.
        for id: NodeID in [1, 2] {
            #expect(cluster[id].term == 3)
            #expect(cluster[id].vote == noNode)
        }
        // An up-to-date candidate wins the next term.
        cluster.elect(1)
        #expect(cluster[1].role == .leader)
        #expect(cluster[1].term == 4)
        #expect(cluster.logTerms(3) == [1, 1, 2, 4])
    }

    /// With the restriction switched off the out-of-date candidate wins: the assertions above are what catch it.
    @Test func electionRestrictionSwitchedOffLetsOutOfDateCandidateWin() {
        let membership = Membership(voters: [1, 2, 3])
        let cluster = TestCluster(storages: [
            1: TestCluster.storage(membership: membership, terms: [1, 1, 2], hardState: HardState(term: 2)),
            2: TestCluster.storage(membership: membership, terms: [1, 1, 2], hardState: HardState(term: 2)),
            3: TestCluster.storage(membership: membership, terms: [1, 1, 1, 1], hardState: HardState(term: 2)),
        ]) {
            $0.preVote = false
            $0.unsafeTesting.skipElectionRestriction = true
        }
        cluster.elect(3)
        #expect(cluster[3].role == .leader)
    }

    @Test func electionRestrictionComparesLastTermBeforeLength() {
        let storage = TestCluster.storage(membership: Membership(voters: [1, 2, 3]), terms: [1, 2, 2], hardState: HardState(term: 2))
        let node = try! RaftNode(configuration: TestCluster.defaultConfiguration(id: 1, seed: 1), storage: storage)
        // Longer log with an older last term: refused.
        node.step(Message(type: .requestVote, from: 2, to: 1, term: 3, logTerm: 1, index: 9))
        // Same last term, shorter: refused.
        node.step(Message(type: .requestVote, from: 3, to: 1, term: 4, logTerm: 2, index: 2))
        // Same last term, same length: granted.
        node.step(Message(type: .requestVote, from: 2, to: 1, term: 5, logTerm: 2, index: 3))
        let answers = node.ready().messagesAfterPersist.filter { $0.type == .requestVoteResponse }
        #expect(answers.map(\.reject) == [true, true, false])
        #expect(answers.map(\.term) == [3, 4, 5])
        #expect(node.vote == 2)
        #expect(node.term == 5)
    }

    @Test func votePersistsAcrossRestart() {
        let cluster = TestCluster(voters: 3) { $0.preVote = false }
        cluster.cut(1, 3)
        cluster.elect(1)
        #expect(cluster[1].role == .leader)
        #expect(cluster[2].vote == 1)
        #expect(cluster.storages[2]!.state.hardState.vote == 1)
        #expect(cluster.storages[2]!.state.hardState.term == 2)

        cluster.crash(2)
        cluster.restart(2)
        #expect(cluster[2].term == 2)
        #expect(cluster[2].vote == 1)
        #expect(cluster[2].leader == noNode)

        // Node 3 never heard of term 2 and campaigns for it: node 2 must refuse.
        cluster.isolate(1)
        cluster.elect(3)
        #expect(cluster[3].term == 2)
        let answers = cluster.sent(.requestVoteResponse, from: 2, to: 3)
        #expect(answers.count == 1)
        #expect(answers.first?.reject == true)
        #expect(cluster[3].role == .candidate)
        #expect(cluster[2].vote == 1)
    }
}
