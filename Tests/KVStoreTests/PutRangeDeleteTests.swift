import Testing

@testable import KVStore

/// Put, range and delete, each expectation as etcd documents it (api_guarantees, rpc.proto).
@Suite struct PutRangeDeleteTests {
    @Test func newStoreIsAtRevisionOneAndFirstPutIsRevisionTwo() throws {
        let store = try TestStore()
        #expect(store.store.currentRevision == 1)
        #expect(try store.range(RangeRequest(key: bytes("a"))).header.revision == 1)
        let put = try store.put("a", "1")
        #expect(put.header.revision == 2)
        let kv = try #require(try store.get("a"))
        #expect(kv == KeyValue(key: bytes("a"), createRevision: 2, modRevision: 2, version: 1, value: bytes("1"), lease: 0))
    }

    @Test func putsBumpVersionAndKeepCreateRevision() throws {
        let store = try TestStore()
        try store.put("a", "1")
        try store.put("b", "x")
        let second = try store.put("a", "2", prevKv: true)
        #expect(second.header.revision == 4)
        #expect(second.prevKv?.value == bytes("1"))
        #expect(second.prevKv?.version == 1)
        let kv = try #require(try store.get("a"))
        #expect(kv.createRevision == 2 && kv.modRevision == 4 && kv.version == 2 && kv.value == bytes("2"))
    }

    @Test func deleteResetsVersionAndRecreateGetsNewCreateRevision() throws {
        let store = try TestStore()
        try store.put("a", "1")
        try store.put("a", "2")
        let deleted = try store.delete("a", prevKv: true)
        #expect(deleted.deleted == 1)
        #expect(deleted.header.revision == 4)
        #expect(deleted.prevKvs.map(\.value) == [bytes("2")])
        #expect(try store.get("a") == nil)
        try store.put("a", "3")
        let kv = try #require(try store.get("a"))
        #expect(kv.createRevision == 5 && kv.version == 1)
    }

    @Test func deletingNothingDoesNotBumpTheRevision() throws {
        let store = try TestStore()
        try store.put("a", "1")
        let deleted = try store.delete("zzz")
        #expect(deleted.deleted == 0)
        #expect(deleted.header.revision == 2)
        #expect(store.store.currentRevision == 2)
        let rangeDelete = try store.delete("b", "c")
        #expect(rangeDelete.deleted == 0 && store.store.currentRevision == 2)
    }

    @Test func deleteRangeDeletesAllInOneRevision() throws {
        let store = try TestStore()
        for key in ["a", "b", "c", "d"] { try store.put(key, key) }
        let deleted = try store.delete("b", "d")
        #expect(deleted.deleted == 2)
        #expect(deleted.header.revision == 6)
        #expect(try store.keys(RangeRequest(key: [0], rangeEnd: [0])) == ["a", "d"])
    }

    @Test func rangeShapes() throws {
        let store = try TestStore()
        for key in ["a", "ab", "abc", "b", "c"] { try store.put(key, "v" + key) }
        // Single key.
        #expect(try store.keys(RangeRequest(key: bytes("ab"))) == ["ab"])
        // Half-open [key, range_end).
        #expect(try store.keys(RangeRequest(key: bytes("ab"), rangeEnd: bytes("b"))) == ["ab", "abc"])
        // Prefix "a" is [a, b).
        #expect(try store.keys(RangeRequest(key: bytes("a"), rangeEnd: bytes("b"))) == ["a", "ab", "abc"])
        // From key: range_end "\0".
        #expect(try store.keys(RangeRequest(key: bytes("b"), rangeEnd: [0])) == ["b", "c"])
        // All keys: key "\0", range_end "\0".
        #expect(try store.keys(RangeRequest(key: [0], rangeEnd: [0])) == ["a", "ab", "abc", "b", "c"])
        // An end before the start is empty.
        #expect(try store.keys(RangeRequest(key: bytes("c"), rangeEnd: bytes("a"))) == [])
    }

