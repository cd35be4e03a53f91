@testable import Raft
import Testing

@Suite struct ProposalTests {
    @Test func followerForwardsProposalToLeader() throws {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        let outcome = try cluster[2].propose([42])
        #expect(outcome == .forwarded(to: 1))
        cluster.stabilize()
        let forwarded = cluster.delivered(.propose, from: 2, to: 1)
        #expect(forwarded.count == 1)
        #expect(forwarded.first?.entries.map(\.data) == [[42]])
        for id in cluster.ids { #expect(cluster.appliedData(id) == [[42]], "node \(id)") }
        #expect(cluster[1].term(at: 5) == 2)
    }

    @Test func followerRefusesWithNotLeaderWhenForwardingIsOff() {
        let cluster = TestCluster(voters: 3) { $0.forwardProposals = false }
        cluster.elect(1)
        #expect(throws: ProposalError.notLeader(leader: 1)) { try cluster[2].propose([1]) }
        #expect(cluster.sent(.propose).isEmpty)
        #expect(cluster[1].lastIndex == 4)
    }

    @Test func proposalWithoutLeaderFailsWithNoLeader() {
        let cluster = TestCluster(voters: 3)
        #expect(throws: ProposalError.noLeader) { try cluster[1].propose([1]) }
        #expect(throws: ProposalError.noLeader) { try cluster[1].proposeMembershipChange(MembershipChange(.addLearner, node: 4)) }
        #expect(throws: ProposalError.noLeader) { try cluster[1].readIndex(context: 1) }
        #expect(throws: ProposalError.noLeader) { try cluster[1].transferLeadership(to: 2) }
        #expect(cluster.sent.isEmpty)
    }

    @Test func membershipChangeAtFollowerIsRefusedWithLeader() {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        #expect(throws: ProposalError.notLeader(leader: 1)) {
            try cluster[3].proposeMembershipChange(MembershipChange(.addLearner, node: 4))
        }
    }

    @Test func forwardedMembershipChangeEntriesAreIgnored() {
        // Only the leader validates membership changes: a forwarded entry of that kind is dropped.
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        let change = MembershipChange(.addLearner, node: 9)
        cluster[1].step(Message(type: .propose, from: 2, to: 1, term: 2, entries: [Entry(term: 0, index: 0, kind: .membershipChange, data: change.encoded())]))
        cluster.stabilize()
        #expect(cluster[1].lastIndex == 4)
        #expect(cluster[1].membership == Membership(voters: [1, 2, 3]))
    }

    @Test func leaderProposalOutcomeNamesIndexAndTerm() throws {
        let cluster = TestCluster(voters: 3)
        cluster.elect(3)
        let first = try cluster[3].propose([1])
        let second = try cluster[3].propose([2])
        #expect(first == .appended(index: 5, term: 2))
        #expect(second == .appended(index: 6, term: 2))
        cluster.stabilize()
        #expect(cluster.applied[1]?.last == Entry(term: 2, index: 6, data: [2]))
    }
}
