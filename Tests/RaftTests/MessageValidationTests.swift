@testable import Raft
import Testing

/// Issue 11, item 9: a peer's frame is checked for meaning before `step`. Each message below is
/// one no correct member sends; on bea4cd2 several of them trapped (non-consecutive entries, an
/// overflowing `rejectHint + 1` or `index + 1`), the others corrupted state. Now each is dropped
/// and the receiver's state does not move.
@Suite struct MessageValidationTests {
    /// What a dropped message must not change: everything observable, and the leader's view of
    /// each follower.
    struct Observed: Hashable {
        var term: UInt64
        var vote: NodeID
        var role: Role
        var leader: NodeID
        var commit: UInt64
        var applied: UInt64
        var lastIndex: UInt64
        var firstIndex: UInt64
        var membership: Membership
        var hasReady: Bool
        var progress: [NodeID: [UInt64]]

        init(_ node: TestCluster.Node) {
            term = node.term
            vote = node.vote
            role = node.role
            leader = node.leader
            commit = node.commitIndex
            applied = node.appliedIndex
            lastIndex = node.lastIndex
            firstIndex = node.firstIndex
            membership = node.membership
            hasReady = node.hasReady()
            progress = node.progress.mapValues { [$0.match, $0.next, $0.probeSent ? 1 : 0] }
        }
    }

    /// A three-node cluster with leader 1 in term 2 and entries 1...4 committed everywhere.
    static func steadyCluster() -> TestCluster {
        let cluster = TestCluster(voters: 3)
        cluster.elect(1)
        cluster.propose(1, [1])
        cluster.propose(1, [2])
        #expect(cluster[1].term == 2)
        #expect(cluster[2].lastIndex == cluster[1].lastIndex)
        return cluster
    }

    static let maximum = UInt64.max

    /// Messages to follower 2 (from leader 1, term 2, last index `last`) that must be dropped.
    static func invalidForFollower(last: UInt64) -> [(String, Message)] {
        let term: UInt64 = 2
        func append(index: UInt64 = last, logTerm: UInt64 = 2, entries: [Entry], commit: UInt64 = 0, term: UInt64 = term) -> Message {
            Message(type: .append, from: 1, to: 2, term: term, logTerm: logTerm, index: index, entries: entries, commit: commit)
        }
        let voters = Membership(voters: [1, 2, 3])
        return [
            ("entries with a gap", append(entries: [Entry(term: 2, index: last + 1), Entry(term: 2, index: last + 3)])),
            ("entry at index", append(entries: [Entry(term: 2, index: last)])),
            ("entry before index", append(entries: [Entry(term: 2, index: last - 1), Entry(term: 2, index: last)])),
            ("entries out of order", append(entries: [Entry(term: 2, index: last + 2), Entry(term: 2, index: last + 1)])),
            ("entry term above message term", append(entries: [Entry(term: 3, index: last + 1)])),
            ("entry terms decreasing", append(index: 1, logTerm: 1, entries: [Entry(term: 2, index: 2), Entry(term: 1, index: 3)])),
            ("entry term below logTerm", append(entries: [Entry(term: 1, index: last + 1)])),
            ("logTerm above term", append(logTerm: 3, entries: [])),
            ("index = UInt64.max", append(index: maximum, entries: [Entry(term: 2, index: 0)])),
            ("index = UInt64.max, no entries", append(index: maximum, entries: [])),
            ("entry index = UInt64.max", append(index: maximum - 1, entries: [Entry(term: 2, index: maximum)])),
            ("commit = UInt64.max", append(entries: [], commit: maximum)),
            ("heartbeat commit = UInt64.max", Message(type: .heartbeat, from: 1, to: 2, term: term, commit: maximum)),
            ("term = UInt64.max", append(entries: [], term: maximum)),
            ("vote request term = UInt64.max", Message(type: .requestVote, from: 3, to: 2, term: maximum, logTerm: 2, index: last)),
            ("vote request logTerm above term", Message(type: .requestPreVote, from: 3, to: 2, term: 3, logTerm: 4, index: last)),
            ("entries on a heartbeat", Message(type: .heartbeat, from: 1, to: 2, term: term, entries: [Entry(term: 2, index: 1)])),
            ("snapshot on an append", Message(type: .append, from: 1, to: 2, term: term, logTerm: 2, index: last,
                                              snapshot: Snapshot(metadata: SnapshotMetadata(index: last + 5, term: 2, membership: voters)))),
            ("snapshot message without a snapshot", Message(type: .snapshot, from: 1, to: 2, term: term)),
            ("snapshot at index 0", Message(type: .snapshot, from: 1, to: 2, term: term,
                                            snapshot: Snapshot(metadata: SnapshotMetadata(index: 0, term: 2, membership: voters)))),
            ("snapshot at UInt64.max", Message(type: .snapshot, from: 1, to: 2, term: term,
                                               snapshot: Snapshot(metadata: SnapshotMetadata(index: maximum, term: 2, membership: voters)))),
            ("snapshot term above message term", Message(type: .snapshot, from: 1, to: 2, term: term,
                                                         snapshot: Snapshot(metadata: SnapshotMetadata(index: last + 5, term: 3, membership: voters)))),
            ("snapshot of term 0", Message(type: .snapshot, from: 1, to: 2, term: term,
                                           snapshot: Snapshot(metadata: SnapshotMetadata(index: last + 5, term: 0, membership: voters)))),
            ("snapshot without voters", Message(type: .snapshot, from: 1, to: 2, term: term,
                                                snapshot: Snapshot(metadata: SnapshotMetadata(index: last + 5, term: 2, membership: Membership(learners: [2]))))),
            ("snapshot naming node 0", Message(type: .snapshot, from: 1, to: 2, term: term,
                                               snapshot: Snapshot(metadata: SnapshotMetadata(index: last + 5, term: 2, membership: Membership(voters: [0, 1, 2]))))),
            ("from itself", Message(type: .heartbeat, from: 2, to: 2, term: 3)),
            ("from node 0", Message(type: .heartbeat, from: 0, to: 2, term: 3)),
            ("to another node", Message(type: .heartbeat, from: 1, to: 3, term: 3)),
            ("read index response at UInt64.max", Message(type: .readIndexResponse, from: 1, to: 2, term: term, index: maximum)),
        ]
    }

