@testable import Raft
import Testing

@Suite struct StorageTests {
    static func storage(lastIndex: UInt64) -> MemoryStorage {
        let storage = MemoryStorage(bootstrap: Membership(voters: [1]))
        storage.append((1...lastIndex).map { Entry(term: $0 < 4 ? 1 : 2, index: $0, data: [UInt8($0)]) })
        return storage
    }

    @Test func bootstrapWritesOneCommittedMembershipEntryPerMember() throws {
        let storage = MemoryStorage(bootstrap: Membership(voters: [3, 1, 2], learners: [7]))
        #expect(storage.firstIndex() == 1)
        #expect(storage.lastIndex() == 4)
        let entries = try storage.entries(from: 1, to: 5, maxBytes: .max)
        #expect(entries.allSatisfy { $0.term == 1 && $0.kind == .membershipChange })
        #expect(entries.map { MembershipChange.decode($0.data) } == [
            MembershipChange(.addVoter, node: 1), MembershipChange(.addVoter, node: 2),
            MembershipChange(.addVoter, node: 3), MembershipChange(.addLearner, node: 7),
        ])
        #expect(try storage.initialState().hardState == HardState(term: 1, vote: noNode, commit: 4))
        // A joining node starts empty.
        let joiner = MemoryStorage()
        #expect(joiner.lastIndex() == 0)
        #expect(try joiner.initialState().hardState == HardState())
        // A node over the bootstrap storage derives the membership from those entries.
        let node = try RaftNode(configuration: Configuration(id: 2), storage: storage)
        #expect(node.membership == Membership(voters: [1, 2, 3], learners: [7]))
        #expect(node.commitIndex == 4)
        #expect(node.term == 1)
    }

    @Test func readsOutsideTheLogReportCompactedOrUnavailable() throws {
        let storage = Self.storage(lastIndex: 6)
        try storage.createSnapshot(index: 3, membership: Membership(voters: [1]), data: [9])
        try storage.compact(upTo: 3)
        #expect(storage.firstIndex() == 4)
        #expect(storage.lastIndex() == 6)
        // The snapshot's term stays readable at firstIndex - 1.
        #expect(try storage.term(at: 3) == 1)
        #expect(try storage.term(at: 4) == 2)
        #expect(throws: StorageError.compacted) { try storage.term(at: 2) }
        #expect(throws: StorageError.unavailable) { try storage.term(at: 7) }
        #expect(throws: StorageError.compacted) { try storage.entries(from: 3, to: 5, maxBytes: .max) }
        #expect(throws: StorageError.unavailable) { try storage.entries(from: 4, to: 8, maxBytes: .max) }
        #expect(try storage.entries(from: 4, to: 7, maxBytes: .max).map(\.index) == [4, 5, 6])
        #expect(throws: StorageError.compacted) { try storage.compact(upTo: 3) }
        #expect(throws: StorageError.compacted) { try storage.createSnapshot(index: 2, membership: Membership(), data: []) }
        #expect(try storage.snapshot().metadata == SnapshotMetadata(index: 3, term: 1, membership: Membership(voters: [1])))
    }

    @Test func entriesRespectMaxBytesButReturnAtLeastOne() throws {
        let storage = Self.storage(lastIndex: 5)
        let perEntry = Entry.headerBytes + 1
        #expect(try storage.entries(from: 1, to: 6, maxBytes: 0).map(\.index) == [1])
        #expect(try storage.entries(from: 1, to: 6, maxBytes: 2 * perEntry).map(\.index) == [1, 2])
        #expect(try storage.entries(from: 1, to: 6, maxBytes: 2 * perEntry - 1).map(\.index) == [1])
        #expect(try storage.entries(from: 2, to: 2, maxBytes: .max).isEmpty)
    }

    @Test func appendReplacesConflictingSuffix() throws {
        let storage = Self.storage(lastIndex: 5)
        storage.append([Entry(term: 3, index: 3), Entry(term: 3, index: 4)])
        #expect(storage.lastIndex() == 4)
        #expect(try (1...4).map { try storage.term(at: $0) } == [1, 1, 3, 3])
    }

    @Test func appliedSnapshotReplacesLogAndOlderOneIsIgnored() throws {
        let storage = Self.storage(lastIndex: 3)
        let snapshot = Snapshot(metadata: SnapshotMetadata(index: 10, term: 4, membership: Membership(voters: [1, 2])), data: [1])
        storage.applySnapshot(snapshot)
        #expect(storage.firstIndex() == 11)
        #expect(storage.lastIndex() == 10)
        #expect(try storage.term(at: 10) == 4)
        #expect(try storage.initialState().membership == Membership(voters: [1, 2]))
        storage.applySnapshot(Snapshot(metadata: SnapshotMetadata(index: 5, term: 2)))
        #expect(try storage.snapshot() == snapshot)
        // Entries folded into the snapshot are skipped when appended.
        storage.append([Entry(term: 4, index: 9), Entry(term: 4, index: 10), Entry(term: 5, index: 11)])
        #expect(storage.lastIndex() == 11)
        #expect(try storage.term(at: 11) == 5)
    }

    @Test func stateIsAValueThatRestoresTheStorage() throws {
        let storage = Self.storage(lastIndex: 4)
        storage.setHardState(HardState(term: 2, vote: 1, commit: 3))
        let copy = MemoryStorage(state: storage.state)
        storage.append([Entry(term: 9, index: 5)])
        #expect(copy.lastIndex() == 4)
        #expect(try copy.initialState().hardState == HardState(term: 2, vote: 1, commit: 3))
    }

    @Test(arguments: [MembershipChange.Kind.addVoter, .addLearner, .promoteLearner, .removeNode])
    func membershipChangeEncodingRoundTrips(kind: MembershipChange.Kind) {
        let change = MembershipChange(kind, node: 0x0102_0304_0506_0708, context: Array("10.0.0.4:2380".utf8))
        let bytes = change.encoded()
        #expect(bytes.count == 9 + 13)
        #expect(bytes[0] == kind.rawValue)
        #expect(Array(bytes[1...8]) == [8, 7, 6, 5, 4, 3, 2, 1])
        #expect(MembershipChange.decode(bytes) == change)
        #expect(MembershipChange.decode(MembershipChange(kind, node: 5).encoded()) == MembershipChange(kind, node: 5))
    }

    @Test func decodingRejectsMalformedChanges() {
        #expect(MembershipChange.decode([]) == nil)
        #expect(MembershipChange.decode([0, 1, 0, 0, 0, 0, 0, 0]) == nil)  // too short
        #expect(MembershipChange.decode([7, 1, 0, 0, 0, 0, 0, 0, 0]) == nil)  // unknown kind
        #expect(MembershipChange.decode([0, 0, 0, 0, 0, 0, 0, 0, 0]) == nil)  // node 0
    }
}

