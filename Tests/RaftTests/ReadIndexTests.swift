@testable import Raft
import Testing

@Suite struct ReadIndexTests {
    @Test func leaderAnswersReadOnlyAfterHeartbeatRound() throws {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.propose(1, [1])
        cluster.clearRecords()
        try cluster[1].readIndex(context: 42)
        // The leader's Ready carries heartbeats, not the answer.
        cluster.processReadies()
        #expect(cluster.readStates[1, default: []].isEmpty)
        #expect(cluster.sent(.heartbeat, from: 1).count == 2)
        #expect(cluster.sent(.heartbeat, from: 1).allSatisfy { $0.context > 0 })
        // Heartbeats delivered; the followers answer.
        cluster.deliverPending()
        cluster.processReadies()
        #expect(cluster.readStates[1, default: []].isEmpty)
        // Answers delivered: a majority confirmed leadership.
        cluster.deliverPending()
        cluster.processReadies()
        #expect(cluster.readStates[1] == [ReadState(index: 5, context: 42)])
    }

    /// With confirmation switched off the answer comes in the very first Ready: the test above catches it.
    @Test func skippingConfirmationAnswersAtOnce() throws {
        let cluster = TestCluster(voters: 3) { $0.unsafeTesting.skipReadIndexConfirmation = true }
        cluster.elect(1)
        try cluster[1].readIndex(context: 42)
        cluster.processReadies()
        #expect(cluster.readStates[1] == [ReadState(index: 4, context: 42)])
    }

    @Test func readIsNotAnsweredWithoutHeartbeatResponses() throws {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.drop(.heartbeatResponse)
        try cluster[1].readIndex(context: 1)
        cluster.stabilize()
        cluster.tick(1, times: 3)
        #expect(cluster.readStates[1, default: []].isEmpty)
        cluster.heal()
        cluster.tick(1)
        #expect(cluster.readStates[1] == [ReadState(index: 4, context: 1)])
    }

    @Test func followerReadIndexIsAnsweredViaLeader() throws {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.propose(1, [1])
        cluster.propose(1, [2])
        cluster.clearRecords()
        try cluster[2].readIndex(context: 7)
        cluster.stabilize()
        #expect(cluster.delivered(.readIndex, from: 2, to: 1).map(\.context) == [7])
        #expect(cluster.delivered(.readIndexResponse, from: 1, to: 2).map(\.index) == [6])
        #expect(cluster.readStates[2] == [ReadState(index: 6, context: 7)])
        #expect(cluster.readStates[1, default: []].isEmpty)
    }

    @Test func deposedIsolatedLeaderDoesNotServeReads() throws {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.isolate(1)
        // Nodes 2 and 3 elect a new leader; node 1 does not tick, so it still believes it leads.
        for _ in 0..<60 where !cluster.leaders.contains(where: { $0 != 1 }) {
            cluster[2].tick()
            cluster[3].tick()
            cluster.stabilize()
        }
        let newLeader = try #require(cluster.leaders.first { $0 != 1 })
        cluster.propose(newLeader, [9])
        #expect(cluster[1].role == .leader)
        try cluster[1].readIndex(context: 9)
        cluster.stabilize()
        cluster.tick(1, times: 3)
        #expect(cluster.readStates[1, default: []].isEmpty)
        cluster.heal()
        cluster.tick(1, times: 3)
        #expect(cluster[1].role == .follower)
        #expect(cluster.readStates[1, default: []].isEmpty)
        // The new leader serves reads, at its commit index.
        try cluster[newLeader].readIndex(context: 10)
        cluster.stabilize()
        #expect(cluster.readStates[newLeader] == [ReadState(index: 6, context: 10)])
    }

    @Test func newLeaderDelaysReadsUntilItsNoOpCommits() throws {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.propose(1, [1])
        // Node 2 takes over, but its appends (and so its no-op) do not get through yet.
        cluster.drop(.append)
        try cluster[1].transferLeadership(to: 2)
        cluster.stabilize()
        #expect(cluster.leaders == [2])
        #expect(cluster[2].commitIndex == 5)
        #expect(cluster[2].lastIndex == 6)
        try cluster[2].readIndex(context: 5)
        cluster.stabilize()
        cluster.tick(2, times: 3)
        // Heartbeats went round, but the commit index of a new leader is not known to be current.
        #expect(cluster.delivered(.heartbeatResponse, to: 2).count >= 2)
        #expect(cluster.readStates[2, default: []].isEmpty)
        cluster.heal()
        cluster.tick(2)
        #expect(cluster[2].commitIndex == 6)
        #expect(cluster.readStates[2] == [ReadState(index: 6, context: 5)])
    }

    @Test func singleNodeAnswersReadAtOnce() throws {
        let cluster = TestCluster(voters: 1)
        cluster.elect(1)
        try cluster[1].readIndex(context: 3)
        cluster.stabilize()
        #expect(cluster.readStates[1] == [ReadState(index: 2, context: 3)])
        #expect(cluster.sent(.heartbeat).isEmpty)
    }

    @Test func pendingReadsAreBounded() throws {
        let cluster = TestCluster(voters: 3) { $0.pendingReadsMax = 2 }
        cluster.elect(1)
        cluster.isolate(2)
        cluster.isolate(3)
        try cluster[1].readIndex(context: 1)
        try cluster[1].readIndex(context: 2)
        #expect(throws: ProposalError.tooManyPendingReads(limit: 2)) { try cluster[1].readIndex(context: 3) }
        // One heartbeat round confirms both.
        cluster.heal()
        cluster.tick(1)
        #expect(cluster.readStates[1] == [ReadState(index: 4, context: 1), ReadState(index: 4, context: 2)])
    }
}
