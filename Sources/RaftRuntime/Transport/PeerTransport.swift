import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Raft

/// Limits of the peer transport, validated at start.
public struct TransportLimits: Sendable, Hashable {
    /// Messages queued for one peer; past it new messages are dropped and the peer reported unreachable.
    public var sendQueueMessagesMax = 4096
    /// Bytes queued for one peer.
    public var sendQueueBytesMax = 64 << 20
    /// Largest frame accepted from a peer (a snapshot travels in chunks of `snapshotChunkBytes`).
    public var frameBytesMax = 16 << 20
    public var snapshotChunkBytes = 1 << 20
    /// Largest snapshot image a receiver takes and a sender sends. Images travel between files
    /// in chunks (never whole in memory), so this bounds disk, not memory; the store's space
    /// quota (at most 8 GiB) keeps its database under it.
    public var snapshotBytesMax = 8 << 30
    /// The largest snapshot held whole in memory, by a state machine without storage of its
    /// own (``DiskStorage/Options/snapshotBytesMax``): 4 GiB less 256 MiB, under `ByteBuffer`'s
    /// 4 GiB.
    public static let snapshotBytesLimit = (4 << 30) - (256 << 20)
    public var reconnectBackoffMinimumMs: Int64 = 50
    public var reconnectBackoffMaximumMs: Int64 = 2_000
    /// Accepted peer connections: how many, TLS handshake and idle timeouts.
    public var connections = ConnectionLimits.peer

    public init() {}

    public func validate() throws {
        guard sendQueueMessagesMax > 0, sendQueueBytesMax > 0 else { throw ConfigurationError(field: "sendQueueMax", reason: "must be positive") }
        guard snapshotChunkBytes > 0, snapshotChunkBytes + 64 <= frameBytesMax else {
            throw ConfigurationError(field: "snapshotChunkBytes", reason: "must be positive and fit in frameBytesMax")
        }
        guard snapshotBytesMax > 0 else {
            throw ConfigurationError(field: "snapshotBytesMax", reason: "must be positive")
        }
        guard reconnectBackoffMinimumMs > 0, reconnectBackoffMaximumMs >= reconnectBackoffMinimumMs else {
            throw ConfigurationError(field: "reconnectBackoffMs", reason: "minimum must be positive and not above maximum")
        }
        try connections.validate()
    }
}

/// How peer connections are secured (TLS): handlers added first to every accepted and every
/// outgoing connection's pipeline, on its event loop. Nil in the transport means plaintext.
public struct ChannelSecurity: Sendable {
    public var secureAccepted: @Sendable (any Channel) throws -> Void
    public var secureConnecting: @Sendable (any Channel) throws -> Void
    /// The member an accepted connection speaks for, read from its verified certificate once the
    /// handshake is done (called on the channel's event loop, when its first frame arrives); nil
    /// when it names none. When set, a connection without a member is closed and every message
    /// whose `from` is not that member is dropped: a certificate vouches for one member only.
    public var identifyAccepted: (@Sendable (any Channel) -> NodeID?)?

    public init(secureAccepted: @escaping @Sendable (any Channel) throws -> Void, secureConnecting: @escaping @Sendable (any Channel) throws -> Void,
                identifyAccepted: (@Sendable (any Channel) -> NodeID?)? = nil) {
        self.secureAccepted = secureAccepted
        self.secureConnecting = secureConnecting
        self.identifyAccepted = identifyAccepted
    }
}

/// What the transport tells the Raft loop.
public enum TransportEvent: Sendable {
    case message(Message)
    /// Messages to this peer were dropped (queue full or connection lost).
    case unreachable(NodeID)
    /// The peer's port refused a connection: nothing listens there, its process is not running.
    case refused(NodeID)
    /// A snapshot message whose image arrived in full: `message.snapshot.data` is what the
    /// sender put before the image, `imageFile` (in the transport's ``SnapshotSpool``, fsynced)
    /// the image itself. The receiver of the event owns the file and removes it when done.
    case snapshot(Message, imageFile: String)
    /// A snapshot finished sending (or failed).
    case snapshotStatus(NodeID, succeeded: Bool)
}