/// The leader's per-follower bookkeeping (internals).
@Suite struct ProgressTests {
    @Test func inflightsAreBoundedByCountAndBytes() {
        var inflights = Inflights(countMax: 3, bytesMax: 100)
        inflights.add(index: 1, bytes: 10)
        inflights.add(index: 2, bytes: 10)
        #expect(!inflights.isFull)
        inflights.add(index: 3, bytes: 10)
        #expect(inflights.isFull)
        inflights.free(upTo: 2)
        #expect(inflights.count == 1)
        #expect(inflights.bytes == 10)
        inflights.add(index: 4, bytes: 90)
        #expect(inflights.isFull)  // by bytes
        inflights.freeFirst()
        #expect(inflights.count == 1)
        #expect(!inflights.isFull)
    }

    @Test func probeUsesRejectHintAndIgnoresStaleRejections() {
        var progress = Progress(next: 11, inflightMessagesMax: 4, inflightBytesMax: 1000, isLearner: false)
        // A rejection for an append we did not send last is stale.
        let r1 = progress.maybeDecrease(rejected: 7, hint: 3)
        #expect(r1 == false)
        #expect(progress.next == 11)
        let r2 = progress.maybeDecrease(rejected: 10, hint: 3)
        #expect(r2)
        #expect(progress.next == 4)
        let r3 = progress.maybeUpdate(6)
        #expect(r3)
        #expect(progress.match == 6)
        progress.becomeReplicate()
        #expect(progress.next == 7)
        progress.sentEntries(lastIndex: 9, count: 3, bytes: 30)
        #expect(progress.next == 10)
        // In replicate a rejection at or below the match is old news.
        let r4 = progress.maybeDecrease(rejected: 5, hint: 0)
        #expect(r4 == false)
        let r5 = progress.maybeDecrease(rejected: 8, hint: 0)
        #expect(r5)
        #expect(progress.next == 7)
    }

    @Test func followerHintSkipsWholeTermsOfConflict() {
        let storage = TestCluster.storage(membership: Membership(voters: [1]), terms: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3])
        let log = RaftLog(storage: storage, appliedIndex: 0)
        #expect([log.findConflictByTerm(index: 10, term: 6)].map { [$0.index, $0.term] } == [[10, 3]])
        #expect([log.findConflictByTerm(index: 10, term: 2)].map { [$0.index, $0.term] } == [[6, 2]])
        #expect([log.findConflictByTerm(index: 10, term: 1)].map { [$0.index, $0.term] } == [[3, 1]])
        #expect([log.findConflictByTerm(index: 10, term: 0)].map { [$0.index, $0.term] } == [[0, 0]])
    }
}
