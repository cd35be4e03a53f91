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

    private var queue: [Message] = []
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
            // A snapshot may be larger than the byte bound by itself; it goes out in chunks, and
            // Raft sends one at a time per peer, so it is not counted against the bound.
            let bytesOver = message.type != .snapshot && queuedByteCount + size > limits.sendQueueBytesMax
            // A snapshot past what a receiver reassembles (and what one ByteBuffer can hold) is
            // never encoded: the leader reports it failed and stays up.
            let snapshotOver = message.type == .snapshot && size > limits.snapshotBytesMax
            if snapshotOver {
                logger.error("snapshot too large to send", metadata: ["peer": "\(node)", "bytes": "\(size)", "snapshotBytesMax": "\(limits.snapshotBytesMax)"])
            }
            if queue.count >= limits.sendQueueMessagesMax || bytesOver || snapshotOver {
                dropped = true
                if message.type == .snapshot { deliver(.snapshotStatus(node, succeeded: false)) }
                continue
            }
            queue.append(message)
            if message.type != .snapshot { queuedByteCount += size }
        }
        if dropped { deliver(.unreachable(node)) }
        flush()
    }

    private func dropQueue() {
        if queue.contains(where: { $0.type == .snapshot }) { deliver(.snapshotStatus(node, succeeded: false)) }
        if !queue.isEmpty { deliver(.unreachable(node)) }
        queue.removeAll()
        queuedByteCount = 0
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
        if queue[0].type == .snapshot {
            let snapshotMessage = queue.removeFirst()
            writeInProgress = true
            writeSnapshot(snapshotMessage, on: channel)
            return
        }
        var frame = channel.allocator.buffer(capacity: 4096)
        frame.writeInteger(UInt32(0), endianness: .little)
        frame.writeInteger(PeerTransport.FrameKind.messages.rawValue)
        let countIndex = frame.writerIndex
        frame.writeInteger(UInt32(0), endianness: .little)
        var count: UInt32 = 0
        while !queue.isEmpty, queue[0].type != .snapshot, frame.readableBytes < limits.frameBytesMax / 2 {
            let message = queue.removeFirst()
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

    private func writeSnapshot(_ message: Message, on channel: any Channel) {
        var whole = channel.allocator.buffer(capacity: message.byteCount + 128)
        MessageCodec.encode(message, into: &whole)
        let chunkBytes = limits.snapshotChunkBytes
        let chunkCount = UInt32((whole.readableBytes + chunkBytes - 1) / chunkBytes)
        let identifier = nextSnapshotIdentifier
        nextSnapshotIdentifier += 1
        writeSnapshotChunk(0, of: chunkCount, identifier: identifier, remaining: whole, on: channel)
    }

    /// Writes chunk `index` of a snapshot; the next goes once this one is in the kernel's send
    /// buffer, so at most one chunk is in memory beyond the encoded snapshot itself.
    private func writeSnapshotChunk(_ index: UInt32, of chunkCount: UInt32, identifier: UInt64, remaining: ByteBuffer, on channel: any Channel) {
        guard self.channel === channel else {
            writeInProgress = false
            deliver(.snapshotStatus(node, succeeded: false))
            return
        }
        var remaining = remaining
        let length = min(limits.snapshotChunkBytes, remaining.readableBytes)
        var piece = remaining.readSlice(length: length)!
        var frame = channel.allocator.buffer(capacity: length + 32)
        frame.writeInteger(UInt32(1 + 8 + 4 + 4 + length), endianness: .little)
        frame.writeInteger(PeerTransport.FrameKind.snapshotChunk.rawValue)
        frame.writeInteger(identifier, endianness: .little)
        frame.writeInteger(index, endianness: .little)
        frame.writeInteger(chunkCount, endianness: .little)
        frame.writeBuffer(&piece)
        channel.writeAndFlush(frame).whenComplete { [remaining] result in
            switch result {
            case .failure:
                self.writeInProgress = false
                self.deliver(.snapshotStatus(self.node, succeeded: false))
            case .success where index + 1 < chunkCount:
                self.writeSnapshotChunk(index + 1, of: chunkCount, identifier: identifier, remaining: remaining, on: channel)
            case .success:
                self.writeInProgress = false
                self.deliver(.snapshotStatus(self.node, succeeded: true))
                self.flush()
            }
        }
    }
}