    @Test func limitMoreAndCount() throws {
        let store = try TestStore()
        for key in ["a", "b", "c", "d", "e"] { try store.put(key, key) }
        let limited = try store.range(RangeRequest(key: [0], rangeEnd: [0], limit: 2))
        #expect(limited.kvs.map { text($0.key) } == ["a", "b"])
        #expect(limited.more)
        #expect(limited.count == 5)
        let exact = try store.range(RangeRequest(key: [0], rangeEnd: [0], limit: 5))
        #expect(!exact.more && exact.kvs.count == 5)
        let unlimited = try store.range(RangeRequest(key: [0], rangeEnd: [0]))
        #expect(!unlimited.more && unlimited.count == 5)
    }

    @Test func readsAtOlderRevisionsSeeHistory() throws {
        let store = try TestStore()
        try store.put("a", "1")  // 2
        try store.put("a", "2")  // 3
        try store.delete("a")  // 4
        try store.put("b", "1")  // 5
        #expect(try store.get("a", revision: 2)?.value == bytes("1"))
        #expect(try store.get("a", revision: 3)?.value == bytes("2"))
        #expect(try store.get("a", revision: 4) == nil)
        #expect(try store.get("a", revision: 1) == nil)
        #expect(try store.keys(RangeRequest(key: [0], rangeEnd: [0], revision: 3)) == ["a"])
        let old = try store.range(RangeRequest(key: [0], rangeEnd: [0], revision: 3))
        #expect(old.header.revision == 5, "etcd answers with the current revision in the header")
        #expect(try store.store.range(RangeRequest(key: bytes("a"), revision: 6)) == .failure(.futureRevision))
        #expect(KVError.futureRevision.message == "etcdserver: mvcc: required revision is a future revision")
    }

    @Test func sortOrdersAndTargets() throws {
        let store = try TestStore()
        try store.put("c", "1")  // create 2
        try store.put("a", "3")  // create 3
        try store.put("b", "2")  // create 4
        try store.put("c", "9")  // c: version 2, mod 5
        let all: (RangeRequest.SortOrder, RangeRequest.SortTarget) throws -> [String] = { order, target in
            try store.keys(RangeRequest(key: [0], rangeEnd: [0], sortOrder: order, sortTarget: target))
        }
        #expect(try all(.none, .key) == ["a", "b", "c"])
        #expect(try all(.ascend, .key) == ["a", "b", "c"])
        #expect(try all(.descend, .key) == ["c", "b", "a"])
        #expect(try all(.ascend, .create) == ["c", "a", "b"])
        #expect(try all(.descend, .create) == ["b", "a", "c"])
        #expect(try all(.none, .create) == ["c", "a", "b"], "a non-key target with order NONE sorts ascending")
        #expect(try all(.descend, .mod) == ["c", "b", "a"])
        #expect(try all(.ascend, .value) == ["b", "a", "c"])
        #expect(try all(.descend, .version) == ["c", "b", "a"])
        #expect(try all(.ascend, .version) == ["a", "b", "c"], "ties broken by key")
        // Sorting happens before the limit cuts.
        let top = try store.range(RangeRequest(key: [0], rangeEnd: [0], limit: 1, sortOrder: .descend, sortTarget: .value))
        #expect(top.kvs.map { text($0.key) } == ["c"] && top.more && top.count == 3)
    }

    @Test func keysOnlyAndCountOnly() throws {
        let store = try TestStore()
        try store.put("a", "1")
        try store.put("b", "2")
        let keysOnly = try store.range(RangeRequest(key: [0], rangeEnd: [0], keysOnly: true))
        #expect(keysOnly.kvs.map { text($0.key) } == ["a", "b"])
        #expect(keysOnly.kvs.allSatisfy { $0.value.isEmpty && $0.version == 1 })
        let countOnly = try store.range(RangeRequest(key: [0], rangeEnd: [0], countOnly: true))
        #expect(countOnly.kvs.isEmpty && countOnly.count == 2)
    }

