import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Raft
import Testing

@testable import RaftRuntime

/// Snapshots between two real transports over loopback: an image goes from a file (or memory)
/// to a file in the receiver's spool in chunks, never whole in memory, and nothing of a
/// transfer that did not finish stays on disk.
@Suite("Snapshot streams")
struct SnapshotStreamTests {
    static let metadata = SnapshotMetadata(index: 500, term: 4, membership: Membership(voters: [1, 2, 3]))

    static func header(to node: NodeID = 2, prefix: [UInt8] = [9, 9, 9]) -> Message {
        Message(type: .snapshot, from: 1, to: node, term: 4, snapshot: Snapshot(metadata: metadata, data: prefix))
    }

    /// A receiver that records what arrives, and a sender, connected.
    struct Pair {
        let directory = StorageTestDirectory()
        let events = NIOLockedValueBox<[TransportEvent]>([])
        let sent = NIOLockedValueBox<[TransportEvent]>([])
        let receiver: PeerTransport
        let sender: PeerTransport
        var receiverSpool: String { directory.sub("receiver-spool") }

        init(limits: TransportLimits) async throws {
            let events = self.events
            let sent = self.sent
            receiver = PeerTransport(id: 2, group: MultiThreadedEventLoopGroup.singleton, limits: limits,
                                     spool: SnapshotSpool(directory: directory.sub("receiver-spool")), logger: Logger(label: "receiver")) { event in
                events.withLockedValue { $0.append(event) }
            }
            sender = PeerTransport(id: 1, group: MultiThreadedEventLoopGroup.singleton, limits: limits,
                                   spool: SnapshotSpool(directory: directory.sub("sender-spool")), logger: Logger(label: "sender")) { event in
                sent.withLockedValue { $0.append(event) }
            }
            let port = try await receiver.listen(host: "127.0.0.1", port: 0)
            _ = try await sender.listen(host: "127.0.0.1", port: 0)
            sender.setPeer(2, host: "127.0.0.1", port: port)
        }

        func received() -> [(Message, String)] {
            events.withLockedValue { $0 }.compactMap { event in
                if case .snapshot(let message, let file) = event { return (message, file) }
                return nil
            }
        }

        func statuses() -> [Bool] {
            sent.withLockedValue { $0 }.compactMap { event in
                if case .snapshotStatus(2, let succeeded) = event { return succeeded }
                return nil
            }
        }

        func shutdown() async {
            await sender.shutdown()
            await receiver.shutdown()
            directory.remove()
        }
    }

    static func waitUntil(_ condition: () -> Bool) async throws {
        for _ in 0..<200 where !condition() { try await Task.sleep(for: .milliseconds(50)) }
    }

