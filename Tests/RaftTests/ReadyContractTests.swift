@testable import Raft
import Testing

/// The split of a `Ready` into what may go out before persisting and what must wait, and
/// robustness against the network's reordering and duplication.
@Suite struct ReadyContractTests {
    @Test func readySeparatesMessagesThatNeedDurability() throws {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        _ = try cluster[1].propose([1])
        // The leader may send its appends while it persists the entry.
        let leaderReady = cluster[1].ready()
        #expect(leaderReady.entries.map(\.index) == [5])
        #expect(leaderReady.mustSync)
        #expect(leaderReady.messages.map(\.type) == [.append, .append])
        #expect(leaderReady.messagesAfterPersist.isEmpty)
        // Nothing is committed before the leader's own write is acknowledged.
        #expect(leaderReady.committedEntries.isEmpty)
        for message in leaderReady.messages { cluster[message.to].step(message) }
        cluster.storages[1]!.append(leaderReady.entries)
        cluster[1].advance(leaderReady)
        // A follower acknowledges only after persisting.
        let followerReady = cluster[2].ready()
        #expect(followerReady.entries.map(\.index) == [5])
        #expect(followerReady.messages.isEmpty)
        #expect(followerReady.messagesAfterPersist.map(\.type) == [.appendResponse])
        #expect(followerReady.mustSync)
        cluster.storages[2]!.append(followerReady.entries)
        cluster[2].advance(followerReady)
        cluster[1].step(followerReady.messagesAfterPersist[0])
        #expect(cluster[1].commitIndex == 5)
        // A commit-index change alone needs no fsync.
        let commitReady = cluster[1].ready()
        #expect(commitReady.hardState?.commit == 5)
        #expect(commitReady.entries.isEmpty)
        #expect(commitReady.mustSync == false)
        #expect(commitReady.committedEntries.map(\.index) == [5])
        cluster[1].advance(commitReady)
    }

    @Test func voteRequestsAndVotesWaitForPersistence() {
        let cluster = TestCluster(voters: 3) { $0.preVote = false }
        cluster[1].campaign()
        let candidateReady = cluster[1].ready()
        #expect(candidateReady.hardState == HardState(term: 2, vote: 1, commit: 3))
        #expect(candidateReady.mustSync)
        #expect(candidateReady.messages.isEmpty)
        #expect(candidateReady.messagesAfterPersist.map(\.type) == [.requestVote, .requestVote])
        cluster[1].advance(candidateReady)
        cluster[2].step(candidateReady.messagesAfterPersist[0])
        let voterReady = cluster[2].ready()
        #expect(voterReady.hardState == HardState(term: 2, vote: 1, commit: 3))
        #expect(voterReady.mustSync)
        #expect(voterReady.messagesAfterPersist.map(\.type) == [.requestVoteResponse])
        #expect(voterReady.messages.isEmpty)
        cluster[2].advance(voterReady)
    }

    @Test func staleAndDuplicatedAppendsDoNotTruncateTheLog() throws {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.clearRecords()
        cluster.propose(1, [1])
        cluster.propose(1, [2])
        let appends = cluster.delivered(.append, to: 2).filter { !$0.entries.isEmpty }
        #expect(appends.map { $0.entries.map(\.index) } == [[5], [6]])
        let before = cluster.logTerms(2)
        // Deliver the older append again, after the newer one.
        cluster[2].step(appends[0])
        cluster[2].step(appends[1])
        cluster[2].step(appends[0])
        cluster.stabilize()
        #expect(cluster.logTerms(2) == before)
        #expect(cluster[2].lastIndex == 6)
        #expect(cluster.appliedData(2) == [[1], [2]])
        // A stale acknowledgement does not move the leader's view backwards.
        #expect(cluster[1].progress[2]?.match == 6)
        cluster[1].step(Message(type: .appendResponse, from: 2, to: 1, term: 2, index: 5))
        #expect(cluster[1].progress[2]?.match == 6)
    }

    @Test func messagesFromOlderTermsAreIgnored() {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.propose(1, [1])
        let log = cluster.logTerms(2)
        // An append from a leader of term 1 that never existed.
        cluster[2].step(Message(type: .append, from: 3, to: 2, term: 1, logTerm: 1, index: 3, entries: [Entry(term: 1, index: 4, data: [9])], commit: 4))
        cluster.stabilize()
        #expect(cluster.logTerms(2) == log)
        #expect(cluster[2].leader == 1)
        #expect(cluster[2].term == 2)
        // The stale sender is told about the newer term.
        #expect(cluster.delivered(.appendResponse, from: 2, to: 3).last?.term == 2)
    }

    @Test func uncommittedMembershipChangeIsRolledBackOnConflict() throws {
        let cluster = TestCluster(voters: 5)
        cluster.elect(1)
        cluster.isolate(3)
        cluster.isolate(4)
        cluster.isolate(5)
        try cluster[1].proposeMembershipChange(MembershipChange(.addLearner, node: 6))
        cluster.stabilize()
        #expect(cluster[2].membership == Membership(voters: [1, 2, 3, 4, 5], learners: [6]))
        #expect(cluster[2].membershipIndex == 7)
        #expect(cluster[1].commitIndex == 6)
        // Nodes 3, 4 and 5 elect a leader of their own, whose no-op takes index 7.
        cluster.heal()
        cluster.isolate(1)
        cluster.isolate(2)
        for _ in 0..<100 where cluster.leaders.allSatisfy({ $0 == 1 }) {
            for id: NodeID in [3, 4, 5] { cluster[id].tick() }
            cluster.stabilize()
        }
        let newLeader = try #require(cluster.leaders.first { $0 != 1 })
        #expect(cluster[newLeader].term == 3)
        cluster.heal()
        cluster.tick(newLeader, times: 2)
        for id: NodeID in [1, 2] {
            #expect(cluster[id].term(at: 7) == 3, "node \(id)")
            #expect(cluster[id].membership == Membership(voters: [1, 2, 3, 4, 5]), "node \(id)")
            #expect(cluster[id].membershipIndex == 5, "node \(id)")
        }
        #expect(cluster[1].role == .follower)
    }

    @Test func joiningNodeLearnsMembershipFromSnapshot() throws {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        for value: UInt8 in 1...3 { cluster.propose(1, [value]) }
        let storage = cluster.storages[1]!
        try storage.createSnapshot(index: 7, membership: try #require(cluster[1].membership(at: 7)), data: [7])
        try storage.compact(upTo: 7)
        cluster.addNode(4, storage: MemoryStorage())
        #expect(cluster[4].membership.isEmpty)
        try cluster[1].proposeMembershipChange(MembershipChange(.addLearner, node: 4))
        cluster.stabilize()
        #expect(cluster.delivered(.snapshot, to: 4).count == 1)
        #expect(cluster[4].membership == Membership(voters: [1, 2, 3], learners: [4]))
        #expect(cluster[4].lastIndex == 8)
        #expect(cluster[4].commitIndex == 8)
        #expect(cluster.lastApplied[4] == 8)
    }

    @Test func reportUnreachableStopsPipelining() {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        #expect(cluster[1].progress[2]?.state == .replicate)
        cluster[1].reportUnreachable(2)
        #expect(cluster[1].progress[2]?.state == .probe)
        cluster.propose(1, [1])
        #expect(cluster[1].progress[2]?.state == .replicate)
        #expect(cluster.appliedData(2) == [[1]])
    }
}
