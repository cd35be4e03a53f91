import Testing

@testable import KVStore

/// ``KVLimits/rangeResultBytesMax``: a range, alone or inside a txn, that would gather more keys
/// and values than the cap fails with `responseTooLarge` (gRPC RESOURCE_EXHAUSTED) instead of
/// building the response; a txn that holds one changes nothing.
@Suite struct RangeResultLimitTests {
    /// A cap of 3,500 bytes: room for three values of 900 bytes (942 with key and allowance), not four.
    static let limits = KVLimits(requestBytesMax: 1024, rangeResultBytesMax: 3500)
    static let value = String(repeating: "v", count: 900)

    func filled(_ keys: Int) throws -> TestStore {
        let store = try TestStore(limits: Self.limits)
        for number in 0..<keys { try store.put("k\(number)", Self.value) }
        return store
    }

    @Test func aRangeUnderTheCapIsAnswered() throws {
        let store = try filled(3)
        let response = try store.store.range(RangeRequest(key: bytes("k"), rangeEnd: bytes("l"))).get()
        #expect(response.kvs.count == 3)
    }

    @Test func aRangeOverTheCapFailsWithResourceExhausted() throws {
        let store = try filled(5)
        let result = try store.store.range(RangeRequest(key: bytes("k"), rangeEnd: bytes("l")))
        #expect(result == .failure(.responseTooLarge))
        #expect(KVError.responseTooLarge.grpcCode == .resourceExhausted)
    }

    @Test func aLimitOrKeysOnlyOrCountOnlyKeepsTheRangeUnderTheCap() throws {
        let store = try filled(5)
        let limited = try store.store.range(RangeRequest(key: bytes("k"), rangeEnd: bytes("l"), limit: 2)).get()
        #expect(limited.kvs.count == 2 && limited.more && limited.count == 5)
        let keys = try store.store.range(RangeRequest(key: bytes("k"), rangeEnd: bytes("l"), keysOnly: true)).get()
        #expect(keys.kvs.count == 5)
        let counted = try store.store.range(RangeRequest(key: bytes("k"), rangeEnd: bytes("l"), countOnly: true)).get()
        #expect(counted.count == 5 && counted.kvs.isEmpty)
    }

    @Test func sortingGathersEveryMatchSoTheCapCountsThemAll() throws {
        let store = try filled(5)
        let sorted = try store.store.range(RangeRequest(key: bytes("k"), rangeEnd: bytes("l"), limit: 1, sortOrder: .descend))
        #expect(sorted == .failure(.responseTooLarge))
    }

    @Test func aTxnWhoseRangeIsOverTheCapFailsWholeAndWritesNothing() throws {
        let store = try filled(5)
        let revision = store.store.currentRevision
        let response = try store.apply(.txn(TxnRequest(success: [
            .put(PutRequest(key: bytes("written"), value: bytes("x"))),
            .range(RangeRequest(key: bytes("k"), rangeEnd: bytes("l"))),
        ])))
        #expect(response == .error(.responseTooLarge))
        #expect(store.store.currentRevision == revision)
        #expect(try store.store.range(RangeRequest(key: bytes("written"))).get().kvs.isEmpty)
        // The same txn with a narrower range goes through.
        let narrow = try store.apply(.txn(TxnRequest(success: [
            .put(PutRequest(key: bytes("written"), value: bytes("x"))),
            .range(RangeRequest(key: bytes("k0"))),
        ])))
        guard case .txn(let txn) = narrow else {
            Issue.record("\(narrow)")
            return
        }
        #expect(txn.succeeded && txn.responses.count == 2)
    }

    @Test func theCapMustHoldOneWrittenKey() {
        #expect(KVLimits(requestBytesMax: 2048, rangeResultBytesMax: 1024).validate() != nil)
        #expect(KVLimits.default.validate() == nil)
        #expect(KVLimits.default.rangeResultBytesMax == 64 << 20)
    }
}
