import Testing

@testable import KVStore

/// Txn semantics as etcd's `applyTxn` / `applyCompare` / `checkIntervals` define them.
@Suite struct TxnTests {
    func txn(_ store: TestStore, _ request: TxnRequest) throws -> TxnResponse? {
        let response = try store.apply(.txn(request))
        guard case .txn(let txn) = response else { return nil }
        return txn
    }

    /// Runs a one-compare txn and tells which branch ran.
    func holds(_ store: TestStore, _ key: String, _ target: Compare.Target, _ result: Compare.Result) throws -> Bool {
        try #require(try txn(store, TxnRequest(compare: [Compare(key: bytes(key), target: target, result: result)])))
            .succeeded
    }

    @Test func compareEveryTargetWithEveryResult() throws {
        let store = try TestStore()
        let lease = try store.grant(ttl: 60)
        try store.put("k", "m")  // create 2, mod 2
        try store.put("k", "m", lease: lease)  // version 2, mod 3
        // (target on the stored value, smaller operand, equal operand, larger operand)
        let cases: [(Compare.Target, Compare.Target, Compare.Target)] = [
            (.version(1), .version(2), .version(3)),
            (.createRevision(1), .createRevision(2), .createRevision(3)),
            (.modRevision(2), .modRevision(3), .modRevision(4)),
            (.value(bytes("a")), .value(bytes("m")), .value(bytes("z"))),
            (.lease(lease - 1), .lease(lease), .lease(lease + 1)),
        ]
        for (smaller, equal, larger) in cases {
            #expect(try holds(store, "k", equal, .equal), "\(equal) == stored")
            #expect(try !holds(store, "k", smaller, .equal))
            #expect(try holds(store, "k", smaller, .greater), "stored > \(smaller)")
            #expect(try !holds(store, "k", equal, .greater))
            #expect(try holds(store, "k", larger, .less), "stored < \(larger)")
            #expect(try !holds(store, "k", equal, .less))
            #expect(try holds(store, "k", larger, .notEqual))
            #expect(try !holds(store, "k", equal, .notEqual))
        }
        #expect(store.store.currentRevision == 3, "compare-only txns write nothing")
    }

    @Test func missingKeysCompareAsZeroAndValueComparesFail() throws {
        let store = try TestStore()
        #expect(try holds(store, "missing", .version(0), .equal))
        #expect(try holds(store, "missing", .createRevision(0), .equal))
        #expect(try holds(store, "missing", .modRevision(0), .equal))
        #expect(try holds(store, "missing", .lease(0), .equal))
        #expect(try !holds(store, "missing", .value([]), .equal), "etcd: a value compare on a missing key is false")
        #expect(try !holds(store, "missing", .value([]), .notEqual))
    }

