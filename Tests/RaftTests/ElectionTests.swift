@testable import Raft
import Testing

@Suite struct ElectionTests {
    @Test func singleNodeBecomesLeaderAfterElectionTimeout() {
        let cluster = TestCluster(voters: 1)
        // The randomized timeout lies in [10, 20): not before 10 ticks ...
        cluster.tick(1, times: 9)
        #expect(cluster[1].role == .follower)
        // ... and by 20 at the latest.
        cluster.tick(1, times: 11)
        #expect(cluster[1].role == .leader)
        // Bootstrap leaves the node in term 1 with its membership entry at index 1.
        #expect(cluster[1].term == 2)
        // Its no-op is committed by its own durable write alone.
        #expect(cluster[1].commitIndex == 2)
        #expect(cluster.applied[1]?.map(\.index) == [1, 2])
        #expect(cluster.applied[1]?.map(\.kind) == [.membershipChange, .normal])
        #expect(cluster.softStates[1]?.last == SoftState(leader: 1, role: .leader))
    }

    @Test func threeNodeElectionElectsExactlyOneLeader() throws {
        let cluster = TestCluster(voters: 3)
        #expect(cluster.tickAll(until: { cluster.leaders.count == 1 }, maxTicks: 40))
        let leader = try #require(cluster.leaders.first)
        let term = cluster[leader].term
        for id in cluster.ids {
            #expect(cluster[id].term == term)
            #expect(cluster[id].leader == leader)
            // Three bootstrap entries, then the leader's no-op.
            #expect(cluster[id].commitIndex == 4)
        }
        // Without failures nothing changes however long it runs.
        cluster.tickAll(times: 100)
        #expect(cluster.leaders == [leader])
        #expect(cluster[leader].term == term)
    }

    @Test func explicitCampaignElectsCandidateInTermOne() {
        let cluster = TestCluster(voters: 3)
        cluster.elect(2)
        #expect(cluster.leaders == [2])
        #expect(cluster[2].term == 2)
        #expect(cluster[1].vote == 2)
        #expect(cluster[3].vote == 2)
        #expect(cluster.storages[1]!.state.hardState == HardState(term: 2, vote: 2, commit: 4))
        #expect(cluster.logTerms(3) == [1, 1, 1, 2])
    }

