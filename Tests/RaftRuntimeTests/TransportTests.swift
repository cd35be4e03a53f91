import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Raft
import Testing

@testable import RaftRuntime

@Suite("Peer transport")
struct TransportTests {
    static func sampleMessages() -> [Message] {
        [
            Message(type: .append, from: 1, to: 2, term: 3, logTerm: 2, index: 10, entries: [
                Entry(term: 3, index: 11, data: [1, 2, 3]), Entry(term: 3, index: 12, kind: .membershipChange, data: MembershipChange(.addLearner, node: 9, context: Array("h:1".utf8)).encoded()),
            ], commit: 9),
            Message(type: .appendResponse, from: 2, to: 1, term: 3, logTerm: 1, index: 10, reject: true, rejectHint: 7),
            Message(type: .heartbeat, from: 1, to: 3, term: 3, commit: 8, context: 42),
            Message(type: .snapshot, from: 1, to: 3, term: 3, snapshot: Snapshot(metadata: SnapshotMetadata(index: 100, term: 2, membership: Membership(voters: [1, 2, 3], learners: [4])), data: Array(repeating: 7, count: 1000))),
        ]
    }

    @Test("Messages round-trip through the codec")
    func codecRoundTrip() throws {
        for message in Self.sampleMessages() {
            var buffer = ByteBuffer()
            MessageCodec.encode(message, into: &buffer)
            let decoded = try MessageCodec.decodeMessage(from: &buffer)
            #expect(decoded == message)
            #expect(buffer.readableBytes == 0)
        }
    }

    @Test("Truncated or corrupt frames are errors, never crashes")
    func codecRejectsMalformedInput() throws {
        var buffer = ByteBuffer()
        MessageCodec.encode(Self.sampleMessages()[0], into: &buffer)
        let bytes = Array(buffer.readableBytesView)
        for length in 0..<bytes.count {
            var truncated = ByteBuffer(bytes: bytes[0..<length])
            #expect(throws: MessageCodec.DecodingError.self) { try MessageCodec.decodeMessage(from: &truncated) }
        }
        var badType = ByteBuffer(bytes: [200] + bytes.dropFirst())
        #expect(throws: MessageCodec.DecodingError.self) { try MessageCodec.decodeMessage(from: &badType) }
        // An entry count far beyond what is present must not allocate or loop for long.
        var hugeCount = ByteBuffer(bytes: bytes)
        hugeCount.setInteger(UInt32.max, at: 1 + 8 * 8 + 1, endianness: .little)
        #expect(throws: MessageCodec.DecodingError.self) { try MessageCodec.decodeMessage(from: &hugeCount) }
    }

    @Test("Two transports exchange batches and chunked snapshots over real sockets")
    func messagesTravelBetweenTransports() async throws {
        let received = NIOLockedValueBox<[Message]>([])
        let imageSizes = NIOLockedValueBox<[Int]>([])
        let statuses = NIOLockedValueBox<[TransportEvent]>([])
        let directory = StorageTestDirectory()
        defer { directory.remove() }
        var limits = TransportLimits()
        limits.snapshotChunkBytes = 100
        limits.frameBytesMax = 2_000
        let receiver = PeerTransport(id: 2, group: MultiThreadedEventLoopGroup.singleton, limits: limits, spool: SnapshotSpool(directory: directory.sub("spool")),
                                     logger: Logger(label: "test")) { event in
            switch event {
            case .message(let message): received.withLockedValue { $0.append(message) }
            case .snapshot(let message, let file):
                // Given inline, the snapshot travels whole in its start frame; its image file is empty.
                imageSizes.withLockedValue { $0.append((try? FileSystem.fileSize(file)) ?? -1) }
                received.withLockedValue { $0.append(message) }
            default: break
            }
        }
        let sender = PeerTransport(id: 1, group: MultiThreadedEventLoopGroup.singleton, limits: limits, logger: Logger(label: "test")) { event in
            statuses.withLockedValue { $0.append(event) }
        }
        let port = try await receiver.listen(host: "127.0.0.1", port: 0)
        sender.setPeer(2, host: "127.0.0.1", port: port)
        var outgoing = Self.sampleMessages().map { message -> Message in
            var copy = message
            copy.to = 2
            return copy
        }
        outgoing += (0..<500).map { Message(type: .heartbeat, from: 1, to: 2, term: 3, commit: UInt64($0)) }
        sender.send(outgoing)
        for _ in 0..<100 where received.withLockedValue({ $0.count }) < outgoing.count {
            try await Task.sleep(for: .milliseconds(50))
        }
        // The snapshot's image arrives after an fsync on another thread: anywhere in the order.
        #expect(received.withLockedValue { $0 }.filter { $0.type != .snapshot } == outgoing.filter { $0.type != .snapshot })
        #expect(received.withLockedValue { $0 }.filter { $0.type == .snapshot } == outgoing.filter { $0.type == .snapshot })
        #expect(imageSizes.withLockedValue { $0 } == [0])
        // The snapshot was reported as sent.
        let reported = statuses.withLockedValue { $0 }.contains { event in
            if case .snapshotStatus(2, succeeded: true) = event { return true }
            return false
        }
        #expect(reported)
        await sender.shutdown()
        await receiver.shutdown()
    }

    @Test("A peer that is down costs bounded memory and is reported unreachable")
    func downPeerIsBounded() async throws {
        let unreachable = NIOLockedValueBox(0)
        var limits = TransportLimits()
        limits.sendQueueMessagesMax = 100
        limits.sendQueueBytesMax = 64 << 10
        let transport = PeerTransport(id: 1, group: MultiThreadedEventLoopGroup.singleton, limits: limits, logger: Logger(label: "test")) { event in
            if case .unreachable = event { unreachable.withLockedValue { $0 += 1 } }
        }
        // Nothing listens on this port (bound and closed to find a free one).
        let probe = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let deadPort = probe.localAddress!.port!
        try await probe.close()
        transport.setPeer(2, host: "127.0.0.1", port: deadPort)
        for round in 0..<200 {
            transport.send((0..<100).map { Message(type: .append, from: 1, to: 2, term: 1, index: UInt64(round * 100 + $0), entries: [Entry(term: 1, index: 1, data: Array(repeating: 1, count: 200))]) })
        }
        try await Task.sleep(for: .milliseconds(200))
        #expect(await transport.queuedBytes(for: 2) <= limits.sendQueueBytesMax)
        #expect(unreachable.withLockedValue { $0 } > 0)
        await transport.shutdown()
    }
}