    @Test func compareOnARangeNeedsEveryKey() throws {
        let store = try TestStore()
        try store.put("p/a", "1")
        try store.put("p/b", "1")
        try store.put("p/b", "2")
        let all = { (result: Compare.Result, version: Int64) in
            try #require(try self.txn(store, TxnRequest(compare: [
                Compare(key: bytes("p/"), rangeEnd: bytes("p0"), target: .version(version), result: result),
            ]))).succeeded
        }
        #expect(try all(.greater, 0))
        #expect(try !all(.equal, 1), "p/b has version 2")
        #expect(try all(.less, 3))
    }

    @Test func branchesRunAndReadTheirOwnWrites() throws {
        let store = try TestStore()
        try store.put("x", "1")
        let casOK = try #require(try txn(store, TxnRequest(
            compare: [Compare(key: bytes("x"), target: .value(bytes("1")), result: .equal)],
            success: [
                .put(PutRequest(key: bytes("x"), value: bytes("2"))),
                .put(PutRequest(key: bytes("y"), value: bytes("2"))),
                .range(RangeRequest(key: bytes("y"))),
            ],
            failure: [.put(PutRequest(key: bytes("z"), value: bytes("never")))])))
        #expect(casOK.succeeded)
        #expect(casOK.header.revision == 3, "all writes of one txn share one revision")
        guard case .range(let read) = casOK.responses[2] else { Issue.record("expected a range"); return }
        #expect(read.kvs.first?.value == bytes("2") && read.kvs.first?.modRevision == 3)
        #expect(casOK.responses.allSatisfy { response in
            if case .put(let put) = response { return put.header.revision == 3 }
            return true
        })
        #expect(try store.get("z") == nil)
        let events = store.store.lastAppliedEvents
        #expect(events.map { text($0.kv.key) } == ["x", "y"])

        let casFailed = try #require(try txn(store, TxnRequest(
            compare: [Compare(key: bytes("x"), target: .value(bytes("1")), result: .equal)],
            success: [.put(PutRequest(key: bytes("x"), value: bytes("3")))],
            failure: [.range(RangeRequest(key: bytes("x"))), .deleteRange(DeleteRangeRequest(key: bytes("y")))])))
        #expect(!casFailed.succeeded)
        #expect(casFailed.header.revision == 4)
        #expect(try store.get("y") == nil)
        #expect(try store.get("x")?.value == bytes("2"))
    }

    @Test func nestedTxns() throws {
        let store = try TestStore()
        let response = try #require(try txn(store, TxnRequest(
            success: [
                .put(PutRequest(key: bytes("outer"), value: bytes("1"))),
                .txn(TxnRequest(
                    compare: [Compare(key: bytes("outer"), target: .version(1), result: .equal)],
                    success: [.put(PutRequest(key: bytes("inner"), value: bytes("1")))],
                    failure: [.put(PutRequest(key: bytes("other"), value: bytes("1")))])),
            ])))
        guard case .txn(let nested) = response.responses[1] else { Issue.record("expected a nested txn"); return }
        #expect(nested.succeeded, "the nested compare sees the outer put")
        #expect(nested.header.revision == 2)
        #expect(try store.keys(RangeRequest(key: [0], rangeEnd: [0])) == ["inner", "outer"])
        #expect(store.store.currentRevision == 2)
    }

    @Test func operationLimit() throws {
        let store = try TestStore()
        let puts = (0..<128).map { RequestOp.put(PutRequest(key: bytes("k\($0)"), value: [1])) }
        #expect(try txn(store, TxnRequest(success: puts))?.succeeded == true)
        #expect(store.store.currentRevision == 2)
        let tooMany = puts + [.put(PutRequest(key: bytes("k128"), value: [1]))]
        #expect(try store.apply(.txn(TxnRequest(success: tooMany))) == .error(.tooManyOperations))
        #expect(KVError.tooManyOperations.message == "etcdserver: too many operations in txn request")
        let compares = (0..<129).map { _ in Compare(key: bytes("a"), target: .version(0), result: .equal) }
        #expect(try store.apply(.txn(TxnRequest(compare: compares))) == .error(.tooManyOperations))
        let nestedTooMany = TxnRequest(failure: [.txn(TxnRequest(failure: tooMany))])
        #expect(try store.apply(.txn(nestedTooMany)) == .error(.tooManyOperations))
        #expect(store.store.currentRevision == 2)
        // The shell can refuse the same before proposing.
        #expect(KVRequest.txn(TxnRequest(success: tooMany)).validate() == .tooManyOperations)
        #expect(KVRequest.put(PutRequest(key: bytes("a"), value: [UInt8](repeating: 1, count: 1_600_000))).validate()
            == .requestTooLarge)
        #expect(KVRequest.put(PutRequest(key: [])).validate() == .emptyKey)
        #expect(KVRequest.txn(TxnRequest(success: puts)).validate() == nil)
    }

    @Test func duplicateKeys() throws {
        let store = try TestStore()
        let put = { (key: String) in RequestOp.put(PutRequest(key: bytes(key), value: [1])) }
        let dup = KVResponse.error(.duplicateKey)
        #expect(try store.apply(.txn(TxnRequest(success: [put("a"), put("a")]))) == dup)
        #expect(try store.apply(.txn(TxnRequest(success: [
            put("b"), .deleteRange(DeleteRangeRequest(key: bytes("a"), rangeEnd: bytes("c"))),
        ]))) == dup)
        #expect(try store.apply(.txn(TxnRequest(success: [put("a"), .txn(TxnRequest(success: [put("a")]))]))) == dup)
        // Allowed: the same key in both branches, overlapping deletes, same key in a nested
        // txn's success and failure.
        #expect(try store.apply(.txn(TxnRequest(success: [put("a")], failure: [put("a")]))).headerRevision == 2)
        let deletes = TxnRequest(success: [
            .deleteRange(DeleteRangeRequest(key: bytes("a"), rangeEnd: bytes("c"))),
            .deleteRange(DeleteRangeRequest(key: bytes("a"))),
        ])
        guard case .txn(let deleted) = try store.apply(.txn(deletes)) else { Issue.record("deletes refused"); return }
        #expect(deleted.header.revision == 3)
        guard case .deleteRange(let second) = deleted.responses[1] else { return }
        #expect(second.deleted == 0, "the first delete already removed a")
        #expect(try store.apply(.txn(TxnRequest(success: [
            .txn(TxnRequest(success: [put("q")], failure: [put("q")])),
        ]))).headerRevision == 4)
        #expect(KVError.duplicateKey.message == "etcdserver: duplicate key given in txn request")
    }

    @Test func aRefusalHalfWayUndoesTheWholeTxn() throws {
        let store = try TestStore()
        let response = try store.apply(.txn(TxnRequest(success: [
            .put(PutRequest(key: bytes("a"), value: [1])),
            .put(PutRequest(key: bytes("b"), value: [1], lease: 999)),
        ])))
        #expect(response == .error(.leaseNotFound))
        #expect(try store.get("a") == nil)
        #expect(store.store.currentRevision == 1)
        #expect(store.store.lastAppliedEvents.isEmpty)
    }

    @Test func readsInATxnCannotNameTheTxnsOwnRevision() throws {
        let store = try TestStore()
        try store.put("a", "1")
        let response = try store.apply(.txn(TxnRequest(success: [
            .put(PutRequest(key: bytes("b"), value: [1])),
            .range(RangeRequest(key: bytes("a"), revision: 3)),
        ])))
        #expect(response == .error(.futureRevision))
    }
}