    static func imageBytes(_ count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) }
    }

    @Test("a file image arrives byte for byte in a file of the receiver's spool, in chunks; the sender's file is removed once sent")
    func fileImageArrives() async throws {
        var limits = TransportLimits()
        limits.snapshotChunkBytes = 64 << 10
        let pair = try await Pair(limits: limits)
        let image = Self.imageBytes(5_000_000 + 17)
        let outgoing = pair.directory.sub("sender-spool/out-test.image")
        try SnapshotImageFile.write(image, to: outgoing)
        pair.sender.sendSnapshot(Self.header(), image: .file(outgoing))
        try await Self.waitUntil { !pair.received().isEmpty && !pair.statuses().isEmpty }
        let received = pair.received()
        try #require(received.count == 1)
        #expect(received[0].0 == Self.header())
        #expect(received[0].1.hasPrefix(pair.receiverSpool + "/in-"))
        #expect(try StorageTestFiles.read(received[0].1) == image)
        #expect(pair.statuses() == [true])
        #expect(!FileSystem.fileExists(outgoing))
        await pair.shutdown()
    }

    @Test("an image in memory and an empty image travel too")
    func bytesImageArrives() async throws {
        var limits = TransportLimits()
        limits.snapshotChunkBytes = 1000
        let pair = try await Pair(limits: limits)
        let image = Self.imageBytes(123_457)
        pair.sender.sendSnapshot(Self.header(prefix: [1]), image: .bytes(image))
        try await Self.waitUntil { pair.received().count == 1 && pair.statuses().count == 1 }
        pair.sender.sendSnapshot(Self.header(prefix: [2]), image: .bytes([]))
        try await Self.waitUntil { pair.received().count == 2 && pair.statuses().count == 2 }
        let received = pair.received()
        try #require(received.count == 2)
        #expect(received.map { $0.0.snapshot?.data } == [[1], [2]])
        #expect(try StorageTestFiles.read(received[0].1) == image)
        #expect(try StorageTestFiles.read(received[1].1) == [])
        #expect(pair.statuses() == [true, true])
        await pair.shutdown()
    }

    @Test("an image past snapshotBytesMax is not sent: reported failed, the file removed, the next one goes")
    func oversizedImageIsNotSent() async throws {
        var limits = TransportLimits()
        limits.snapshotBytesMax = 10_000
        let pair = try await Pair(limits: limits)
        let outgoing = pair.directory.sub("sender-spool/out-big.image")
        try SnapshotImageFile.write(Self.imageBytes(10_001), to: outgoing)
        pair.sender.sendSnapshot(Self.header(), image: .file(outgoing))
        try await Self.waitUntil { pair.statuses().count == 1 }
        #expect(pair.statuses() == [false])
        #expect(!FileSystem.fileExists(outgoing))
        pair.sender.sendSnapshot(Self.header(), image: .bytes(Self.imageBytes(10_000)))
        try await Self.waitUntil { pair.statuses().count == 2 && pair.received().count == 1 }
        #expect(pair.statuses() == [false, true])
        #expect(pair.received().count == 1)
        await pair.shutdown()
    }

    /// Raw frames to the receiver's port, as a faulty or hostile peer sends them.
    static func rawConnection(port: Int) async throws -> any Channel {
        try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get()
    }

    static func startFrame(identifier: UInt64, imageBytes: UInt64, message: Message) -> ByteBuffer {
        var frame = ByteBuffer()
        frame.writeInteger(UInt32(0), endianness: .little)
        frame.writeInteger(PeerTransport.FrameKind.snapshotStart.rawValue)
        frame.writeInteger(identifier, endianness: .little)
        frame.writeInteger(imageBytes, endianness: .little)
        MessageCodec.encode(message, into: &frame)
        frame.setInteger(UInt32(frame.readableBytes - 4), at: 0, endianness: .little)
        return frame
    }

    static func dataFrame(identifier: UInt64, bytes: [UInt8]) -> ByteBuffer {
        var frame = ByteBuffer()
        frame.writeInteger(UInt32(1 + 8 + bytes.count), endianness: .little)
        frame.writeInteger(PeerTransport.FrameKind.snapshotData.rawValue)
        frame.writeInteger(identifier, endianness: .little)
        frame.writeBytes(bytes)
        return frame
    }

    static func spoolFiles(_ pair: Pair) throws -> [String] {
        try FileSystem.contents(of: pair.receiverSpool)
    }

    @Test("a transfer cut off midway, one longer than announced, one past the limit, and data without a start leave no file and deliver nothing")
    func brokenTransfersLeaveNothing() async throws {
        var limits = TransportLimits()
        limits.snapshotBytesMax = 1 << 20
        let pair = try await Pair(limits: limits)
        let port = try #require(await pair.receiverPort())

        // Cut off after half the image: the partial file goes with the connection.
        let cut = try await Self.rawConnection(port: port)
        try await cut.writeAndFlush(Self.startFrame(identifier: 1, imageBytes: 1000, message: Self.header())).get()
        try await cut.writeAndFlush(Self.dataFrame(identifier: 1, bytes: Self.imageBytes(500))).get()
        try await Self.waitUntil { ((try? Self.spoolFiles(pair)) ?? []).count == 1 }
        #expect(try Self.spoolFiles(pair).count == 1)
        try await cut.close()
        try await Self.waitUntil { ((try? Self.spoolFiles(pair)) ?? ["?"]).isEmpty }
        #expect(try Self.spoolFiles(pair).isEmpty)

        // More bytes than announced, a size past the limit, data with no start, a start that is
        // not a snapshot: each closes the connection and leaves nothing behind.
        let attempts: [[ByteBuffer]] = [
            [Self.startFrame(identifier: 2, imageBytes: 10, message: Self.header()), Self.dataFrame(identifier: 2, bytes: Self.imageBytes(11))],
            [Self.startFrame(identifier: 3, imageBytes: UInt64(limits.snapshotBytesMax) + 1, message: Self.header())],
            [Self.startFrame(identifier: 3, imageBytes: UInt64.max, message: Self.header())],
            [Self.dataFrame(identifier: 4, bytes: [1, 2, 3])],
            [Self.startFrame(identifier: 5, imageBytes: 10, message: Message(type: .heartbeat, from: 1, to: 2, term: 4))],
        ]
        for frames in attempts {
            let channel = try await Self.rawConnection(port: port)
            for frame in frames { try? await channel.writeAndFlush(frame).get() }
            // The receiver closes the connection on the first frame it cannot take.
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await channel.closeFuture.get() }
                group.addTask {
                    try await Task.sleep(for: .seconds(5))
                    throw CancellationError()
                }
                try await group.next()
                group.cancelAll()
            }
            try await Self.waitUntil { ((try? Self.spoolFiles(pair)) ?? ["?"]).isEmpty }
            #expect(try Self.spoolFiles(pair).isEmpty)
        }
        #expect(pair.received().isEmpty)

        // The receiver still takes a good snapshot.
        pair.sender.sendSnapshot(Self.header(), image: .bytes(Self.imageBytes(3000)))
        try await Self.waitUntil { pair.received().count == 1 }
        #expect(pair.received().count == 1)
        await pair.shutdown()
    }

    @Test("the spool is emptied when the transport starts: nothing in transit outlives its process")
    func spoolIsEmptiedAtStart() async throws {
        let directory = StorageTestDirectory()
        defer { directory.remove() }
        try StorageTestFiles.write([1, 2, 3], to: directory.sub("spool/in-left.image"))
        try StorageTestFiles.write([4], to: directory.sub("spool/out-left.image"))
        let transport = PeerTransport(id: 1, group: MultiThreadedEventLoopGroup.singleton, spool: SnapshotSpool(directory: directory.sub("spool")),
                                      logger: Logger(label: "test")) { _ in }
        _ = try await transport.listen(host: "127.0.0.1", port: 0)
        #expect(try FileSystem.contents(of: directory.sub("spool")).isEmpty)
        await transport.shutdown()
    }
}

extension SnapshotStreamTests.Pair {
    func receiverPort() async -> Int? {
        receiver.serverChannel.withLockedValue { $0?.localAddress?.port }
    }
}