    @Test func minAndMaxRevisionFilters() throws {
        let store = try TestStore()
        try store.put("a", "1")  // create 2
        try store.put("b", "1")  // create 3
        try store.put("c", "1")  // create 4
        try store.put("a", "2")  // a mod 5
        let filter: (RangeRequest) throws -> [String] = { try store.keys($0) }
        #expect(try filter(RangeRequest(key: [0], rangeEnd: [0], minModRevision: 4)) == ["a", "c"])
        #expect(try filter(RangeRequest(key: [0], rangeEnd: [0], maxModRevision: 3)) == ["b"])
        #expect(try filter(RangeRequest(key: [0], rangeEnd: [0], minCreateRevision: 3)) == ["b", "c"])
        #expect(try filter(RangeRequest(key: [0], rangeEnd: [0], maxCreateRevision: 3)) == ["a", "b"])
        let counted = try store.range(RangeRequest(key: [0], rangeEnd: [0], maxModRevision: 3))
        #expect(counted.count == 3, "count is the range's size, before filters")
    }

    @Test func putOptionsAndTheirErrors() throws {
        let store = try TestStore()
        let missing = try store.apply(.put(PutRequest(key: bytes("a"), ignoreValue: true)))
        #expect(missing == .error(.keyNotFound))
        let provided = try store.apply(.put(PutRequest(key: bytes("a"), value: bytes("x"), ignoreValue: true)))
        #expect(provided == .error(.valueProvided))
        #expect(KVError.valueProvided.message == "etcdserver: value is provided")
        let unknownLease = try store.apply(.put(PutRequest(key: bytes("a"), value: bytes("x"), lease: 42)))
        #expect(unknownLease == .error(.leaseNotFound))
        #expect(try store.apply(.put(PutRequest(key: []))) == .error(.emptyKey))
        #expect(store.store.currentRevision == 1, "refused requests change nothing")

        let lease = try store.grant(ttl: 60)
        try store.put("a", "1", lease: lease)
        try store.apply(.put(PutRequest(key: bytes("a"), ignoreValue: true)))
        let kept = try #require(try store.get("a"))
        #expect(kept.value == bytes("1") && kept.version == 2 && kept.lease == 0, "ignore_value keeps the value only")
        try store.put("a", "2", lease: lease)
        try store.apply(.put(PutRequest(key: bytes("a"), value: bytes("3"), ignoreLease: true)))
        let leaseKept = try #require(try store.get("a"))
        #expect(leaseKept.value == bytes("3") && leaseKept.lease == lease)
        #expect(try store.apply(.put(PutRequest(key: bytes("a"), lease: lease, ignoreLease: true))) == .error(.leaseProvided))
    }

    @Test func appliedIndexPersistsAcrossReopen() throws {
        let store = try TestStore()
        try store.put("a", "1")
        try store.put("b", "2")
        #expect(store.store.appliedIndex == 2)
        try store.reopen()
        #expect(store.store.appliedIndex == 2)
        #expect(store.store.currentRevision == 3)
        #expect(try store.get("b")?.value == bytes("2"))
        // Replaying an applied index is the caller's bug, refused without a change.
        #expect(throws: KVStoreError.self) {
            try store.store.apply([(index: 2, request: .put(PutRequest(key: bytes("c"))))])
        }
        #expect(store.store.currentRevision == 3)
    }

    @Test func oneBatchIsOneTransactionWithOneResponsePerEntry() throws {
        let store = try TestStore()
        let responses = try store.store.apply([
            (index: 1, request: .put(PutRequest(key: bytes("a"), value: bytes("1")))),
            (index: 2, request: .put(PutRequest(key: bytes("a"), ignoreLease: true))),
            (index: 3, request: .deleteRange(DeleteRangeRequest(key: bytes("a")))),
        ])
        #expect(responses.map(\.headerRevision) == [2, 3, 4])
        #expect(store.store.appliedIndex == 3)
        #expect(store.store.lastAppliedEvents.map(\.type) == [.put, .put, .delete])
    }
}
