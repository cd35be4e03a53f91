import Foundation
import Testing

@testable import KVStore

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// A store in a fresh temporary directory, with a Raft index counter and shorthand requests.
final class TestStore {
    let directory: URL
    var store: KVStore
    var index: UInt64 = 0

    init(limits: KVLimits = .default) throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("kvstore-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        store = try KVStore.open(path: directory.appendingPathComponent("kv.sqlite").path, limits: limits)
    }

    var path: String { directory.appendingPathComponent("kv.sqlite").path }

    deinit {
        store.close()
        try? FileManager.default.removeItem(at: directory)
    }

    func reopen() throws {
        store.close()
        store = try KVStore.open(path: path)
    }

    @discardableResult
    func apply(_ request: KVRequest) throws -> KVResponse {
        index += 1
        let responses = try store.apply([(index: index, request: request)])
        #expect(responses.count == 1)
        return responses[0]
    }

    @discardableResult
    func put(_ key: String, _ value: String, lease: Int64 = 0, prevKv: Bool = false) throws -> PutResponse {
        let response = try apply(.put(PutRequest(key: bytes(key), value: bytes(value), lease: lease, prevKv: prevKv)))
        guard case .put(let put) = response else {
            Issue.record("put \(key) failed: \(response)")
            return PutResponse(header: ResponseHeader(revision: -1))
        }
        return put
    }

    @discardableResult
    func delete(_ key: String, _ rangeEnd: String = "", prevKv: Bool = false) throws -> DeleteRangeResponse {
        let response = try apply(.deleteRange(DeleteRangeRequest(key: bytes(key), rangeEnd: bytes(rangeEnd),
                                                                 prevKv: prevKv)))
        guard case .deleteRange(let delete) = response else {
            Issue.record("delete \(key) failed: \(response)")
            return DeleteRangeResponse(header: ResponseHeader(revision: -1), deleted: -1)
        }
        return delete
    }

    func range(_ request: RangeRequest) throws -> RangeResponse {
        switch try store.range(request) {
        case .success(let response): return response
        case .failure(let error):
            Issue.record("range failed: \(error)")
            return RangeResponse(header: ResponseHeader(revision: -1), kvs: [], more: false, count: -1)
        }
    }

    func get(_ key: String, revision: Int64 = 0) throws -> KeyValue? {
        try range(RangeRequest(key: bytes(key), revision: revision)).kvs.first
    }

    /// The keys a range returns, as strings.
    func keys(_ request: RangeRequest) throws -> [String] {
        try range(request).kvs.map { text($0.key) }
    }

    func grant(ttl: Int64, id: Int64 = 0) throws -> Int64 {
        let response = try apply(.leaseGrant(LeaseGrantRequest(ttl: ttl, id: id)))
        guard case .leaseGrant(let grant) = response else {
            Issue.record("grant failed: \(response)")
            return 0
        }
        return grant.id
    }
}

/// A deterministic generator (SplitMix64) so that random workloads replay from a seed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}
