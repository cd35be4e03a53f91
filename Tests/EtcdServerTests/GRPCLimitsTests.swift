import ClusterHarness
import EtcdAPI
import Foundation
import Testing

@testable import EtcdServer

/// Hostile HTTP/2 clients against a real member (issue 11, item 12): each is cut off at a limit,
/// the member's memory stays bounded while it tries, and a well-behaved client connected beside
/// it (the lean client, then etcdctl) keeps working.
@Suite("Hostile gRPC clients meet the connection's limits", .serialized)
struct GRPCLimitsTests {
    /// What a hostile connection may add to the member's resident memory. The connection's byte
    /// budget is 16 MiB; without it the floods below make the member hold hundreds of MiB.
    static let residentGrowthMax = 96 << 20

    /// A one-member store, a lean client connected to it, and its process id.
    static func member(_ name: String) async throws -> (StoreCluster, WireClient, Int32) {
        let cluster = try StoreCluster(name: name, count: 1)
        try cluster.start()
        try cluster.waitUntilServing()
        let client = try await WireClient.connect(host: "127.0.0.1", port: cluster.clientPort(1))
        let pid = try #require(cluster.processIdentifier(1))
        return (cluster, client, pid)
    }

    /// The well-behaved clients still work: the one connected before, and a new etcdctl.
    static func expectServing(_ cluster: StoreCluster, _ client: WireClient, _ key: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        var put = Etcdserverpb_PutRequest()
        put.key = Data(key.utf8)
        put.value = Data("fine".utf8)
        let written: Etcdserverpb_PutResponse = try await client.unary("/etcdserverpb.KV/Put", put)
        #expect(written.header.revision > 1, sourceLocation: sourceLocation)
        let read = try cluster.etcdctl(["get", key, "--print-value-only"])
        #expect(read.status == 0 && read.stdout.contains("fine"), "\(read.output)", sourceLocation: sourceLocation)
    }

