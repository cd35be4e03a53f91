@testable import Raft
import Testing

@Suite struct MembershipTests {
    static let initial = Membership(voters: [1, 2, 3])

    /// A three-node cluster led by node 1, plus node 4 started with the cluster's bootstrap membership.
    static func clusterWithNewNode(configure: @escaping (inout Configuration) -> Void = { _ in }) -> TestCluster {
        let cluster = TestCluster(voters: 3, configure: configure)
        cluster.elect(1)
        cluster.addNode(4, storage: MemoryStorage(bootstrap: initial))
        return cluster
    }

    @Test func addedLearnerReceivesEntriesButCannotCampaign() throws {
        let cluster = Self.clusterWithNewNode()
        let outcome = try cluster[1].proposeMembershipChange(MembershipChange(.addLearner, node: 4, context: [0xAB]))
        #expect(outcome == .appended(index: 5, term: 2))
        // The change takes effect at the leader as soon as it is appended.
        #expect(cluster[1].membership == Membership(voters: [1, 2, 3], learners: [4]))
        #expect(cluster[1].membershipIndex == 5)
        cluster.stabilize()
        for id in cluster.ids {
            #expect(cluster[id].membership == Membership(voters: [1, 2, 3], learners: [4]), "node \(id)")
        }
        // Node 4 applied the bootstrap entries (one per initial voter), then its own addition.
        #expect(cluster.applied[4]?.filter { $0.kind == .membershipChange }.count == 4)
        let changeEntry = try #require(cluster.applied[4]?.last { $0.kind == .membershipChange })
        #expect(MembershipChange.decode(changeEntry.data) == MembershipChange(.addLearner, node: 4, context: [0xAB]))
        cluster.propose(1, [5])
        #expect(cluster.appliedData(4) == [[5]])
        #expect(cluster.logTerms(4) == cluster.logTerms(1))
        #expect(cluster[4].isPromotable == false)
        // A learner never times out into a campaign.
        cluster.tick(4, times: 100)
        #expect(cluster[4].role == .follower)
        #expect(cluster[4].term == 2)
        #expect(cluster.sent(.requestPreVote, from: 4).isEmpty)
        #expect(cluster.sent(.requestVote, from: 4).isEmpty)
    }

    @Test func learnerVoteIsNotCounted() {
        let cluster = TestCluster(voters: 2, learners: [3]) { $0.preVote = false }
        cluster.isolate(2)
        cluster.elect(1)
        #expect(cluster[1].role == .candidate)
        // Vote requests go to voters only.
        #expect(cluster.sent(.requestVote, from: 1).map(\.to) == [2])
        // A grant from the learner does not make a majority ...
        cluster[1].step(Message(type: .requestVoteResponse, from: 3, to: 1, term: 2))
        #expect(cluster[1].role == .candidate)
        // ... one from the other voter does.
        cluster[1].step(Message(type: .requestVoteResponse, from: 2, to: 1, term: 2))
        #expect(cluster[1].role == .leader)
    }

