import Logging
import NIOCore
import NIOPosix
import Raft
#if canImport(Glibc)
import Glibc
#endif

/// The outbound stream to one peer: a bounded queue, a connection that is re-established with
/// exponential backoff, and batching of everything queued into one frame per write.
///
/// All mutable state is touched only on `eventLoop`, which is what makes the `@unchecked
/// Sendable` safe: every public entry point hops onto the loop first.
final class PeerSender: @unchecked Sendable {
    let node: NodeID
    let host: String
    let port: Int
    let eventLoop: any EventLoop
    let limits: TransportLimits
    let security: ChannelSecurity?
    let logger: Logger
    let deliver: @Sendable (TransportEvent) -> Void

    /// A queued message; a snapshot message's image goes with it.
    private struct Queued {
        var message: Message
        var image: SnapshotImage?
    }

    private var queue: [Queued] = []
    private var queuedByteCount = 0
    private var channel: (any Channel)?
    private var connecting = false
    private var closed = false
    private var backoffMs: Int64
    private var writeInProgress = false
    private var nextSnapshotIdentifier: UInt64 = 1

    init(node: NodeID, host: String, port: Int, eventLoop: any EventLoop, limits: TransportLimits, security: ChannelSecurity?, logger: Logger,
         deliver: @escaping @Sendable (TransportEvent) -> Void) {
        self.node = node
        self.host = host
        self.port = port
        self.eventLoop = eventLoop
        self.limits = limits
        self.security = security
        self.logger = logger
        self.deliver = deliver
        self.backoffMs = limits.reconnectBackoffMinimumMs
        eventLoop.execute { self.connect() }
    }

    /// Queues `messages` and writes what the connection can take. On the sender's own loop (the
    /// Raft runtime's thread) this happens at once, before the caller goes on to its fsync.
    func enqueue(_ messages: [Message]) {
        if eventLoop.inEventLoop {
            enqueueOnLoop(messages)
        } else {
            eventLoop.execute { self.enqueueOnLoop(messages) }
        }
    }

    /// Queues a snapshot message with its image (see ``PeerTransport/sendSnapshot(_:image:)``).
    func enqueueSnapshot(_ message: Message, image: SnapshotImage) {
        eventLoop.execute {
            guard !self.closed else {
                self.discard(image)
                self.deliver(.snapshotStatus(self.node, succeeded: false))
                return
            }
            self.queue.append(Queued(message: message, image: image))
            self.flush()
        }
    }

    func queuedBytes() async -> Int {
        (try? await eventLoop.submit { self.queuedByteCount }.get()) ?? 0
    }

    func close() {
        eventLoop.execute {
            self.closed = true
            self.dropQueue()
            self.channel?.close(promise: nil)
            self.channel = nil
        }
    }

    private func enqueueOnLoop(_ messages: [Message]) {
        guard !closed else { return }
        var dropped = false
        for message in messages {
            let size = message.byteCount
            // A snapshot message given here carries its data inline and travels whole in its
            // start frame; Raft sends one at a time per peer, so it is not counted against the bound.
            let bytesOver = message.type != .snapshot && queuedByteCount + size > limits.sendQueueBytesMax
            if queue.count >= limits.sendQueueMessagesMax || bytesOver {
                dropped = true
                if message.type == .snapshot { deliver(.snapshotStatus(node, succeeded: false)) }
                continue
            }
            queue.append(Queued(message: message, image: message.type == .snapshot ? .bytes([]) : nil))
            if message.type != .snapshot { queuedByteCount += size }
        }
        if dropped { deliver(.unreachable(node)) }
        flush()
    }

    private func dropQueue() {
        for queued in queue where queued.image != nil {
            discard(queued.image)
            deliver(.snapshotStatus(node, succeeded: false))
        }
        if !queue.isEmpty { deliver(.unreachable(node)) }
        queue.removeAll()
        queuedByteCount = 0
    }

    /// A snapshot image that will not be sent: its file (the transport's) is removed.
    private func discard(_ image: SnapshotImage?) {
        if case .file(let path) = image { SnapshotSpool.remove(path) }
    }

