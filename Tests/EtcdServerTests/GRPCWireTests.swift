import ClusterHarness
import EtcdAPI
import Foundation
import NIOCore
import Testing

@testable import EtcdServer

/// The store's gRPC server: message framing as a value, and what it answers on the wire to
/// requests no gRPC library would send (curl speaking HTTP/2 to a real member).
@Suite("gRPC server framing")
struct GRPCWireTests {
    static func framed(_ payload: [UInt8], flag: UInt8 = 0, length: Int? = nil) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(flag)
        buffer.writeInteger(UInt32(length ?? payload.count))
        buffer.writeBytes(payload)
        return buffer
    }

    @Test("Messages split across frames, several in one frame, and an empty one come out whole and in order")
    func reassembly() throws {
        var reader = GRPCMessageReader(messageBytesMax: 100)
        var stream = Self.framed([1, 2, 3])
        stream.writeImmutableBuffer(Self.framed([]))
        stream.writeImmutableBuffer(Self.framed(Array(repeating: 7, count: 100)))
        var messages: [[UInt8]] = []
        // One byte at a time, then the rest in one piece: every split point of the prefix and body.
        for _ in 0..<9 {
            messages += try reader.append(stream.readSlice(length: 1)!).map { Array($0.readableBytesView) }
        }
        messages += try reader.append(stream).map { Array($0.readableBytesView) }
        try reader.finish()
        #expect(messages == [[1, 2, 3], [], Array(repeating: 7, count: 100)])
    }

    @Test("Too large (refused at its prefix), compressed without an encoding, and truncated messages fail")
    func refusals() throws {
        var reader = GRPCMessageReader(messageBytesMax: 10)
        #expect(throws: GRPCMessageReader.Failure.tooLarge(length: 11, limit: 10)) {
            _ = try reader.append(Self.framed([], length: 11))
        }
        var compressed = GRPCMessageReader(messageBytesMax: 10)
        #expect(throws: GRPCMessageReader.Failure.compressed) { _ = try compressed.append(Self.framed([1], flag: 1)) }
        var truncated = GRPCMessageReader(messageBytesMax: 10)
        #expect(try truncated.append(Self.framed([1, 2], length: 5)).isEmpty)
        #expect(throws: GRPCMessageReader.Failure.truncated(bytes: 7)) { try truncated.finish() }
        var exact = GRPCMessageReader(messageBytesMax: 10)
        #expect(try exact.append(Self.framed(Array(repeating: 1, count: 10))).count == 1)
    }

    @Test("grpc-message is percent-encoded outside printable ASCII")
    func statusMessage() {
        #expect(GRPCStatusMessage.encode("etcdserver: key is not provided") == "etcdserver: key is not provided")
        #expect(GRPCStatusMessage.encode("100% é\n") == "100%25 %C3%A9%0A")
    }
}