    /// Messages to leader 1 (term 2, last index `last`) that must be dropped.
    static func invalidForLeader(last: UInt64) -> [(String, Message)] {
        [
            ("rejectHint = UInt64.max", Message(type: .appendResponse, from: 2, to: 1, term: 2, index: last, reject: true, rejectHint: maximum)),
            ("rejectHint above index", Message(type: .appendResponse, from: 2, to: 1, term: 2, index: last - 1, reject: true, rejectHint: last)),
            ("rejection logTerm above term", Message(type: .appendResponse, from: 2, to: 1, term: 2, logTerm: 3, index: last, reject: true, rejectHint: 1)),
            ("acknowledged index = UInt64.max", Message(type: .appendResponse, from: 2, to: 1, term: 2, index: maximum)),
            ("rejected index = UInt64.max", Message(type: .appendResponse, from: 2, to: 1, term: 2, index: maximum, reject: true)),
            ("entries on a response", Message(type: .appendResponse, from: 2, to: 1, term: 2, index: last, entries: [Entry(term: 2, index: last)])),
            ("heartbeat response from itself", Message(type: .heartbeatResponse, from: 1, to: 1, term: 2)),
        ]
    }

    @Test func invalidMessagesToAFollowerAreDroppedWithoutEffect() {
        let cluster = Self.steadyCluster()
        for (name, message) in Self.invalidForFollower(last: cluster[2].lastIndex) {
            let before = Observed(cluster[2])
            #expect(before.hasReady == false)
            #expect(message.rejection(receiver: 2) != nil, "\(name) passes validation")
            cluster[2].step(message)
            #expect(Observed(cluster[2]) == before, "\(name) changed the follower")
        }
        // The cluster still works.
        cluster.propose(1, [3])
        #expect(cluster.appliedData(2) == [[1], [2], [3]])
    }

    @Test func invalidMessagesToTheLeaderAreDroppedWithoutEffect() {
        let cluster = Self.steadyCluster()
        for (name, message) in Self.invalidForLeader(last: cluster[1].lastIndex) {
            let before = Observed(cluster[1])
            #expect(message.rejection(receiver: 1) != nil, "\(name) passes validation")
            cluster[1].step(message)
            #expect(Observed(cluster[1]) == before, "\(name) changed the leader")
        }
        cluster.propose(1, [3])
        #expect(cluster.appliedData(3) == [[1], [2], [3]])
    }

