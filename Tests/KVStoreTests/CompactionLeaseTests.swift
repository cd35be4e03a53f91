import Testing

@testable import KVStore

@Suite struct CompactionTests {
    @Test func compactionDropsHistoryBelowAndKeepsAbove() throws {
        let store = try TestStore()
        try store.put("a", "1")  // 2
        try store.put("a", "2")  // 3
        try store.put("b", "1")  // 4
        try store.delete("b")  // 5
        try store.put("a", "3")  // 6
        #expect(try store.apply(.compaction(CompactionRequest(revision: 4))).headerRevision == 6)
        #expect(store.store.compactRevision == 4)
        let below = try store.store.range(RangeRequest(key: bytes("a"), revision: 3))
        #expect(below == .failure(.compacted))
        #expect(KVError.compacted.message == "etcdserver: mvcc: required revision has been compacted")
        #expect(KVError.compacted.storeMessage == "mvcc: required revision has been compacted")
        #expect(KVError.compacted.grpcCode == .outOfRange)
        // At the compact revision itself, the newest versions at or below it remain.
        #expect(try store.get("a", revision: 4)?.value == bytes("2"))
        #expect(try store.get("b", revision: 4)?.value == bytes("1"))
        #expect(try store.get("b", revision: 5) == nil)
        #expect(try store.get("a", revision: 6)?.value == bytes("3"))
        // Compaction is not a write: the revision stays.
        #expect(store.store.currentRevision == 6)
        // Compacting again at or below is refused; beyond the current revision too.
        #expect(try store.apply(.compaction(CompactionRequest(revision: 4))) == .error(.compacted))
        #expect(try store.apply(.compaction(CompactionRequest(revision: 3))) == .error(.compacted))
        #expect(try store.apply(.compaction(CompactionRequest(revision: 7))) == .error(.futureRevision))
        // A second compaction past b's deletion removes b's history entirely.
        #expect(try store.apply(.compaction(CompactionRequest(revision: 6))).headerRevision == 6)
        #expect(try store.get("a", revision: 6)?.value == bytes("3"))
        #expect(try store.store.events(from: 6, key: [0], rangeEnd: [0]).get().map { text($0.kv.key) } == ["a"])
        #expect(try store.store.events(from: 5, key: [0], rangeEnd: [0]) == .failure(.compacted))
        // Versions and create revisions survive compaction.
        let kv = try #require(try store.get("a"))
        #expect(kv.version == 3 && kv.createRevision == 2)
        try store.put("a", "4")
        #expect(try store.get("a")?.version == 4)
    }

    @Test func aDeletionAtTheCompactRevisionLeavesNoTrace() throws {
        let store = try TestStore()
        try store.put("c", "1")  // 2
        try store.delete("c")  // 3
        try store.apply(.compaction(CompactionRequest(revision: 3)))
        // etcd drops a key whose newest version at the compact revision is a deletion, tombstone
        // included, so even a watch from the compact revision no longer sees it.
        #expect(try store.store.events(from: 3, key: bytes("c"), rangeEnd: []).get() == [])
        #expect(try store.store.events(from: 3, key: [0], rangeEnd: [0]).get() == [])
    }
}

@Suite struct LeaseTests {
    @Test func grantAttachRevoke() throws {
        let store = try TestStore()
        let lease = try store.grant(ttl: 30)
        #expect(lease > 0)
        try store.put("a", "1", lease: lease)
        try store.put("b", "1", lease: lease)
        try store.put("c", "1")
        #expect(try store.store.leaseTimeToLive(id: lease, keys: true).get().keys == [bytes("a"), bytes("b")])
        #expect(try store.store.leaseTimeToLive(id: lease, keys: true).get().grantedTTL == 30)
        let revisionBefore = store.store.currentRevision
        let revoked = try store.apply(.leaseRevoke(LeaseRevokeRequest(id: lease)))
        #expect(revoked.headerRevision == revisionBefore + 1, "all attached keys go in one revision")
        #expect(try store.keys(RangeRequest(key: [0], rangeEnd: [0])) == ["c"])
        #expect(store.store.lastAppliedEvents.map(\.type) == [.delete, .delete])
        #expect(try store.store.leases().isEmpty)
        #expect(try store.apply(.leaseRevoke(LeaseRevokeRequest(id: lease))) == .error(.leaseNotFound))
        #expect(KVError.leaseNotFound.message == "etcdserver: requested lease not found")
        #expect(KVError.leaseNotFound.grpcCode == .notFound)
    }

    @Test func revokingALeaseWithoutKeysDoesNotBumpTheRevision() throws {
        let store = try TestStore()
        let lease = try store.grant(ttl: 30)
        #expect(try store.apply(.leaseRevoke(LeaseRevokeRequest(id: lease))).headerRevision == 1)
    }

    @Test func grantRules() throws {
        let store = try TestStore()
        #expect(try store.grant(ttl: 10, id: 7) == 7)
        #expect(try store.apply(.leaseGrant(LeaseGrantRequest(ttl: 10, id: 7))) == .error(.leaseExists))
        guard case .leaseGrant(let short) = try store.apply(.leaseGrant(LeaseGrantRequest(ttl: 1))) else {
            Issue.record("grant refused"); return
        }
        #expect(short.ttl == KVLimits.default.leaseTTLSecondsMin, "short TTLs are raised to the minimum")
        #expect(try store.apply(.leaseGrant(LeaseGrantRequest(ttl: 9_000_000_001))) == .error(.leaseTTLTooLarge))
        #expect(try store.store.leases().map(\.id) == [7, short.id].sorted())
    }