/// HTTP/2 requests that no gRPC library sends, from curl (nghttp2) to a real member: each gets
/// gRPC's or HTTP's answer, and the member keeps serving.
@Suite("gRPC server on the wire", .serialized)
struct GRPCWireCurlTests {
    /// curl's exit status, and the response headers and trailers it printed.
    static func curl(_ url: String, _ arguments: [String], body: [UInt8]? = nil) throws -> (status: Int32, headers: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        var file: URL?
        var all = ["-s", "--http2-prior-knowledge", "--max-time", "10", "-D", "-", "-o", "/dev/null"] + arguments
        if let body {
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("grpc-wire-\(UUID().uuidString)")
            try Data(body).write(to: path)
            file = path
            all += ["-X", "POST", "--data-binary", "@\(path.path)"]
        }
        defer { if let file { try? FileManager.default.removeItem(at: file) } }
        process.arguments = all + [url]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static func prefixed(_ payload: [UInt8], flag: UInt8 = 0, length: Int? = nil) -> [UInt8] {
        Array(GRPCWireTests.framed(payload, flag: flag, length: length).readableBytesView)
    }

    @Test("Wrong HTTP method or content type, unknown method, compression, oversized, truncated and extra messages")
    func refusals() throws {
        #expect(FileManager.default.isExecutableFile(atPath: "/usr/bin/curl"), "curl is missing")
        let cluster = try StoreCluster(name: "grpcwire")
        defer { cluster.tearDown() }
        try cluster.start()
        try cluster.waitUntilServing()
        let base = "http://127.0.0.1:\(cluster.clientPort(1))"
        let range = base + "/etcdserverpb.KV/Range"
        let grpc = ["-H", "content-type: application/grpc", "-H", "te: trailers"]
        // RangeRequest{key: "a"}.
        let request: [UInt8] = [0x0A, 0x01, 0x61]

        func expectHeader(_ answer: (status: Int32, headers: String), _ lines: String..., sourceLocation: SourceLocation = #_sourceLocation) {
            // curl 7.88 that has a whole gRPC answer (Trailers-Only, END_STREAM) before it sent
            // its body sometimes stops sending and waits out --max-time (exit 28), though the
            // server answered in full: seen in 2 of 4 runs for the unknown-method request. Exit
            // 28 is accepted only with the grpc-status trailer received; the answer's lines are
            // checked either way.
            let complete = answer.status == 0 || (answer.status == 28 && answer.headers.contains("grpc-status:"))
            #expect(complete, "curl failed (\(answer.status)): \(answer.headers)", sourceLocation: sourceLocation)
            for line in lines {
                #expect(answer.headers.contains(line), "expected \(line) in:\n\(answer.headers)", sourceLocation: sourceLocation)
            }
        }

        expectHeader(try Self.curl(range, []), "HTTP/2 405")
        expectHeader(try Self.curl(range, ["-H", "content-type: text/plain"], body: Array("x".utf8)), "HTTP/2 415")
        expectHeader(try Self.curl(base + "/etcdserverpb.KV/Nope", grpc, body: Self.prefixed(request)),
                     "grpc-status: 12", "grpc-message: unknown method /etcdserverpb.KV/Nope")
        expectHeader(try Self.curl(range, grpc + ["-H", "grpc-encoding: gzip"], body: Self.prefixed(request)),
                     "grpc-status: 12", "grpc-message: grpc: Decompressor is not installed for grpc-encoding \"gzip\"")
        // Refused at the prefix: 3 MiB announced, 3 bytes sent; then refusals with a body of 1 MiB
        // after them, which the member reads and drops. Bodies stay within the stream's first
        // window: curl (7.88) that has its whole answer and must wait for window to send the rest
        // sometimes stops sending and waits for its timeout, whatever the server does. That the
        // member returns the window of dropped bytes is tested without curl (GRPCLimitsTests, a
        // 100 MiB refused message sent whole).
        expectHeader(try Self.curl(range, grpc, body: Self.prefixed(request, length: 3 << 20)),
                     "grpc-status: 8", "grpc-message: grpc: received message larger than max (3145728 vs. 2097152)")
        expectHeader(try Self.curl(base + "/etcdserverpb.KV/Nope", grpc, body: Array(repeating: 0, count: 1 << 20)), "grpc-status: 12")
        expectHeader(try Self.curl(range, ["-H", "content-type: text/plain"], body: Array(repeating: 0, count: 1 << 20)), "HTTP/2 415")
        expectHeader(try Self.curl(range, grpc, body: Self.prefixed(request, flag: 1)), "grpc-status: 13", "compressed flag")
        expectHeader(try Self.curl(range, grpc, body: Self.prefixed(request, length: 100)), "grpc-status: 13", "the request ended inside a message")
        expectHeader(try Self.curl(range, grpc, body: Self.prefixed(request) + Self.prefixed(request)), "grpc-status: 13", "more than one request message")
        expectHeader(try Self.curl(range, grpc, body: []), "grpc-status: 13", "no request message")
        expectHeader(try Self.curl(range, grpc, body: Self.prefixed([0x0A, 0xFF, 0xFF, 0x01])), "grpc-status: 13", "error unmarshalling request")
        // A well-formed call still works: a header of 200, a message, grpc-status 0.
        expectHeader(try Self.curl(range, grpc, body: Self.prefixed(request)), "HTTP/2 200", "content-type: application/grpc", "grpc-status: 0")
        let (status, output, _) = try cluster.etcdctl(["put", "after", "refusals"])
        #expect(status == 0 && output.contains("OK"), "\(output)")
    }

    @Test("The bench's lean client (WireClient): puts through every member, reads them back, and gets each refusal's status")
    func leanClient() async throws {
        let cluster = try StoreCluster(name: "wireclient")
        defer { cluster.tearDown() }
        try cluster.start()
        try cluster.waitUntilServing()
        var clients: [WireClient] = []
        for member in 1...3 { clients.append(try await WireClient.connect(host: "127.0.0.1", port: cluster.clientPort(member))) }
        // Concurrent puts on each connection (followers forward theirs to the leader).
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, client) in clients.enumerated() {
                for number in 0..<20 {
                    group.addTask {
                        var put = Etcdserverpb_PutRequest()
                        put.key = Data("wire/\(index)/\(number)".utf8)
                        put.value = Data("v\(number)".utf8)
                        let response: Etcdserverpb_PutResponse = try await client.unary("/etcdserverpb.KV/Put", put)
                        #expect(response.header.revision > 1)
                    }
                }
            }
            try await group.waitForAll()
        }
        var range = Etcdserverpb_RangeRequest()
        range.key = Data("wire/".utf8)
        range.rangeEnd = Data("wire0".utf8)
        range.countOnly = true
        let counted: Etcdserverpb_RangeResponse = try await clients[2].unary("/etcdserverpb.KV/Range", range)
        #expect(counted.count == 60)
        range.key = Data("wire/1/7".utf8)
        range.rangeEnd = Data()
        range.countOnly = false
        let one: Etcdserverpb_RangeResponse = try await clients[0].unary("/etcdserverpb.KV/Range", range)
        #expect(one.kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["v7"])
        // Refusals come back as the call's gRPC status; the connection goes on.
        await #expect(throws: WireCallError(code: 3, message: "etcdserver: key is not provided")) {
            let _: Etcdserverpb_PutResponse = try await clients[0].unary("/etcdserverpb.KV/Put", Etcdserverpb_PutRequest())
        }
        await #expect(throws: WireCallError(code: 12, message: "unknown method /etcdserverpb.KV/Nope")) {
            let _: Etcdserverpb_PutResponse = try await clients[0].unary("/etcdserverpb.KV/Nope", Etcdserverpb_PutRequest())
        }
        let again: Etcdserverpb_RangeResponse = try await clients[0].unary("/etcdserverpb.KV/Range", range)
        #expect(again.kvs.count == 1)
        // A closed connection fails calls as unavailable.
        await clients[1].close()
        do {
            let _: Etcdserverpb_RangeResponse = try await clients[1].unary("/etcdserverpb.KV/Range", range)
            Issue.record("a call on a closed connection succeeded")
        } catch let error as WireCallError {
            #expect(error.code == 14)
        }
        for client in clients { await client.close() }
    }
}