    /// Valid in form, but acknowledging entries the leader does not have: ignored by `step`,
    /// since a match beyond the log would let a quorum index pass the last index.
    @Test func acknowledgementBeyondTheLeadersLogIsIgnored() {
        let cluster = Self.steadyCluster()
        let last = cluster[1].lastIndex
        let message = Message(type: .appendResponse, from: 2, to: 1, term: 2, index: last + 10)
        #expect(message.rejection(receiver: 1) == nil)
        let before = Observed(cluster[1])
        cluster[1].step(message)
        cluster[1].step(Message(type: .appendResponse, from: 3, to: 1, term: 2, index: last + 10))
        #expect(Observed(cluster[1]) == before)
        #expect(cluster[1].progress[2]?.match == last)
    }

    /// Every message a correct cluster sends passes validation: elections, replication,
    /// rejections and fast back-off, snapshots, membership changes, reads and transfers.
    @Test func everyMessageOfCorrectRunsPassesValidation() throws {
        let cluster = try SnapshotTests.laggingFollowerCluster()
        cluster.heal()
        cluster.tick(1)
        cluster.propose(1, [6])
        try cluster[1].readIndex(context: 7)
        cluster.stabilize()
        try cluster[3].readIndex(context: 8)
        cluster.stabilize()
        try cluster[1].transferLeadership(to: 2)
        cluster.stabilize()
        #expect(cluster[2].role == .leader)
        try cluster[2].proposeMembershipChange(MembershipChange(.addLearner, node: 4))
        cluster.stabilize()
        cluster.addNode(4, storage: MemoryStorage(bootstrap: Membership()))
        cluster.tick(2, times: 3)
        cluster.propose(2, [7])
        #expect(cluster.appliedData(4).suffix(1) == [[7]])
        // A partitioned node that fell behind in another term forces rejections and back-off.
        cluster.isolate(3)
        cluster.propose(2, [8])
        cluster.heal()
        cluster.tick(2, times: 3)
        #expect(cluster.sent.count > 20)
        for message in cluster.sent {
            #expect(message.rejection(receiver: message.to) == nil, "\(message)")
        }
        #expect(cluster.sent.contains { $0.type == .snapshot })
    }

    /// Found by `cluster/fuzz` (peer-message) on bea4cd2's behaviour within seconds: one
    /// `timeoutNow` of term UInt64.max made a follower adopt the term and campaign at once, and
    /// `term + 1` overflowed. The input was that single message (from 2, index 4718592, logTerm
    /// 144116287587483647), to a follower of the bootstrap cluster.
    @Test func fuzzFoundTimeoutNowOfTheLargestTermIsDropped() {
        let cluster = TestCluster(voters: 3)
        let message = Message(type: .timeoutNow, from: 2, to: 1, term: .max, logTerm: 144_116_287_587_483_647, index: 4_718_592)
        #expect(message.rejection(receiver: 1) == .termOutOfRange(.max))
        let before = Observed(cluster[1])
        cluster[1].step(message)
        #expect(Observed(cluster[1]) == before)
        // The largest term a peer may name still leaves room for the campaigns it causes.
        cluster[1].step(Message(type: .timeoutNow, from: 2, to: 1, term: Message.termMax))
        #expect(cluster[1].term == Message.termMax + 1)
        #expect(cluster[1].role == .candidate)
    }

    @Test func rejectionsNameTheirRule() {
        let entries = [Entry(term: 2, index: 6), Entry(term: 2, index: 8)]
        let gap = Message(type: .append, from: 1, to: 2, term: 2, logTerm: 2, index: 5, entries: entries)
        #expect(gap.rejection(receiver: 2) == .entriesNotContiguous(position: 1, expected: 7, found: 8))
        let hint = Message(type: .appendResponse, from: 2, to: 1, term: 2, index: 5, reject: true, rejectHint: .max)
        #expect(hint.rejection(receiver: 1) == .indexOutOfRange(field: "rejectHint", value: .max))
        // A transfer request's `index` names a node: any ID is fine.
        let transfer = Message(type: .transferLeadership, from: 2, to: 1, term: 2, index: .max)
        #expect(transfer.rejection(receiver: 1) == nil)
    }
}
