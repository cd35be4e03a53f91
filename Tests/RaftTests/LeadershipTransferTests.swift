@testable import Raft
import Testing

@Suite struct LeadershipTransferTests {
    @Test func transferToUpToDateFollowerElectsItInNextTerm() throws {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.clearRecords()
        try cluster[1].transferLeadership(to: 2)
        #expect(cluster[1].leadTransferee == 2)
        cluster.stabilize()
        #expect(cluster.leaders == [2])
        #expect(cluster[2].term == 3)
        #expect(cluster.delivered(.timeoutNow, from: 1, to: 2).count == 1)
        // The transferee skips the pre-vote and its request is marked as a transfer, so leases don't block it.
        #expect(cluster.sent(.requestPreVote).isEmpty)
        #expect(cluster.sent(.requestVote, from: 2).allSatisfy { $0.context == transferCampaignContext })
        for id in cluster.ids {
            #expect(cluster[id].leader == 2, "node \(id)")
            #expect(cluster[id].term == 3, "node \(id)")
        }
        #expect(cluster[1].leadTransferee == noNode)
    }

    @Test func transferToLaggingFollowerCatchesItUpFirst() throws {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.isolate(3)
        for value: UInt8 in 1...3 { cluster.propose(1, [value]) }
        cluster.heal()
        cluster.clearRecords()
        try cluster[1].transferLeadership(to: 3)
        cluster.stabilize()
        if cluster.leaders != [3] { cluster.tick(1) }
        #expect(cluster.leaders == [3])
        #expect(cluster[3].term == 3)
        // The timeout-now went out only once node 3 had acknowledged the leader's last entry.
        let timeoutAt = try #require(cluster.delivered.firstIndex { $0.type == .timeoutNow && $0.to == 3 })
        let caughtUpAt = try #require(cluster.delivered.firstIndex { $0.type == .appendResponse && $0.from == 3 && !$0.reject && $0.index == 7 })
        #expect(caughtUpAt < timeoutAt)
        #expect(cluster.delivered(.timeoutNow).count == 1)
        // Nothing committed was lost.
        cluster.stabilize()
        for id in cluster.ids { #expect(cluster.appliedData(id) == [[1], [2], [3]], "node \(id)") }
    }

    @Test func proposalsAreRefusedDuringTransfer() throws {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.isolate(3)
        try cluster[1].transferLeadership(to: 3)
        cluster.stabilize()
        #expect(throws: ProposalError.leadershipTransferInProgress(to: 3)) { try cluster[1].propose([1]) }
        #expect(throws: ProposalError.leadershipTransferInProgress(to: 3)) {
            try cluster[1].proposeMembershipChange(MembershipChange(.addLearner, node: 4))
        }
        // Forwarded proposals are dropped as well.
        _ = try cluster[2].propose([2])
        cluster.stabilize()
        #expect(cluster[1].lastIndex == 4)
    }

    @Test func transferIsAbortedAfterElectionTimeoutWhenTargetUnreachable() throws {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.isolate(3)
        try cluster[1].transferLeadership(to: 3)
        cluster.tick(1, times: 9)
        #expect(cluster[1].leadTransferee == 3)
        cluster.tick(1)
        #expect(cluster[1].leadTransferee == noNode)
        #expect(cluster[1].role == .leader)
        #expect(cluster[1].term == 2)
        #expect(throws: Never.self) { try cluster[1].propose([1]) }
        cluster.stabilize()
        #expect(cluster.appliedData(2) == [[1]])
    }

    @Test func invalidTransferTargetsAreRefused() {
        let cluster = TestCluster(voters: 2, learners: [3])
        cluster.elect(1)
        #expect(throws: ProposalError.invalidTransferTarget(1)) { try cluster[1].transferLeadership(to: 1) }
        #expect(throws: ProposalError.invalidTransferTarget(3)) { try cluster[1].transferLeadership(to: 3) }
        #expect(throws: ProposalError.invalidTransferTarget(9)) { try cluster[1].transferLeadership(to: 9) }
        #expect(cluster[1].leadTransferee == noNode)
    }

    @Test func followerForwardsTransferRequestToLeader() throws {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        try cluster[3].transferLeadership(to: 3)
        cluster.stabilize()
        #expect(cluster.delivered(.transferLeadership, from: 3, to: 1).first?.index == 3)
        #expect(cluster.leaders == [3])
        #expect(cluster[3].term == 3)
    }
}