    @Test func splitVoteIsResolvedInALaterTerm() throws {
        let cluster = TestCluster(voters: 3)
        // Everybody campaigns at once: every pre-vote succeeds, every node votes for itself.
        for id in cluster.ids { cluster[id].campaign() }
        cluster.stabilize()
        #expect(cluster.leaders.isEmpty)
        for id in cluster.ids {
            #expect(cluster[id].term == 2)
            #expect(cluster[id].vote == id)
            #expect(cluster[id].role == .follower)
        }
        // Randomized timeouts break the tie.
        #expect(cluster.tickAll(until: { cluster.leaders.count == 1 }, maxTicks: 60))
        let leader = try #require(cluster.leaders.first)
        #expect(cluster[leader].term >= 3)
        for id in cluster.ids { #expect(cluster[id].leader == leader) }
    }

    @Test func preVoteKeepsRejoiningNodeFromDisruptingLeader() {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.isolate(3)
        cluster.tickAll(times: 50)
        // Node 3 timed out several times but only ever pre-campaigned.
        #expect(cluster[3].term == 2)
        #expect(cluster.sent(.requestPreVote, from: 3).count >= 2)
        #expect(cluster.sent(.requestVote, from: 3).isEmpty)
        cluster.heal()
        cluster.tickAll(times: 30)
        #expect(cluster.leaders == [1])
        for id in cluster.ids {
            #expect(cluster[id].term == 2, "node \(id)")
            #expect(cluster[id].leader == 1, "node \(id)")
        }
    }

    /// The contrast: without pre-vote (and check-quorum) a rejoining node forces a new term.
    @Test func withoutPreVoteRejoiningNodeRaisesTerm() {
        let cluster = TestCluster(voters: 3) {
            $0.preVote = false
            $0.checkQuorum = false
        }
        cluster.elect(1)
        cluster.isolate(3)
        cluster.tickAll(times: 50)
        #expect(cluster[3].term > 2)
        cluster.heal()
        cluster.tickAll(times: 30)
        #expect(cluster[1].term > 2)
    }

    @Test func checkQuorumMakesIsolatedLeaderStepDown() {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.isolate(1)
        // Within two election timeouts the leader notices it has heard from nobody.
        cluster.tick(1, times: 20)
        #expect(cluster[1].role == .follower)
        #expect(cluster[1].leader == noNode)
        #expect(cluster[1].term == 2)
    }

    @Test func withoutCheckQuorumIsolatedLeaderStaysLeader() {
        let cluster = TestCluster(voters: 3) { $0.checkQuorum = false }
        cluster.elect(1)
        cluster.isolate(1)
        cluster.tick(1, times: 50)
        #expect(cluster[1].role == .leader)
    }

    @Test func followersWithLiveLeaderIgnoreVoteRequests() {
        let cluster = TestCluster(voters: 3)
        // Node 3 skips the pre-vote so that its vote request carries a higher term.
        cluster.addNode(3, storage: MemoryStorage(bootstrap: Membership(voters: [1, 2, 3]))) { $0.preVote = false }
        cluster.elect(1)
        cluster.tickAll(times: 3)
        cluster.clearRecords()
        cluster[3].campaign()
        cluster.stabilize()
        #expect(cluster[3].role == .candidate)
        #expect(cluster[3].term == 3)
        #expect(cluster.delivered(.requestVote, from: 3).count == 2)
        // Nobody answered, and nobody moved to term 3.
        #expect(cluster.sent(.requestVoteResponse).isEmpty)
        #expect(cluster[1].term == 2)
        #expect(cluster[1].role == .leader)
        #expect(cluster[2].term == 2)
        #expect(cluster[2].vote == 1)
    }

    @Test func followerWithoutLeaderGrantsVoteToHigherTerm() {
        let cluster = TestCluster(voters: 3) { $0.preVote = false }
        cluster.elect(1)
        // Node 2 has not heard from the leader for an election timeout: the lease is over.
        cluster.isolate(1)
        cluster[2].electionElapsed = cluster[2].configuration.electionTimeoutTicks
        cluster.elect(3)
        #expect(cluster[3].role == .leader)
        #expect(cluster[3].term == 3)
        #expect(cluster[2].vote == 3)
    }

    @Test func followersToldTheLeaderIsDownElectWithinHalfATimeout() throws {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.tickAll(times: 2)
        cluster.crash(1)
        // Both survivors see the dead leader's port refuse them.
        cluster[2].reportPeerDown(1)
        cluster[3].reportPeerDown(1)
        #expect(cluster[2].leader == 0 && cluster[3].leader == 0)
        // A new leader by half an election timeout (5 ticks), not the 10 to 20 of a timeout.
        var ticks = 0
        while cluster.leaders.isEmpty && ticks < 5 {
            cluster.tick(2)
            cluster.tick(3)
            ticks += 1
        }
        let leader = try #require(cluster.leaders.first)
        #expect([2, 3].contains(leader))
        #expect(cluster[leader].term == 3)
    }

    @Test func aWrongPeerDownHintChangesNothingWhileTheLeaderLives() {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.tickAll(times: 2)
        // Node 2 wrongly believes the leader is down; node 3 still hears from it and, within its
        // lease, turns the pre-vote away: no term changes, node 2 follows the leader again.
        cluster.isolate(1)
        cluster[2].reportPeerDown(1)
        cluster.tick(2, times: 5)
        #expect(cluster[2].role != .leader)
        cluster.heal()
        cluster.tickAll(times: 3)
        #expect(cluster.leaders == [1])
        #expect(cluster[1].term == 2 && cluster[2].term == 2 && cluster[3].term == 2)
        #expect(cluster[2].leader == 1)
        // A hint about a node that is not the leader, or given to the leader, is ignored.
        cluster[2].reportPeerDown(3)
        cluster[1].reportPeerDown(2)
        #expect(cluster[2].leader == 1 && cluster[1].role == .leader)
    }

    @Test func leaderStepsDownOnHigherTermResponse() {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.isolate(1)
        // The others elect node 2 in term 2.
        #expect(cluster.tickAll(until: { cluster.leaders.contains { $0 != 1 } }, maxTicks: 40))
        let newLeader = cluster.leaders.first { $0 != 1 }!
        cluster.heal()
        // The old leader's heartbeat is answered with the new term.
        cluster.tick(1, times: 1)
        #expect(cluster[1].role == .follower)
        #expect(cluster[1].term == cluster[newLeader].term)
        cluster.tick(newLeader, times: 1)
        #expect(cluster[1].leader == newLeader)
    }

    @Test func learnerNeverCampaigns() {
        let cluster = TestCluster(voters: 2, learners: [3])
        cluster.tick(3, times: 100)
        #expect(cluster[3].role == .follower)
        #expect(cluster[3].term == 1)
        #expect(cluster.sent.filter { $0.from == 3 }.isEmpty)
    }
}
