@testable import Raft
import Testing

@Suite struct ReplicationTests {
    static func bytes(_ count: Int, _ value: UInt8 = 7) -> [UInt8] { [UInt8](repeating: value, count: count) }

    @Test func committedEntriesAreAppliedInOrderOnEveryNode() {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        let outcome = cluster.propose(1, [1])
        #expect(outcome == .appended(index: 5, term: 2))
        cluster.propose(1, [2])
        cluster.propose(1, [3])
        for id in cluster.ids {
            #expect(cluster.appliedData(id) == [[1], [2], [3]], "node \(id)")
            #expect(cluster.applied[id]?.map(\.index) == [1, 2, 3, 4, 5, 6, 7], "node \(id)")
            #expect(cluster[id].commitIndex == 7, "node \(id)")
            #expect(cluster.storages[id]!.state.hardState.commit == 7, "node \(id)")
        }
    }

    @Test func commitNeedsAMajority() {
        let cluster = TestCluster(voters: 5)
        cluster.elect(1)
        cluster.isolate(3)
        cluster.isolate(4)
        cluster.isolate(5)
        cluster.propose(1, [9])
        // Leader and node 2 hold index 7: two of five.
        #expect(cluster[2].lastIndex == 7)
        #expect(cluster[1].commitIndex == 6)
        #expect(cluster.appliedData(1).isEmpty)
        cluster.heal()
        cluster.isolate(4)
        cluster.isolate(5)
        cluster.tick(1)
        #expect(cluster[1].commitIndex == 7)
        #expect(cluster.appliedData(1) == [[9]])
    }

    @Test func logConflictResolvedWithFastBackOff() {
        // The Figure 7 leader against follower (f), whose entries 4...11 all conflict.
        let membership = Membership(voters: [1, 2, 3])
        let leaderLog: [UInt64] = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
        let conflicting: [UInt64] = [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]
        let cluster = TestCluster(storages: [
            1: TestCluster.storage(membership: membership, terms: leaderLog, hardState: HardState(term: 7)),
            2: TestCluster.storage(membership: membership, terms: leaderLog, hardState: HardState(term: 7)),
            3: TestCluster.storage(membership: membership, terms: conflicting, hardState: HardState(term: 7)),
        ])
        cluster.elect(1)
        #expect(cluster[1].role == .leader)
        let rejections = cluster.delivered(.appendResponse, from: 3).filter(\.reject)
        let conflictingEntries = 8
        #expect(rejections.count < conflictingEntries)
        // One rejection suffices: the follower's hint (index 10, term 3) lets the leader skip
        // straight to index 3, the last entry of a term not above 3.
        #expect(rejections.count == 1)
        #expect(rejections.first?.rejectHint == 10)
        #expect(rejections.first?.logTerm == 3)
        #expect(cluster.logTerms(3) == leaderLog + [8])
        #expect(cluster.storedTerms(3) == leaderLog + [8])
        #expect(cluster[3].commitIndex == 11)
    }

    @Test func followerLongerLogIsTruncatedToLeaders() {
        let membership = Membership(voters: [1, 2, 3])
        let cluster = TestCluster(storages: [
            1: TestCluster.storage(membership: membership, terms: [1, 2], hardState: HardState(term: 2, commit: 1)),
            2: TestCluster.storage(membership: membership, terms: [1, 2], hardState: HardState(term: 2, commit: 1)),
            3: TestCluster.storage(membership: membership, terms: [1, 1, 1, 1, 1], hardState: HardState(term: 2, commit: 1)),
        ])
        cluster.elect(1)
        #expect(cluster.logTerms(3) == [1, 2, 3])
        #expect(cluster.storedTerms(3) == [1, 2, 3])
        #expect(cluster[3].lastIndex == 3)
    }

