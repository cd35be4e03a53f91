@testable import Raft
import Testing

@Suite struct SnapshotTests {
    /// A three-node cluster in which node 3 missed entries 5...9 and the leader compacted them.
    static func laggingFollowerCluster() throws -> TestCluster {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.isolate(3)
        for value: UInt8 in 1...5 { cluster.propose(1, [value]) }
        #expect(cluster[1].commitIndex == 9)
        #expect(cluster.lastApplied[1] == 9)
        let storage = cluster.storages[1]!
        let membership = try #require(cluster[1].membership(at: 9))
        try storage.createSnapshot(index: 9, membership: membership, data: [1, 2, 3, 4, 5])
        try storage.compact(upTo: 9)
        #expect(cluster[1].firstIndex == 10)
        #expect(cluster[1].term(at: 8) == nil)
        return cluster
    }

    @Test func laggingFollowerReceivesSnapshot() throws {
        let cluster = try Self.laggingFollowerCluster()
        cluster.heal()
        cluster.tick(1)
        let snapshots = cluster.delivered(.snapshot, from: 1, to: 3)
        #expect(snapshots.count == 1)
        let expected = SnapshotMetadata(index: 9, term: 2, membership: Membership(voters: [1, 2, 3]))
        #expect(snapshots.first?.snapshot?.metadata == expected)
        #expect(snapshots.first?.snapshot?.data == [1, 2, 3, 4, 5])
        #expect(cluster.restoredSnapshots[3] == [expected])
        #expect(cluster.storages[3]!.state.snapshot.metadata == expected)
        #expect(cluster[3].commitIndex == cluster[1].commitIndex)
        #expect(cluster[3].term(at: cluster[3].commitIndex) == cluster[1].term(at: cluster[1].commitIndex))
        #expect(cluster.lastApplied[3] == 9)
        #expect(cluster[3].appliedIndex == 9)
        #expect(cluster[3].firstIndex == 10)
        #expect(cluster[1].progress[3]?.state == .replicate)
        #expect(cluster[1].progress[3]?.match == 9)
        // Replication resumes after the snapshot.
        cluster.propose(1, [6])
        #expect(cluster.appliedData(3) == [[6]])
        #expect(cluster.lastApplied[3] == 10)
        #expect(cluster.storedTerms(3).suffix(1) == [2])
    }

    @Test func failedSnapshotIsRetriedAfterReport() throws {
        let cluster = try Self.laggingFollowerCluster()
        cluster.heal()
        cluster.drop(.snapshot)
        cluster.tick(1)
        #expect(cluster.dropped.filter { $0.type == .snapshot && $0.to == 3 }.count == 1)
        #expect(cluster[1].progress[3]?.state == .snapshot)
        // Until the shell reports, the leader waits.
        cluster.tick(1, times: 3)
        #expect(cluster.sent(.snapshot, to: 3).count == 1)
        cluster[1].reportSnapshot(to: 3, succeeded: false)
        #expect(cluster[1].progress[3]?.state == .probe)
        cluster.heal()
        cluster.tick(1)
        #expect(cluster.sent(.snapshot, to: 3).count == 2)
        #expect(cluster.delivered(.snapshot, to: 3).count == 1)
        #expect(cluster[3].commitIndex == 9)
        #expect(cluster.lastApplied[3] == 9)
        #expect(cluster[1].progress[3]?.state == .replicate)
    }

    @Test func nodeRestartsFromCompactedStorage() throws {
        let cluster = try Self.laggingFollowerCluster()
        cluster.crash(1)
        cluster.restart(1)
        let node = cluster[1]
        #expect(node.firstIndex == 10)
        #expect(node.lastIndex == 9)
        #expect(node.commitIndex == 9)
        #expect(node.appliedIndex == 9)
        #expect(node.term == 2)
        #expect(node.membership == Membership(voters: [1, 2, 3]))
        #expect(node.hasReady() == false)
    }

    @Test func snapshotAtOrBelowCommitIsAnsweredWithCommitIndex() {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.propose(1, [1])
        let stale = Snapshot(metadata: SnapshotMetadata(index: 3, term: 1, membership: Membership(voters: [1, 2, 3])))
        cluster[2].step(Message(type: .snapshot, from: 1, to: 2, term: 2, snapshot: stale))
        let ready = cluster[2].ready()
        #expect(ready.snapshot == nil)
        let answer = ready.messagesAfterPersist.first { $0.type == .appendResponse }
        #expect(answer?.index == 5)
        #expect(answer?.reject == false)
        cluster[2].advance(ready)
    }
}
