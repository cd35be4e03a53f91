import Testing

@testable import KVStore

/// Issue 11, items 8 and 10: no state a client (or a peer's snapshot) can create makes `apply`
/// or `restore` trap. On bea4cd2 each of these tests stopped the test process: the lease-ID
/// attack at `preconditionFailure` in `generatedLeaseID`, a range with `limit` = Int64.max at an
/// overflowing `limit + 1` (also inside a txn, that is in apply), and a snapshot with broken
/// revisions at the `precondition` in `loadState`, after the store had been overwritten.
@Suite struct ClientCreatedStateTests {
    /// A client that knows the next Raft index (etcd's `endpoint status` shows it) grants every
    /// candidate ID of that index first, then asks for a generated ID: a refusal, the same on
    /// every replica, and the store goes on.
    @Test func leaseIDAttackIsRefusedDeterministically() throws {
        let replicas = [try TestStore(), try TestStore()]
        for replica in replicas { try replica.put("before", "1") }
        // The ID-less grant will be applied at this index, after one grant per candidate.
        let attackIndex = replicas[0].index + 65
        let candidates = KVStore.generatedLeaseIDCandidates(index: attackIndex)
        #expect(candidates.count == KVStore.generatedLeaseIDAttemptsMax)
        var responses: [[KVResponse]] = [[], []]
        for (position, replica) in replicas.enumerated() {
            for id in candidates {
                let granted = try replica.apply(.leaseGrant(LeaseGrantRequest(ttl: 60, id: id)))
                guard case .leaseGrant = granted else {
                    Issue.record("explicit grant of \(id) refused: \(granted)")
                    return
                }
            }
            #expect(replica.index + 1 == attackIndex)
            responses[position].append(try replica.apply(.leaseGrant(LeaseGrantRequest(ttl: 60))))
            // The next index has other candidates: generating works again.
            responses[position].append(try replica.apply(.leaseGrant(LeaseGrantRequest(ttl: 60))))
            responses[position].append(try replica.apply(.put(PutRequest(key: bytes("after"), value: bytes("2")))))
        }
        #expect(responses[0][0] == .error(.leaseExists))
        #expect(KVError.leaseExists.message == "etcdserver: lease already exists")
        guard case .leaseGrant(let next) = responses[0][1] else {
            Issue.record("the grant after the attack failed: \(responses[0][1])")
            return
        }
        #expect(!candidates.contains(next.id))
        #expect(responses[0] == responses[1])
        #expect(try replicas[0].store.stateDigest() == replicas[1].store.stateDigest())
        #expect(try replicas[0].get("after")?.value == bytes("2"))
    }

    @Test func explicitLeaseIDsCollideAsInEtcd() throws {
        let store = try TestStore()
        #expect(try store.apply(.leaseGrant(LeaseGrantRequest(ttl: 60, id: Int64.max))) != .error(.leaseExists))
        #expect(try store.apply(.leaseGrant(LeaseGrantRequest(ttl: 60, id: Int64.max))) == .error(.leaseExists))
        #expect(try store.apply(.leaseGrant(LeaseGrantRequest(ttl: 60, id: Int64.min))) != .error(.leaseExists))
        #expect(try store.apply(.leaseGrant(LeaseGrantRequest(ttl: Int64.max))) == .error(.leaseTTLTooLarge))
        guard case .leaseGrant(let negative) = try store.apply(.leaseGrant(LeaseGrantRequest(ttl: Int64.min))) else {
            Issue.record("a negative TTL is raised to the minimum, as in etcd")
            return
        }
        #expect(negative.ttl == store.store.limits.leaseTTLSecondsMin)
        #expect(try store.apply(.leaseRevoke(LeaseRevokeRequest(id: Int64.min))) != .error(.leaseNotFound))
        #expect(try store.apply(.leaseRevoke(LeaseRevokeRequest(id: Int64.min))) == .error(.leaseNotFound))
    }