    private func connect() {
        guard !closed, channel == nil, !connecting else { return }
        connecting = true
        let security = self.security
        ClientBootstrap(group: eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try security?.secureConnecting(channel) }
            }
            .connectTimeout(.milliseconds(1_000))
            .connect(host: host, port: port)
            .whenComplete { result in
                self.connecting = false
                switch result {
                case .success(let channel):
                    if self.closed {
                        channel.close(promise: nil)
                        return
                    }
                    self.channel = channel
                    self.backoffMs = self.limits.reconnectBackoffMinimumMs
                    channel.closeFuture.whenComplete { _ in
                        self.eventLoop.execute { self.connectionLost(channel) }
                    }
                    self.flush()
                case .failure(let error):
                    self.logger.debug("cannot reach peer", metadata: ["peer": "\(self.node)", "address": "\(self.host):\(self.port)", "error": "\(error)"])
                    // Whatever waits for this peer would wait for nothing: drop it and tell Raft.
                    self.dropQueue()
                    if Self.isRefusal(error) { self.deliver(.refused(self.node)) }
                    self.scheduleReconnect()
                }
            }
    }

    /// Whether a failed connect was refused (RST: the host is up, nothing listens on the port),
    /// rather than timed out or unroutable, which say nothing about the peer's process.
    static func isRefusal(_ error: any Error) -> Bool {
        if let error = error as? IOError { return error.errnoCode == ECONNREFUSED }
        if let error = error as? NIOConnectionError { return error.connectionErrors.contains { isRefusal($0.error) } }
        return false
    }

    private func connectionLost(_ lost: any Channel) {
        guard channel === lost else { return }
        channel = nil
        writeInProgress = false
        dropQueue()
        scheduleReconnect()
    }

    private func scheduleReconnect() {
        guard !closed else { return }
        let delay = backoffMs
        backoffMs = min(backoffMs * 2, limits.reconnectBackoffMaximumMs)
        eventLoop.scheduleTask(in: .milliseconds(delay)) { self.connect() }
    }

    /// Writes everything queued: normal messages batched into frames, snapshots in chunks.
    private func flush() {
        guard let channel, !writeInProgress, !queue.isEmpty else { return }
        if let image = queue[0].image {
            let snapshotMessage = queue.removeFirst().message
            writeInProgress = true
            writeSnapshot(snapshotMessage, image: image, on: channel)
            return
        }
        var frame = channel.allocator.buffer(capacity: 4096)
        frame.writeInteger(UInt32(0), endianness: .little)
        frame.writeInteger(PeerTransport.FrameKind.messages.rawValue)
        let countIndex = frame.writerIndex
        frame.writeInteger(UInt32(0), endianness: .little)
        var count: UInt32 = 0
        while !queue.isEmpty, queue[0].image == nil, frame.readableBytes < limits.frameBytesMax / 2 {
            let message = queue.removeFirst().message
            queuedByteCount -= message.byteCount
            MessageCodec.encode(message, into: &frame)
            count += 1
        }
        frame.setInteger(UInt32(frame.readableBytes - 4), at: 0, endianness: .little)
        frame.setInteger(count, at: countIndex, endianness: .little)
        writeInProgress = true
        channel.writeAndFlush(frame).whenComplete { result in
            self.writeInProgress = false
            if case .failure = result {
                self.deliver(.unreachable(self.node))
                return
            }
            self.flush()
        }
    }

    /// Writes a snapshot: its start frame (the message), then its image in chunks.
    private func writeSnapshot(_ message: Message, image: SnapshotImage, on channel: any Channel) {
        let reader: SnapshotImageReader
        do {
            reader = try SnapshotImageReader(image)
        } catch {
            logger.error("cannot read a snapshot image to send", metadata: ["peer": "\(node)", "error": "\(error)"])
            discard(image)
            snapshotEnded(succeeded: false)
            return
        }
        let identifier = nextSnapshotIdentifier
        nextSnapshotIdentifier += 1
        var frame = channel.allocator.buffer(capacity: message.byteCount + 64)
        frame.writeInteger(UInt32(0), endianness: .little)
        frame.writeInteger(PeerTransport.FrameKind.snapshotStart.rawValue)
        frame.writeInteger(identifier, endianness: .little)
        frame.writeInteger(UInt64(reader.byteCount), endianness: .little)
        MessageCodec.encode(message, into: &frame)
        // Past what the receiver takes, the snapshot is never sent: the leader reports it failed
        // and stays up.
        guard frame.readableBytes - 4 <= limits.frameBytesMax, reader.byteCount <= limits.snapshotBytesMax else {
            logger.error("snapshot too large to send", metadata: [
                "peer": "\(node)", "messageBytes": "\(frame.readableBytes)", "imageBytes": "\(reader.byteCount)",
                "snapshotBytesMax": "\(limits.snapshotBytesMax)",
            ])
            reader.finish()
            snapshotEnded(succeeded: false)
            return
        }
        frame.setInteger(UInt32(frame.readableBytes - 4), at: 0, endianness: .little)
        channel.writeAndFlush(frame).whenComplete { result in
            self.writeSnapshotChunk(from: 0, reader: reader, identifier: identifier, after: result, on: channel)
        }
    }

    /// After the previous write completed with `result`, writes the image's chunk at `offset`;
    /// the next goes once this one is in the kernel's send buffer, so at most one chunk is in
    /// memory.
    private func writeSnapshotChunk(from offset: Int, reader: SnapshotImageReader, identifier: UInt64, after result: Result<Void, any Error>,
                                    on channel: any Channel) {
        guard case .success = result, self.channel === channel else {
            reader.finish()
            snapshotEnded(succeeded: false)
            return
        }
        guard offset < reader.byteCount else {
            reader.finish()
            snapshotEnded(succeeded: true)
            return
        }
        var frame = channel.allocator.buffer(capacity: limits.snapshotChunkBytes + 16)
        frame.writeInteger(UInt32(0), endianness: .little)
        frame.writeInteger(PeerTransport.FrameKind.snapshotData.rawValue)
        frame.writeInteger(identifier, endianness: .little)
        let length: Int
        do {
            length = try reader.read(at: offset, count: limits.snapshotChunkBytes, into: &frame)
            guard length > 0 else { throw DiskStorageError.system(operation: "read (the image ended early)", path: "", errorNumber: 0) }
        } catch {
            logger.error("cannot read a snapshot image to send", metadata: ["peer": "\(node)", "error": "\(error)"])
            reader.finish()
            channel.close(promise: nil)
            snapshotEnded(succeeded: false)
            return
        }
        frame.setInteger(UInt32(frame.readableBytes - 4), at: 0, endianness: .little)
        channel.writeAndFlush(frame).whenComplete { result in
            self.writeSnapshotChunk(from: offset + length, reader: reader, identifier: identifier, after: result, on: channel)
        }
    }

    private func snapshotEnded(succeeded: Bool) {
        writeInProgress = false
        deliver(.snapshotStatus(node, succeeded: succeeded))
        if succeeded { flush() }
    }
}