/// Long-lived TCP streams between peers, one outbound connection per peer.
///
/// Frames are `[u32 length][u8 kind][payload]`. Kind 0 carries a batch of messages (everything
/// queued for the peer when the connection could take more). A snapshot travels as kind 1,
/// `u64 identifier | u64 image bytes | the message`, then kind 2 frames, `u64 identifier |
/// bytes`, with the image: read from memory or a file a chunk at a time, each written after the
/// previous was handed to the kernel, and written to a file in the receiver's ``SnapshotSpool``
/// as it arrives, so that a snapshot of any size costs a chunk of memory on either side. The
/// Raft loop is never blocked: `send` only queues.
public final class PeerTransport: Sendable {
    enum FrameKind: UInt8 {
        case messages = 0
        case snapshotStart = 1
        case snapshotData = 2
    }

    public let id: NodeID
    let group: any EventLoopGroup
    let limits: TransportLimits
    let logger: Logger
    let security: ChannelSecurity?
    /// Where received snapshot images are written; without one, snapshots are refused.
    public let spool: SnapshotSpool?
    let deliver: @Sendable (TransportEvent) -> Void
    let peers = NIOLockedValueBox<[NodeID: PeerSender]>([:])
    let serverChannel = NIOLockedValueBox<(any Channel)?>(nil)

    public init(id: NodeID, group: any EventLoopGroup, limits: TransportLimits = TransportLimits(), security: ChannelSecurity? = nil,
                spool: SnapshotSpool? = nil, logger: Logger, deliver: @escaping @Sendable (TransportEvent) -> Void) {
        self.id = id
        self.group = group
        self.limits = limits
        self.security = security
        self.spool = spool
        self.logger = logger
        self.deliver = deliver
    }

    /// Starts accepting peers' streams; returns the bound port (useful when `port` is 0).
    @discardableResult
    public func listen(host: String, port: Int) async throws -> Int {
        try limits.validate()
        try spool?.prepare()
        let spool = self.spool
        let limits = self.limits
        let deliver = self.deliver
        let logger = self.logger
        let security = self.security
        let gate = try ConnectionGate(limits: limits.connections, name: "peer", logger: logger)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try security?.secureAccepted(channel)
                    try gate.admit(channel, secured: security != nil)
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(frameBytesMax: limits.frameBytesMax)))
                    try channel.pipeline.syncOperations.addHandler(InboundFrameHandler(limits: limits, spool: spool, logger: logger, identify: security?.identifyAccepted, deliver: deliver))
                }
            }
            .bind(host: host, port: port)
            .get()
        serverChannel.withLockedValue { $0 = channel }
        return channel.localAddress?.port ?? port
    }

    /// Adds or updates a peer's address.
    public func setPeer(_ node: NodeID, host: String, port: Int) {
        guard node != id else { return }
        let existing = peers.withLockedValue { $0[node] }
        if let existing, existing.host == host, existing.port == port { return }
        existing?.close()
        let sender = PeerSender(node: node, host: host, port: port, eventLoop: group.next(), limits: limits, security: security, logger: logger, deliver: deliver)
        peers.withLockedValue { $0[node] = sender }
    }

    public func removePeer(_ node: NodeID) {
        let removed = peers.withLockedValue { $0.removeValue(forKey: node) }
        removed?.close()
    }

    public func knowsPeer(_ node: NodeID) -> Bool {
        peers.withLockedValue { $0[node] != nil }
    }

    /// Queues messages for their peers. Never blocks; drops (and reports) what cannot be queued.
    public func send(_ messages: [Message]) {
        guard !messages.isEmpty else { return }
        var byPeer: [NodeID: [Message]] = [:]
        for message in messages { byPeer[message.to, default: []].append(message) }
        let senders = peers.withLockedValue { $0 }
        for (node, batch) in byPeer {
            guard let sender = senders[node] else {
                // No address known yet: as good as unreachable.
                for message in batch where message.type == .snapshot { deliver(.snapshotStatus(node, succeeded: false)) }
                deliver(.unreachable(node))
                continue
            }
            sender.enqueue(batch)
        }
    }

    /// Queues a snapshot message whose state machine image is `image` (the message's own
    /// snapshot data goes before it, see ``TransportEvent/snapshot(_:imageFile:)``). A file image
    /// is the transport's from here on: it is removed once sent or dropped.
    public func sendSnapshot(_ message: Message, image: SnapshotImage) {
        guard let sender = peers.withLockedValue({ $0[message.to] }) else {
            if case .file(let path) = image { SnapshotSpool.remove(path) }
            deliver(.snapshotStatus(message.to, succeeded: false))
            deliver(.unreachable(message.to))
            return
        }
        sender.enqueueSnapshot(message, image: image)
    }

    /// Bytes currently queued for `node` (for tests of boundedness).
    public func queuedBytes(for node: NodeID) async -> Int {
        guard let sender = peers.withLockedValue({ $0[node] }) else { return 0 }
        return await sender.queuedBytes()
    }

    public func shutdown() async {
        let senders = peers.withLockedValue { current in
            let all = Array(current.values)
            current = [:]
            return all
        }
        for sender in senders { sender.close() }
        let server = serverChannel.withLockedValue { current in
            let channel = current
            current = nil
            return channel
        }
        try? await server?.close()
    }
}