    @Test func appendsAreBatchedUpToMessageBytesMax() {
        // 100-byte payloads are 124 bytes each: two fit in 300 bytes, three do not.
        let cluster = TestCluster(voters: 3) { $0.messageBytesMax = 300 }
        cluster.elect(1)
        cluster.isolate(3)
        for value in 0..<10 { cluster.propose(1, Self.bytes(100, UInt8(value))) }
        #expect(cluster[3].lastIndex == 4)
        cluster.heal()
        cluster.clearRecords()
        cluster.tick(1)
        let appends = cluster.delivered(.append, to: 3).filter { !$0.entries.isEmpty }
        #expect(appends.map(\.entries.count) == [2, 2, 2, 2, 2])
        for append in appends {
            #expect(append.entries.reduce(0) { $0 + $1.byteCount } <= 300)
        }
        #expect(cluster.logTerms(3) == cluster.logTerms(1))
        #expect(cluster.appliedData(3).count == 10)
    }

    @Test func oversizedEntryIsStillSentAlone() {
        let cluster = TestCluster(voters: 2) { $0.messageBytesMax = 10 }
        cluster.elect(1)
        cluster.propose(1, Self.bytes(50))
        let appends = cluster.delivered(.append, to: 2).filter { !$0.entries.isEmpty }
        #expect(appends.allSatisfy { $0.entries.count == 1 })
        #expect(cluster.appliedData(2) == [Self.bytes(50)])
    }

    @Test func inflightWindowBoundsAppendsToSilentFollower() {
        let cluster = TestCluster(voters: 3) { $0.inflightMessagesMax = 3 }
        cluster.elect(1)
        #expect(cluster[1].progress[2]?.state == .replicate)
        // Node 2 receives everything but its answers are lost.
        cluster.drop { $0.from == 2 }
        cluster.clearRecords()
        for value in 0..<10 { cluster.propose(1, [UInt8(value)]) }
        let appends = cluster.delivered(.append, to: 2).filter { !$0.entries.isEmpty }
        #expect(appends.count == 3)
        #expect(cluster[1].progress[2]?.inflights.count == 3)
        // Node 3 answers, so the leader keeps committing.
        #expect(cluster[1].commitIndex == 14)
        // Once node 2 is heard from again it catches up.
        cluster.heal()
        cluster.tick(1)
        #expect(cluster.logTerms(2) == cluster.logTerms(1))
        #expect(cluster[2].commitIndex == 14)
    }

