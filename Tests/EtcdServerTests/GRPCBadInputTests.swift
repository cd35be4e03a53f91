import ClusterHarness
import EtcdAPI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCProtobuf
import Testing

/// Passes bytes through unchanged: lets a test send what no protobuf encoder would.
struct RawBytes: MessageSerializer, MessageDeserializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
        serializedMessageBytes.withUnsafeBytes { Array($0) }
    }
}

/// Runs `body` with a gRPC client of one member's client port.
func withEtcdClient<Result: Sendable>(port: Int, _ body: @Sendable (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Result) async throws -> Result {
    try await withGRPCClient(transport: .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)) { client in
        try await body(client)
    }
}

/// What a gRPC call failed with (nil if it succeeded).
func rpcError(_ call: @Sendable () async throws -> Void) async -> RPCError? {
    do {
        try await call()
        return nil
    } catch let error as RPCError {
        return error
    } catch {
        return RPCError(code: .unknown, message: "\(error)")
    }
}

@Suite("Bad input over gRPC", .serialized)
struct GRPCBadInputTests {
    @Test("Malformed protobuf, too many txn ops, empty keys, bad ranges: etcd's codes and messages, nothing written, the member keeps serving")
    func badInput() async throws {
        let cluster = try StoreCluster(name: "grpcbad")
        defer { cluster.tearDown() }
        try cluster.start()
        try cluster.waitUntilServing()
        try await withEtcdClient(port: cluster.clientPort(1)) { client in
            try await Self.checks(client)
        }
    }

    static func checks(_ client: GRPCClient<HTTP2ClientTransport.Posix>) async throws {
        let kv = Etcdserverpb_KV.Client(wrapping: client)
        // Bytes that are not a PutRequest (a field with a truncated length prefix).
        let malformed = await rpcError {
            _ = try await client.unary(
                request: ClientRequest(message: [0x0A, 0xFF, 0xFF, 0x01]), descriptor: Etcdserverpb_KV.Method.Put.descriptor,
                serializer: RawBytes(), deserializer: RawBytes(), options: .defaults) { try $0.message }
        }
        #expect(malformed != nil && malformed?.code != .unavailable, "\(String(describing: malformed))")

        var txn = Etcdserverpb_TxnRequest()
        txn.success = (0..<129).map { index in
            var op = Etcdserverpb_RequestOp()
            op.requestPut = .with { $0.key = Data("t\(index)".utf8) }
            return op
        }
        let oversized = txn
        let tooMany = await rpcError { _ = try await kv.txn(oversized) }
        #expect(tooMany?.code == .invalidArgument && tooMany?.message == "etcdserver: too many operations in txn request", "\(String(describing: tooMany))")
        txn.success.removeLast()
        let allowed = txn
        let fits = await rpcError { _ = try await kv.txn(allowed) }
        #expect(fits == nil, "128 operations are allowed")

        let emptyPut = await rpcError { _ = try await kv.put(Etcdserverpb_PutRequest()) }
        #expect(emptyPut?.code == .invalidArgument && emptyPut?.message == "etcdserver: key is not provided", "\(String(describing: emptyPut))")
        let emptyRange = await rpcError { _ = try await kv.range(Etcdserverpb_RangeRequest()) }
        #expect(emptyRange?.code == .invalidArgument && emptyRange?.message == "etcdserver: key is not provided", "\(String(describing: emptyRange))")
        let emptyDelete = await rpcError { _ = try await kv.deleteRange(Etcdserverpb_DeleteRangeRequest()) }
        #expect(emptyDelete?.code == .invalidArgument, "\(String(describing: emptyDelete))")
        let future = await rpcError { _ = try await kv.range(.with { $0.key = Data("ready".utf8); $0.revision = 1_000_000 }) }
        #expect(future?.code == .outOfRange && future?.message == "etcdserver: mvcc: required revision is a future revision", "\(String(describing: future))")
        let unknownLease = await rpcError { _ = try await kv.put(.with { $0.key = Data("k".utf8); $0.lease = 99 }) }
        #expect(unknownLease?.code == .notFound && unknownLease?.message == "etcdserver: requested lease not found", "\(String(describing: unknownLease))")

        // Still serving, and only the readiness probe and the 128-op txn wrote anything.
        let all = try await kv.range(.with { $0.key = Data([0]); $0.rangeEnd = Data([0]); $0.countOnly = true })
        #expect(all.count == 129)
    }
}