    /// Reads frames until the member closes the connection; returns them.
    static func framesUntilClosed(_ connection: RawConnection, seconds: Double = 15) -> (frames: [RawHTTP2.Frame], closed: Bool) {
        var pending: [UInt8] = []
        var frames: [RawHTTP2.Frame] = []
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            guard let bytes = connection.receive() else { continue }
            if bytes.isEmpty { return (frames, true) }
            frames += RawHTTP2.frames(bytes, pending: &pending)
        }
        return (frames, false)
    }

    static func goAway(in frames: [RawHTTP2.Frame]) -> (lastStream: UInt32, error: UInt32)? {
        frames.first { $0.type == RawHTTP2.FrameType.goAway.rawValue }.map { ($0.uint32(at: 0) & 0x7FFF_FFFF, $0.uint32(at: 4)) }
    }

    /// Sends a PING and reads until its ACK or a GOAWAY arrives (or the connection closes):
    /// the member has then processed everything sent before the PING.
    static func sync(_ connection: RawConnection, seconds: Double = 10) -> (acknowledged: Bool, goAway: (lastStream: UInt32, error: UInt32)?) {
        let payload: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
        connection.send(RawHTTP2.frame(.ping, stream: 0, payload))
        var pending: [UInt8] = []
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            guard let bytes = connection.receive() else { continue }
            if bytes.isEmpty { return (false, nil) }
            let frames = RawHTTP2.frames(bytes, pending: &pending)
            if let goAway = goAway(in: frames) { return (false, goAway) }
            if frames.contains(where: { $0.type == RawHTTP2.FrameType.ping.rawValue && $0.flags & 0x1 != 0 && $0.payload == payload }) { return (true, nil) }
        }
        return (false, nil)
    }

    @Test("A client opening 10,000 streams is cut off past the 250 it was told, with bounded memory; others keep working")
    func tenThousandStreams() async throws {
        let (cluster, client, pid) = try await Self.member("streams")
        defer { cluster.tearDown() }
        let baseline = try #require(residentBytes(pid: pid))
        let started = Date()
        var result: (frames: [RawHTTP2.Frame], closed: Bool) = ([], false)
        let peak = try peakResidentBytes(pid: pid) {
            let (connection, settings) = try RawHTTP2.handshake(port: cluster.clientPort(1))
            #expect(settings[RawHTTP2.maxConcurrentStreams] == 250)
            // 250 streams are taken: the PING after them is answered.
            var headers: [UInt8] = []
            for number in 0..<250 { headers += RawHTTP2.grpcHeaders(stream: UInt32(2 * number + 1), path: "/etcdserverpb.KV/Put") }
            connection.send(headers)
            let within = Self.sync(connection)
            #expect(within.acknowledged, "the first 250 streams were refused: \(String(describing: within.goAway))")
            // The 251st is a protocol error (GOAWAY) before the PING behind it is answered.
            connection.send(RawHTTP2.grpcHeaders(stream: 501, path: "/etcdserverpb.KV/Put"))
            let past = Self.sync(connection)
            #expect(!past.acknowledged, "a 251st stream was taken")
            #expect(past.goAway?.error == 0x1, "GOAWAY \(String(describing: past.goAway)) (expected PROTOCOL_ERROR)")
            // The rest of the 10,000 go nowhere: the connection closes.
            headers = []
            for number in 251..<10_000 { headers += RawHTTP2.grpcHeaders(stream: UInt32(2 * number + 1), path: "/etcdserverpb.KV/Put") }
            connection.send(headers)
            result = Self.framesUntilClosed(connection)
        }
        #expect(result.closed, "the member kept the connection open")
        print("10,000 streams: cut off after \(Int(Date().timeIntervalSince(started) * 1000)) ms; RSS \(baseline >> 20) MiB before, peak \(peak >> 20) MiB")
        #expect(peak - baseline < Self.residentGrowthMax, "RSS grew from \(baseline >> 20) to \(peak >> 20) MiB")
        try await Self.expectServing(cluster, client, "after-streams")
        await client.close()
    }

    @Test("A client filling every stream it may open with partial messages, ignoring flow control, is cut off at the connection's byte budget; memory stays bounded")
    func partialMessagesOnEveryStream() async throws {
        let (cluster, client, pid) = try await Self.member("partials")
        defer { cluster.tearDown() }
        let baseline = try #require(residentBytes(pid: pid))
        var result: (frames: [RawHTTP2.Frame], closed: Bool) = ([], false)
        var sentBytes = 0
        let peak = try peakResidentBytes(pid: pid) {
            let (connection, _) = try RawHTTP2.handshake(port: cluster.clientPort(1))
            // Each stream: a message announced at 2,000,000 bytes (under the 2 MiB message
            // limit, inside the stream's window), of which 1,900,000 are sent, never the rest.
            let declared = 2_000_000
            let body = [UInt8](repeating: 0x61, count: 1_900_000)
            let message = [0] + RawHTTP2.bigEndian(UInt32(declared)) + body
            sending: for number in 0..<250 {
                let stream = UInt32(2 * number + 1)
                var bytes = RawHTTP2.grpcHeaders(stream: stream, path: "/etcdserverpb.KV/Put")
                for offset in stride(from: 0, to: message.count, by: 16_384) {
                    bytes += RawHTTP2.frame(.data, stream: stream, Array(message[offset..<min(offset + 16_384, message.count)]))
                }
                guard connection.send(bytes) else { break sending }
                sentBytes += bytes.count
            }
            result = Self.framesUntilClosed(connection)
        }
        #expect(result.closed, "the member kept the connection open after \(sentBytes >> 20) MiB")
        let goAway = try #require(Self.goAway(in: result.frames), "no GOAWAY")
        #expect(goAway.error == 0x3, "GOAWAY error \(goAway.error) (expected FLOW_CONTROL_ERROR)")
        print("partial messages: sent \(sentBytes >> 20) MiB; RSS \(baseline >> 20) MiB before, peak \(peak >> 20) MiB")
        #expect(peak - baseline < Self.residentGrowthMax, "RSS grew from \(baseline >> 20) to \(peak >> 20) MiB")
        try await Self.expectServing(cluster, client, "after-partials")
        await client.close()
    }

    @Test("A frame past the frame size limit closes the connection; a 100 MiB message is refused at its prefix and drained, never buffered")
    func oversizedFrameAndMessage() async throws {
        let (cluster, client, pid) = try await Self.member("oversized")
        defer { cluster.tearDown() }
        let baseline = try #require(residentBytes(pid: pid))

        // A DATA frame announcing 16 MiB - 1 (HTTP/2's largest length): FRAME_SIZE_ERROR at its header.
        let (framed, _) = try RawHTTP2.handshake(port: cluster.clientPort(1))
        framed.send(RawHTTP2.grpcHeaders(stream: 1, path: "/etcdserverpb.KV/Put")
                    + RawHTTP2.frame(.data, stream: 1, [], length: (1 << 24) - 1))
        let chunk = [UInt8](repeating: 0x62, count: 1 << 20)
        for _ in 0..<16 where framed.send(chunk) {}
        let cut = Self.framesUntilClosed(framed)
        #expect(cut.closed)
        #expect(Self.goAway(in: cut.frames)?.error == 0x6, "expected GOAWAY FRAME_SIZE_ERROR")

        // A gRPC message announced at 100 MiB, sent whole: answered at its prefix (trailers with
        // END_STREAM), the rest read and dropped.
        var answered = false
        var sentAll = false
        let peak = try peakResidentBytes(pid: pid) {
            let (connection, _) = try RawHTTP2.handshake(port: cluster.clientPort(1))
            let total = 100 << 20
            connection.send(RawHTTP2.grpcHeaders(stream: 1, path: "/etcdserverpb.KV/Put")
                            + RawHTTP2.frame(.data, stream: 1, [0] + RawHTTP2.bigEndian(UInt32(total))))
            var pending: [UInt8] = []
            let deadline = Date().addingTimeInterval(5)
            while !answered && Date() < deadline {
                guard let bytes = connection.receive() else { continue }
                answered = RawHTTP2.frames(bytes, pending: &pending).contains { $0.type == RawHTTP2.FrameType.headers.rawValue && $0.stream == 1 && $0.flags & 0x1 != 0 }
                if bytes.isEmpty { break }
            }
            let frame = RawHTTP2.frame(.data, stream: 1, [UInt8](repeating: 0x63, count: 16_384))
            var batch: [UInt8] = []
            for _ in 0..<64 { batch += frame }
            // All of it goes through only if the member returns the window of what it drops (a
            // send blocks on a full socket buffer and gives up after the send timeout).
            sentAll = (0..<(total / (64 * 16_384))).allSatisfy { _ in connection.send(batch) }
                && connection.send(RawHTTP2.frame(.data, flags: 0x1, stream: 1, []))
        }
        #expect(answered, "no answer to the 100 MiB message's prefix")
        #expect(sentAll, "the member stopped returning the window of the refused message's bytes")
        print("oversized: RSS \(baseline >> 20) MiB before, peak \(peak >> 20) MiB")
        #expect(peak - baseline < Self.residentGrowthMax, "RSS grew from \(baseline >> 20) to \(peak >> 20) MiB")
        try await Self.expectServing(cluster, client, "after-oversized")
        await client.close()
    }

    @Test("A client that asks for large ranges and never reads the answers is refused past the connection's unread budget; memory stays bounded; others keep working")
    func unreadResponses() async throws {
        let (cluster, client, pid) = try await Self.member("unread")
        defer { cluster.tearDown() }
        // 8 values of 1 MiB: each range of the prefix answers 8 MiB.
        for number in 0..<8 {
            var put = Etcdserverpb_PutRequest()
            put.key = Data("big/\(number)".utf8)
            put.value = Data(repeating: 0x61, count: 1 << 20)
            let _: Etcdserverpb_PutResponse = try await client.unary("/etcdserverpb.KV/Put", put)
        }
        var range = Etcdserverpb_RangeRequest()
        range.key = Data("big/".utf8)
        range.rangeEnd = Data("big0".utf8)
        let body = [UInt8](try range.serializedData())
        let message = [0] + RawHTTP2.bigEndian(UInt32(body.count)) + body
        let baseline = try #require(residentBytes(pid: pid))
        var refused = Set<UInt32>()
        var answered = Set<UInt32>()
        let peak = try peakResidentBytes(pid: pid) {
            // The client's windows stay at HTTP/2's 64 KiB and it never returns them: the member
            // can send almost nothing, and what it answers waits in its buffers.
            let (connection, _) = try RawHTTP2.handshake(port: cluster.clientPort(1))
            var bytes: [UInt8] = []
            for number in 0..<250 {
                let stream = UInt32(2 * number + 1)
                bytes += RawHTTP2.grpcHeaders(stream: stream, path: "/etcdserverpb.KV/Range") + RawHTTP2.frame(.data, flags: 0x1, stream: stream, message)
            }
            #expect(connection.send(bytes))
            var pending: [UInt8] = []
            let deadline = Date().addingTimeInterval(30)
            while refused.count + answered.count < 250 && Date() < deadline {
                guard let received = connection.receive(), !received.isEmpty else { continue }
                for frame in RawHTTP2.frames(received, pending: &pending) where frame.type == RawHTTP2.FrameType.headers.rawValue {
                    // Trailers-only (END_STREAM on the first HEADERS): refused; response headers: answered.
                    if frame.flags & 0x1 != 0 { refused.insert(frame.stream) } else { answered.insert(frame.stream) }
                }
            }
            withExtendedLifetime(connection) {}
        }
        print("unread responses: \(answered.count) answered, \(refused.count) refused; RSS \(baseline >> 20) MiB before, peak \(peak >> 20) MiB")
        // 128 MiB of unread answers of 8 MiB each: 16 go out, the rest are refused.
        #expect(answered.count >= 1 && answered.count <= 20, "\(answered.count) answered")
        #expect(refused.count >= 230, "\(refused.count) refused")
        // Without the budget the member holds all 250 answers: 2 GiB.
        #expect(peak - baseline < 400 << 20, "RSS grew from \(baseline >> 20) to \(peak >> 20) MiB")
        try await Self.expectServing(cluster, client, "after-unread")
        await client.close()
    }

    @Test("The server-wide budget of unread responses: one always fits when nothing waits, more only within the bound; forced bytes count")
    func responseBudget() {
        let budget = WireResponseBudget(bytesMax: 100)
        #expect(budget.take(150))
        #expect(!budget.take(1))
        budget.give(150)
        #expect(budget.take(60) && budget.take(40))
        #expect(!budget.take(1))
        #expect(budget.take(10, force: true))
        #expect(budget.unreadBytes == 110)
        budget.give(110)
        #expect(budget.unreadBytes == 0)
    }
}