    @Test func generatedIDsAreDeterministic() throws {
        let first = try TestStore()
        let second = try TestStore()
        let ids = try (0..<5).map { _ in try first.grant(ttl: 10) }
        let again = try (0..<5).map { _ in try second.grant(ttl: 10) }
        #expect(ids == again)
        #expect(Set(ids).count == 5 && ids.allSatisfy { $0 > 0 })
    }

    @Test func movingAKeyToAnotherLeaseOrNoneDetachesIt() throws {
        let store = try TestStore()
        let first = try store.grant(ttl: 30)
        let second = try store.grant(ttl: 30)
        try store.put("a", "1", lease: first)
        try store.put("a", "2", lease: second)
        try store.put("b", "1", lease: first)
        try store.put("b", "2")
        #expect(try store.store.leaseTimeToLive(id: first, keys: true).get().keys.isEmpty)
        try store.apply(.leaseRevoke(LeaseRevokeRequest(id: first)))
        #expect(try store.keys(RangeRequest(key: [0], rangeEnd: [0])) == ["a", "b"])
        try store.apply(.leaseRevoke(LeaseRevokeRequest(id: second)))
        #expect(try store.keys(RangeRequest(key: [0], rangeEnd: [0])) == ["b"])
    }

    @Test func expiryThroughTheDeterministicRequest() throws {
        let store = try TestStore()
        let short = try store.grant(ttl: 5)
        let long = try store.grant(ttl: 60)
        try store.put("s", "1", lease: short)
        try store.put("l", "1", lease: long)

        // The leader's shell tracks deadlines in its own monotonic time.
        var deadlines = LeaseDeadlines()
        deadlines.promote(try store.store.leases(), nowMs: 1_000, extensionMs: 0)
        #expect(deadlines.expired(nowMs: 5_999, limit: 10).isEmpty)
        #expect(deadlines.remainingTTL(id: short, nowMs: 2_500) == 4)
        #expect(deadlines.expired(nowMs: 6_000, limit: 10) == [short])
        #expect(deadlines.renew(id: long, nowMs: 30_000) == 60)
        #expect(deadlines.remainingTTL(id: long, nowMs: 30_000) == 60)

        let revision = store.store.currentRevision
        let response = try store.apply(.leaseExpire(LeaseExpireRequest(ids: [short, 12345])))
        guard case .leaseExpire(let expired) = response else { Issue.record("expire refused"); return }
        #expect(expired.revoked == [short], "unknown IDs are skipped")
        #expect(expired.header.revision == revision + 1)
        #expect(try store.keys(RangeRequest(key: [0], rangeEnd: [0])) == ["l"])

        // Checkpoints let a new leader continue from the remaining time, extended.
        try store.apply(.leaseCheckpoint(LeaseCheckpointRequest(checkpoints: [LeaseCheckpoint(id: long, remainingTTL: 20)])))
        #expect(try store.store.leaseTimeToLive(id: long, keys: false).get().ttl == 20)
        var next = LeaseDeadlines()
        next.promote(try store.store.leases(), nowMs: 0, extensionMs: 2_000)
        #expect(next.remainingTTL(id: long, nowMs: 0) == 22)
        #expect(store.store.currentRevision == revision + 1, "checkpoints are not writes")
    }

    @Test func memberAttributesMergeKeepNoRevisionAndSurviveSnapshots() throws {
        let store = try TestStore()
        // The adder records peer URLs only; the member's own publish adds its name and client URLs.
        try store.apply(.memberAttributes(MemberAttributes(id: 9, name: "", peerURLs: ["http://127.0.0.1:2380"], clientURLs: [])))
        #expect(try store.store.members() == [MemberAttributes(id: 9, name: "", peerURLs: ["http://127.0.0.1:2380"], clientURLs: [])])
        let published = try store.apply(.memberAttributes(MemberAttributes(id: 9, name: "m9", peerURLs: [], clientURLs: ["http://127.0.0.1:2379", "http://10.0.0.1:2379"])))
        #expect(published.headerRevision == 1, "member attributes change no revision")
        let expected = MemberAttributes(id: 9, name: "m9", peerURLs: ["http://127.0.0.1:2380"], clientURLs: ["http://127.0.0.1:2379", "http://10.0.0.1:2379"])
        #expect(try store.store.members() == [expected])
        try store.apply(.memberAttributes(MemberAttributes(id: 3, name: "m3", peerURLs: ["http://h:1"], clientURLs: ["http://h:2"])))
        let copy = try TestStore()
        try copy.store.restore(from: try store.store.snapshotData())
        #expect(try copy.store.members().map(\.id) == [3, 9])
        try store.apply(.memberAttributes(MemberAttributes(id: 3, name: "", peerURLs: [], clientURLs: [], removed: true)))
        #expect(try store.store.members() == [expected])
    }
}