    @Test func uncommittedBytesMaxRefusesProposal() throws {
        let cluster = TestCluster(voters: 3) {
            $0.entryBytesMax = 100
            $0.uncommittedBytesMax = 250
        }
        cluster.elect(1)
        cluster.isolate(2)
        cluster.isolate(3)
        try cluster[1].propose(Self.bytes(100))  // 124 uncommitted
        try cluster[1].propose(Self.bytes(100))  // 248 uncommitted
        #expect(throws: ProposalError.uncommittedBytesExceeded(limit: 250)) {
            try cluster[1].propose(Self.bytes(100))
        }
        #expect(cluster[1].lastIndex == 6)
        // Once the entries are committed and applied there is room again.
        cluster.heal()
        cluster.tick(1)
        #expect(cluster[1].commitIndex == 6)
        #expect(throws: Never.self) { try cluster[1].propose(Self.bytes(100)) }
    }

    /// The limit counts what this leader appended and has not applied. Entries it inherited from
    /// earlier terms (and its own no-op) were never counted, so applying them must not make room
    /// for more of its own proposals.
    @Test func applyingInheritedEntriesDoesNotFreeUncommittedBudget() throws {
        let membership = Membership(voters: [1, 2, 3])
        var storages: [NodeID: MemoryStorage] = [:]
        for id: NodeID in [1, 2, 3] {
            let storage = TestCluster.storage(membership: membership, terms: [], hardState: HardState(term: 1))
            storage.append([Entry(term: 1, index: 1, data: Self.bytes(100)), Entry(term: 1, index: 2, data: Self.bytes(100))])
            storages[id] = storage
        }
        let cluster = TestCluster(storages: storages) {
            $0.entryBytesMax = 100
            $0.uncommittedBytesMax = 250
            $0.messageBytesMax = 1  // one entry per append
        }
        cluster.drop(.append)
        cluster.elect(1)
        #expect(cluster[1].role == .leader)
        try cluster[1].propose(Self.bytes(100))  // index 4: 124 bytes
        try cluster[1].propose(Self.bytes(100))  // index 5: 248 bytes
        cluster.stabilize()
        // Indexes 1...3 (two inherited entries and the no-op) commit; 4 and 5 do not.
        cluster.heal()
        cluster.drop { $0.type == .append && ($0.entries.first?.index ?? 0) >= 4 }
        cluster.tick(1)
        #expect(cluster[1].commitIndex == 3)
        #expect(cluster.lastApplied[1] == 3)
        // 248 bytes of this leader's proposals are still uncommitted: a third must not fit.
        #expect(throws: ProposalError.uncommittedBytesExceeded(limit: 250)) {
            try cluster[1].propose(Self.bytes(100))
        }
    }

    @Test func entryLargerThanEntryBytesMaxIsRefused() {
        let cluster = TestCluster(voters: 3) { $0.entryBytesMax = 100 }
        cluster.elect(1)
        #expect(throws: ProposalError.entryTooLarge(bytes: 101, limit: 100)) {
            try cluster[1].propose(Self.bytes(101))
        }
        // The limit is the same on a follower, before any forwarding.
        #expect(throws: ProposalError.entryTooLarge(bytes: 101, limit: 100)) {
            try cluster[2].propose(Self.bytes(101))
        }
        #expect(cluster.sent(.propose).isEmpty)
        #expect(throws: Never.self) { try cluster[1].propose(Self.bytes(100)) }
    }

    @Test func restartedFollowerCatchesUpWithoutReapplying() {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.propose(1, [1])
        cluster.crash(3)
        cluster.propose(1, [2])
        cluster.propose(1, [3])
        cluster.restart(3)
        #expect(cluster[3].term == 2)
        #expect(cluster[3].lastIndex == 5)
        cluster.tick(1)
        #expect(cluster.logTerms(3) == cluster.logTerms(1))
        #expect(cluster.appliedData(3) == [[1], [2], [3]])
    }

    @Test func newLeaderKeepsCommittedEntries() throws {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.propose(1, [1])
        cluster.propose(1, [2])
        cluster.crash(1)
        #expect(cluster.tickAll(until: { !cluster.leaders.isEmpty }, maxTicks: 60))
        let leader = try #require(cluster.leaders.first)
        #expect(leader != 1)
        cluster.propose(leader, [3])
        for id: NodeID in [2, 3] { #expect(cluster.appliedData(id) == [[1], [2], [3]]) }
        cluster.restart(1)
        cluster.tick(leader)
        #expect(cluster.appliedData(1) == [[1], [2], [3]])
        #expect(cluster[1].leader == leader)
    }

    @Test func committedEntriesPerReadyAreBoundedByCommittedBytesPerReadyMax() {
        let cluster = TestCluster(voters: 1) { $0.committedBytesPerReadyMax = 130 }
        cluster.elect(1)
        for value in 0..<3 { _ = try? cluster[1].propose(Self.bytes(100, UInt8(value))) }
        // Each 124-byte entry needs a Ready of its own.
        var batches: [Int] = []
        while cluster[1].hasReady() {
            let ready = cluster[1].ready()
            cluster.storages[1]!.append(ready.entries)
            if let hardState = ready.hardState { cluster.storages[1]!.setHardState(hardState) }
            if !ready.committedEntries.isEmpty { batches.append(ready.committedEntries.count) }
            cluster[1].advance(ready)
        }
        #expect(batches == [1, 1, 1])
        #expect(cluster[1].appliedIndex == 5)
    }
}