    /// `limit` is a client's Int64: the largest one must not overflow, in a read or in a txn.
    @Test func extremeRangeArgumentsAreAnsweredNotTrapped() throws {
        let store = try TestStore()
        for key in ["a", "b", "c"] { try store.put(key, key) }
        for limit in [Int64.max, Int64.max - 1, Int64.min, -1] {
            let request = RangeRequest(key: bytes("a"), rangeEnd: bytes("d"), limit: limit)
            let response = try store.store.range(request).get()
            #expect(response.kvs.count == 3, "limit \(limit)")
            #expect(response.more == false)
            let txn = TxnRequest(success: [.range(request), .put(PutRequest(key: bytes("d"), value: bytes("d")))])
            guard case .txn(let answer) = try store.apply(.txn(txn)) else {
                Issue.record("txn with limit \(limit) failed")
                return
            }
            #expect(answer.succeeded)
        }
        for revision in [Int64.max, Int64.min] {
            let request = RangeRequest(key: bytes("a"), revision: revision)
            _ = try store.store.range(request)
            _ = try store.apply(.txn(TxnRequest(success: [.range(request)])))
            _ = try store.apply(.compaction(CompactionRequest(revision: revision)))
            _ = try store.store.events(from: revision, key: bytes("a"), rangeEnd: [])
            _ = try store.store.hashKV(revision: revision)
        }
        let filters = RangeRequest(key: bytes("a"), rangeEnd: [0], limit: Int64.max, sortOrder: .descend, sortTarget: .mod,
                                   minModRevision: Int64.min, maxModRevision: Int64.max,
                                   minCreateRevision: Int64.min, maxCreateRevision: Int64.max)
        #expect(try store.store.range(filters).get().kvs.count == 4)
        try store.put("e", "e")
    }

    /// A snapshot that passes SQLite's checks but breaks the store's own invariants is refused
    /// before the store is touched (bea4cd2 copied it in, then trapped in `loadState`).
    @Test func snapshotsThatBreakInvariantsAreRefusedAndChangeNothing() throws {
        let target = try TestStore()
        try target.put("keep", "me")
        let digest = try target.store.stateDigest()
        let edits = [
            "UPDATE meta SET value = 0 WHERE name = 'current_revision'",
            "UPDATE meta SET value = -5 WHERE name = 'current_revision'",
            "UPDATE meta SET value = 9223372036854775807 WHERE name = 'current_revision'",
            "UPDATE meta SET value = 99 WHERE name = 'compact_revision'",
            "UPDATE meta SET value = -1 WHERE name = 'compact_revision'",
            "DELETE FROM meta WHERE name = 'current_revision'",
            "UPDATE meta SET value = 7 WHERE name = 'schema_version'",
            "UPDATE kv SET revision = revision + 50",
            // Two writes at one position of the history (the key index needs them distinct).
            "DROP INDEX kv_revision; UPDATE kv SET revision = 2, sub = 0",
            "DROP TABLE members",
            "DROP TABLE leases; CREATE TABLE leases (id INTEGER PRIMARY KEY)",
            "CREATE TABLE extra (x)",
            "CREATE VIEW everything AS SELECT * FROM kv",
            "CREATE TRIGGER refuse BEFORE INSERT ON kv BEGIN SELECT RAISE(ABORT, 'no'); END",
        ]
        for edit in edits {
            let source = try TestStore()
            try source.put("a", "1")
            try source.put("b", "2")
            try source.store.database.execute(edit)
            let image = try source.store.snapshotData()
            #expect(throws: KVStoreError.self, "\(edit)") { try KVStore.validateSnapshot(image) }
            #expect(throws: KVStoreError.self, "\(edit)") { try target.store.restore(from: image) }
            #expect(try target.store.stateDigest() == digest, "\(edit)")
        }
        // A snapshot at index N must hold everything up to N.
        let source = try TestStore()
        try source.put("a", "1")
        let image = try source.store.snapshotData()
        #expect(throws: KVStoreError.self) { try target.store.restore(from: image, appliedIndexMin: source.index + 1) }
        try KVStore.validateSnapshot(image, appliedIndexMin: source.index)
        #expect(try target.store.stateDigest() == digest)
        try target.put("still", "writable")
        try target.reopen()
        #expect(try target.get("keep")?.value == bytes("me"))
        // And a good one still restores.
        try target.store.restore(from: image, appliedIndexMin: source.index)
        #expect(try target.store.stateDigest() == source.store.stateDigest())
    }

    /// A store file whose meta table was edited is refused at open, with a reason, not a trap.
    @Test func openRefusesBrokenMetaValues() throws {
        let store = try TestStore()
        try store.put("a", "1")
        try store.store.database.execute("UPDATE meta SET value = 0 WHERE name = 'current_revision'")
        store.store.close()
        #expect(throws: KVStoreError.self) { _ = try KVStore.open(path: store.path) }
        store.store = try KVStore.open(path: ":memory:")
    }
}
