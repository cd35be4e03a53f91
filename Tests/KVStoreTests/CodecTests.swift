import Testing

@testable import KVStore

@Suite struct CodecTests {
    static let samples: [KVRequest] = [
        .range(RangeRequest(key: bytes("a"), rangeEnd: [0], limit: 3, revision: 9, sortOrder: .descend,
                            sortTarget: .value, serializable: true, keysOnly: true, countOnly: false,
                            minModRevision: 1, maxModRevision: 2, minCreateRevision: 3, maxCreateRevision: -4)),
        .put(PutRequest(key: bytes("k"), value: [0, 255, 7], lease: Int64.max, prevKv: true, ignoreValue: false,
                        ignoreLease: true)),
        .put(PutRequest(key: bytes("empty-value"))),
        .deleteRange(DeleteRangeRequest(key: bytes("a"), rangeEnd: bytes("b"), prevKv: true)),
        .txn(TxnRequest(
            compare: [
                Compare(key: bytes("a"), target: .version(1), result: .equal),
                Compare(key: bytes("a"), rangeEnd: bytes("z"), target: .createRevision(2), result: .greater),
                Compare(key: bytes("b"), target: .modRevision(3), result: .less),
                Compare(key: bytes("c"), target: .value(bytes("v")), result: .notEqual),
                Compare(key: bytes("d"), target: .lease(-1), result: .equal),
            ],
            success: [
                .range(RangeRequest(key: bytes("x"))),
                .put(PutRequest(key: bytes("y"), value: bytes("1"))),
                .deleteRange(DeleteRangeRequest(key: bytes("z"))),
                .txn(TxnRequest(success: [.put(PutRequest(key: bytes("n")))], failure: [])),
            ],
            failure: [.txn(TxnRequest())])),
        .txn(TxnRequest()),
        .compaction(CompactionRequest(revision: 42, physical: true)),
        .leaseGrant(LeaseGrantRequest(ttl: 10, id: 5)),
        .leaseRevoke(LeaseRevokeRequest(id: Int64.min)),
        .leaseCheckpoint(LeaseCheckpointRequest(checkpoints: [LeaseCheckpoint(id: 1, remainingTTL: 2)])),
        .leaseCheckpoint(LeaseCheckpointRequest(checkpoints: [])),
        .leaseExpire(LeaseExpireRequest(ids: [3, 1, 2])),
        .memberAttributes(MemberAttributes(id: UInt64.max, name: "m1", peerURLs: ["http://a:1", "http://b:2"], clientURLs: ["http://a:3"])),
        .memberAttributes(MemberAttributes(id: 7, name: "", peerURLs: [], clientURLs: [], removed: true)),
    ]

    @Test(arguments: samples)
    func roundTripAndEveryTruncationIsRejected(_ request: KVRequest) throws {
        let encoded = request.encoded()
        #expect(try KVRequest.decode(encoded) == request)
        #expect(request.encoded() == encoded, "encoding is deterministic")
        for length in 0..<encoded.count {
            #expect(throws: KVCodecError.self, "prefix of \(length) bytes") {
                try KVRequest.decode(Array(encoded.prefix(length)))
            }
        }
        #expect(throws: KVCodecError.trailingBytes(count: 1)) { try KVRequest.decode(encoded + [0]) }
    }

    @Test func garbageNeverCrashes() throws {
        var generator = SeededGenerator(seed: 7)
        var decoded = 0
        for round in 0..<20_000 {
            // Mutate a valid encoding, or make up bytes from nothing.
            var input: [UInt8]
            if round % 2 == 0 {
                input = CodecTests.samples[round / 2 % CodecTests.samples.count].encoded()
                for _ in 0..<Int.random(in: 1...4, using: &generator) {
                    input[Int.random(in: 0..<input.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
                }
            } else {
                input = (0..<Int.random(in: 0...64, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
                if input.count > 1 { input[0] = 1 }
            }
            if let request = try? KVRequest.decode(input) {
                decoded += 1
                #expect(request.encoded() == input, "anything accepted re-encodes to the same bytes")
            }
        }
        #expect(decoded > 0)
    }

    @Test func specificRejections() {
        #expect(throws: KVCodecError.unsupportedFormat(2)) { try KVRequest.decode([2, 0]) }
        #expect(throws: KVCodecError.invalidTag(field: "request", tag: 99)) { try KVRequest.decode([1, 99]) }
        // A huge list count with few bytes behind it is refused before allocating.
        #expect(throws: KVCodecError.countTooLarge(field: "lease ids", count: Int(UInt32.max))) {
            try KVRequest.decode([1, 8, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0])
        }
        // Deep nesting is refused, not a stack overflow.
        var deep = TxnRequest()
        for _ in 0..<40 { deep = TxnRequest(success: [.txn(deep)]) }
        #expect(throws: KVCodecError.nestingTooDeep(limit: 16)) { try KVRequest.decode(KVRequest.txn(deep).encoded()) }
    }
}