    @Test func learnerPromotedOnlyAfterCatchingUp() throws {
        let cluster = Self.clusterWithNewNode { $0.learnerPromotionLagMax = 2 }
        cluster.isolate(4)
        try cluster[1].proposeMembershipChange(MembershipChange(.addLearner, node: 4))
        cluster.stabilize()
        for value: UInt8 in 1...5 { cluster.propose(1, [value]) }
        #expect(cluster[1].lastIndex == 10)
        #expect(throws: ProposalError.learnerNotCaughtUp(node: 4, lagEntries: 10)) {
            try cluster[1].proposeMembershipChange(MembershipChange(.promoteLearner, node: 4))
        }
        cluster.heal()
        cluster.tick(1)
        #expect(cluster[1].progress[4]?.match == 10)
        try cluster[1].proposeMembershipChange(MembershipChange(.promoteLearner, node: 4))
        cluster.stabilize()
        for id in cluster.ids {
            #expect(cluster[id].membership == Membership(voters: [1, 2, 3, 4]), "node \(id)")
        }
        #expect(cluster[4].isPromotable)
        // Four voters: the quorum is three, and node 4 counts toward it.
        cluster.isolate(2)
        cluster.isolate(3)
        cluster.propose(1, [6])
        #expect(cluster[1].commitIndex == 11)
        cluster.heal()
        cluster.isolate(3)
        cluster.tick(1)
        #expect(cluster[1].commitIndex == 12)
    }

    @Test func addVoterDirectly() throws {
        let cluster = Self.clusterWithNewNode()
        try cluster[1].proposeMembershipChange(MembershipChange(.addVoter, node: 4))
        cluster.stabilize()
        for id in cluster.ids { #expect(cluster[id].membership == Membership(voters: [1, 2, 3, 4]), "node \(id)") }
        #expect(cluster.logTerms(4) == [1, 1, 1, 2, 2])
    }

    /// A membership takes effect when appended, so the leader stops replicating to a removed
    /// follower at once: the removed node never learns of its removal (thesis 4.2.3). It times out
    /// and pre-campaigns, but the lease and its out-of-date log keep it from disturbing anyone.
    @Test func removedFollowerStopsParticipating() throws {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        try cluster[1].proposeMembershipChange(MembershipChange(.removeNode, node: 3))
        cluster.stabilize()
        for id: NodeID in [1, 2] { #expect(cluster[id].membership == Membership(voters: [1, 2]), "node \(id)") }
        #expect(cluster[1].progress[3] == nil)
        #expect(cluster[1].commitIndex == 5)
        cluster.clearRecords()
        cluster.propose(1, [1])
        #expect(cluster.sent.filter { $0.to == 3 }.isEmpty)
        // Two voters left: leader and node 2 commit alone.
        #expect(cluster[1].commitIndex == 6)
        #expect(cluster[3].lastIndex == 4)
        cluster.tickAll(times: 50)
        #expect(cluster.leaders == [1])
        #expect(cluster[1].term == 2)
        #expect(cluster[2].term == 2)
        #expect(cluster[2].leader == 1)
        #expect(cluster.sent(.requestVote, from: 3).isEmpty)
        #expect(cluster.sent(.requestPreVoteResponse, to: 3).allSatisfy { $0.reject })
    }

    @Test func removedLeaderStepsDownOnceRemovalCommits() throws {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        try cluster[1].proposeMembershipChange(MembershipChange(.removeNode, node: 1))
        // Until the change commits it keeps leading (and replicating it).
        #expect(cluster[1].role == .leader)
        #expect(cluster[1].membership == Membership(voters: [2, 3]))
        cluster.stabilize()
        #expect(cluster[1].role == .follower)
        #expect(cluster[1].commitIndex == 5)
        #expect(cluster.tickAll(until: { cluster.leaders.contains { $0 != 1 } }, maxTicks: 60))
        let newLeader = try #require(cluster.leaders.first)
        #expect(cluster.leaders.count == 1)
        #expect([2, 3].contains(newLeader))
        #expect(cluster[newLeader].term == 3)
        cluster.propose(newLeader, [7])
        for id: NodeID in [2, 3] { #expect(cluster.appliedData(id) == [[7]], "node \(id)") }
        #expect(cluster[1].role == .follower)
    }

    @Test func onlyOneMembershipChangeInFlight() throws {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.isolate(2)
        cluster.isolate(3)
        try cluster[1].proposeMembershipChange(MembershipChange(.addLearner, node: 4))
        cluster.stabilize()
        #expect(throws: ProposalError.membershipChangeInProgress(index: 5)) {
            try cluster[1].proposeMembershipChange(MembershipChange(.addLearner, node: 5))
        }
        cluster.heal()
        cluster.tick(1)
        #expect(cluster[1].commitIndex == 5)
        #expect(throws: Never.self) { try cluster[1].proposeMembershipChange(MembershipChange(.addLearner, node: 5)) }
    }

    @Test func leaderNotReadyBeforeItsTermCommits() throws {
        let cluster = TestCluster(voters: 3)
        cluster.drop(.append)
        cluster.elect(1)
        #expect(cluster[1].role == .leader)
        #expect(cluster[1].commitIndex == 3)
        #expect(throws: ProposalError.leaderNotReady) {
            try cluster[1].proposeMembershipChange(MembershipChange(.addLearner, node: 4))
        }
        cluster.heal()
        cluster.tick(1)
        #expect(cluster[1].commitIndex == 4)
        #expect(throws: Never.self) { try cluster[1].proposeMembershipChange(MembershipChange(.addLearner, node: 4)) }
    }

    @Test func invalidMembershipChangesAreRefused() {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        let leader = cluster[1]
        #expect(throws: ProposalError.invalidMembershipChange(.alreadyVoter(2))) {
            try leader.proposeMembershipChange(MembershipChange(.addVoter, node: 2))
        }
        #expect(throws: ProposalError.invalidMembershipChange(.alreadyVoter(2))) {
            try leader.proposeMembershipChange(MembershipChange(.addLearner, node: 2))
        }
        #expect(throws: ProposalError.invalidMembershipChange(.notLearner(2))) {
            try leader.proposeMembershipChange(MembershipChange(.promoteLearner, node: 2))
        }
        #expect(throws: ProposalError.invalidMembershipChange(.notMember(9))) {
            try leader.proposeMembershipChange(MembershipChange(.removeNode, node: 9))
        }
        #expect(leader.lastIndex == 4)

        let single = TestCluster(voters: 1)
        single.elect(1)
        #expect(throws: ProposalError.invalidMembershipChange(.wouldRemoveLastVoter)) {
            try single[1].proposeMembershipChange(MembershipChange(.removeNode, node: 1))
        }
    }

    @Test func membershipApplyingRules() throws {
        let membership = Membership(voters: [3, 1, 1], learners: [4, 1])
        #expect(membership.voters == [1, 3])
        #expect(membership.learners == [4])
        #expect(membership.quorum == 2)
        #expect(try membership.applying(MembershipChange(.promoteLearner, node: 4)).get() == Membership(voters: [1, 3, 4]))
        #expect(try membership.applying(MembershipChange(.addVoter, node: 4)).get() == Membership(voters: [1, 3, 4]))
        #expect(try membership.applying(MembershipChange(.removeNode, node: 4)).get() == Membership(voters: [1, 3]))
        #expect(throws: MembershipChangeRejection.alreadyLearner(4)) {
            try membership.applying(MembershipChange(.addLearner, node: 4)).get()
        }
        #expect(Membership(voters: [1, 2, 3, 4]).quorum == 3)
    }

    /// A node joins the way the simulator adds one: started with an empty membership, it learns the
    /// configuration from the leader. This works because the bootstrap membership is in the log
    /// (one committed `addVoter` entry per initial member), so replaying the log's membership
    /// changes onto an empty membership gives the cluster's.
    @Test func joiningNodeWithEmptyBootstrapLearnsClusterMembership() throws {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.addNode(4, storage: MemoryStorage(bootstrap: Membership()))
        try cluster[1].proposeMembershipChange(MembershipChange(.addLearner, node: 4))
        cluster.stabilize()
        #expect(cluster.logTerms(4) == cluster.logTerms(1))
        #expect(cluster[4].membership == cluster[1].membership)
    }

    /// Once promoted, the joiner knows the real voters, so cut off from them it cannot elect itself
    /// alone (it did, before the bootstrap membership was put into the log).
    @Test func promotedJoinerCannotElectItselfAlone() throws {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.addNode(4, storage: MemoryStorage(bootstrap: Membership()))
        try cluster[1].proposeMembershipChange(MembershipChange(.addLearner, node: 4))
        cluster.stabilize()
        try cluster[1].proposeMembershipChange(MembershipChange(.promoteLearner, node: 4))
        cluster.stabilize()
        cluster.isolate(4)
        cluster.tick(4, times: 40)
        #expect(cluster[4].role != .leader)
    }
}