/// Splits the inbound byte stream into frames, refusing any larger than the limit.
struct FrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    let frameBytesMax: Int

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, endianness: .little, as: UInt32.self) else { return .needMoreData }
        guard Int(length) <= frameBytesMax, length > 0 else {
            throw MessageCodec.DecodingError(reason: "frame of \(length) bytes (limit \(frameBytesMax))")
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        context.fireChannelRead(wrapInboundOut(buffer.readSlice(length: Int(length))!))
        return .continue
    }
}

/// Decodes frames from one peer's stream and hands the messages to the Raft loop.
final class InboundFrameHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let limits: TransportLimits
    let logger: Logger
    let deliver: @Sendable (TransportEvent) -> Void
    /// Reads the member the connection's certificate is bound to (nil: plaintext, no binding).
    let identify: (@Sendable (any Channel) -> NodeID?)?
    /// The member this connection speaks for, once identified.
    var boundMember: NodeID?
    /// Messages dropped for a `from` other than `boundMember` (logged on the first and every 1,000th).
    var forgedDropped = 0
    let spool: SnapshotSpool?
    /// The snapshot whose image is arriving.
    var incoming: IncomingSnapshot?

    init(limits: TransportLimits, spool: SnapshotSpool? = nil, logger: Logger, identify: (@Sendable (any Channel) -> NodeID?)? = nil,
         deliver: @escaping @Sendable (TransportEvent) -> Void) {
        self.limits = limits
        self.spool = spool
        self.logger = logger
        self.identify = identify
        self.deliver = deliver
    }

    /// Hands `message` on unless the connection is bound to another member.
    private func accept(_ message: Message, context: ChannelHandlerContext) {
        if isForged(message, context: context) { return }
        deliver(.message(message))
    }

    /// Whether `message` claims a sender other than the connection's member (then logged).
    private func isForged(_ message: Message, context: ChannelHandlerContext) -> Bool {
        if let boundMember, message.from != boundMember {
            forgedDropped += 1
            if forgedDropped % 1_000 == 1 {
                logger.warning("dropped a peer message whose sender is not the connection's member", metadata: [
                    "member": "\(String(boundMember, radix: 16))", "claimed": "\(String(message.from, radix: 16))",
                    "type": "\(message.type)", "dropped": "\(forgedDropped)",
                    "remote": "\(context.remoteAddress.map { "\($0)" } ?? "?")",
                ])
            }
            return true
        }
        return false
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var frame = unwrapInboundIn(data)
        if let identify, boundMember == nil {
            guard let member = identify(context.channel) else {
                logger.warning("closing a peer connection whose certificate names no member", metadata: ["remote": "\(context.remoteAddress.map { "\($0)" } ?? "?")"])
                context.close(promise: nil)
                return
            }
            boundMember = member
        }
        do {
            guard let rawKind = frame.readInteger(as: UInt8.self), let kind = PeerTransport.FrameKind(rawValue: rawKind) else {
                throw MessageCodec.DecodingError(reason: "unknown frame kind")
            }
            switch kind {
            case .messages:
                guard let count = frame.readInteger(endianness: .little, as: UInt32.self) else { throw MessageCodec.DecodingError(reason: "truncated batch") }
                for _ in 0..<count { accept(try MessageCodec.decodeMessage(from: &frame), context: context) }
            case .snapshotStart:
                try startSnapshot(&frame, context: context)
            case .snapshotData:
                try receiveSnapshotData(&frame, context: context)
            }
        } catch {
            logger.warning("closing peer stream: \(error)", metadata: ["remote": "\(context.remoteAddress.map { "\($0)" } ?? "?")"])
            context.close(promise: nil)
        }
    }

    private func startSnapshot(_ frame: inout ByteBuffer, context: ChannelHandlerContext) throws {
        guard let identifier = frame.readInteger(endianness: .little, as: UInt64.self),
              let imageBytes = frame.readInteger(endianness: .little, as: UInt64.self)
        else { throw MessageCodec.DecodingError(reason: "bad snapshot header") }
        guard incoming == nil else { throw MessageCodec.DecodingError(reason: "a snapshot started before the last one ended") }
        let message = try MessageCodec.decodeMessage(from: &frame)
        guard message.type == .snapshot, message.snapshot != nil, frame.readableBytes == 0 else {
            throw MessageCodec.DecodingError(reason: "snapshot stream without a snapshot message")
        }
        guard imageBytes <= UInt64(limits.snapshotBytesMax) else {
            throw MessageCodec.DecodingError(reason: "snapshot of \(imageBytes) bytes (limit \(limits.snapshotBytesMax))")
        }
        guard let spool else { throw MessageCodec.DecodingError(reason: "this transport takes no snapshots (no spool directory)") }
        // A forged sender would have its image written to disk for nothing: cut it off at once.
        if isForged(message, context: context) { throw MessageCodec.DecodingError(reason: "snapshot from a member the connection does not speak for") }
        incoming = try IncomingSnapshot(identifier: identifier, message: message, expectedBytes: Int(imageBytes), spool: spool)
        try finishSnapshotIfComplete()
    }

    private func receiveSnapshotData(_ frame: inout ByteBuffer, context: ChannelHandlerContext) throws {
        guard let identifier = frame.readInteger(endianness: .little, as: UInt64.self) else {
            throw MessageCodec.DecodingError(reason: "bad snapshot data header")
        }
        guard let incoming, incoming.identifier == identifier else { throw MessageCodec.DecodingError(reason: "snapshot data without its start") }
        try incoming.append(frame)
        try finishSnapshotIfComplete()
    }

    /// Once the whole image is in its file: fsync (off the event loop) and hand it on.
    private func finishSnapshotIfComplete() throws {
        guard let complete = incoming, complete.isComplete else { return }
        incoming = nil
        let deliver = self.deliver
        let logger = self.logger
        NIOThreadPool.singleton.submit { state in
            guard case .active = state else {
                complete.abandon()
                return
            }
            do {
                try complete.synchronizeAndClose()
            } catch {
                logger.warning("cannot keep a received snapshot: \(error)")
                complete.abandon()
                return
            }
            deliver(.snapshot(complete.message, imageFile: complete.path))
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        incoming?.abandon()
        incoming = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("peer stream error: \(error)")
        context.close(promise: nil)
    }
}
