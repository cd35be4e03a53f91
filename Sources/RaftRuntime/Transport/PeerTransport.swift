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
    /// Largest snapshot a receiver reassembles and a sender encodes. A snapshot travels encoded
    /// in one `ByteBuffer`, which holds at most 4 GiB (UInt32 indexes), so the bound stays below
    /// that; the store's space quota (at most 3 GiB) keeps its database under it.
    public var snapshotBytesMax = TransportLimits.snapshotBytesLimit
    /// The largest `snapshotBytesMax` allowed: 4 GiB less 256 MiB of headroom.
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
        guard snapshotBytesMax > 0, snapshotBytesMax <= Self.snapshotBytesLimit else {
            throw ConfigurationError(field: "snapshotBytesMax", reason: "must be positive and at most \(Self.snapshotBytesLimit) (one ByteBuffer)")
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
    /// A snapshot finished sending (or failed).
    case snapshotStatus(NodeID, succeeded: Bool)
}

/// Long-lived TCP streams between peers, one outbound connection per peer.
///
/// Frames are `[u32 length][u8 kind][payload]`. Kind 0 carries a batch of messages (everything
/// queued for the peer when the connection could take more), kind 1 one chunk of a snapshot
/// message. Chunks are written one at a time, each after the previous was handed to the kernel,
/// so a large snapshot never floods memory. The Raft loop is never blocked: `send` only queues.
public final class PeerTransport: Sendable {
    enum FrameKind: UInt8 {
        case messages = 0
        case snapshotChunk = 1
    }

    public let id: NodeID
    let group: any EventLoopGroup
    let limits: TransportLimits
    let logger: Logger
    let security: ChannelSecurity?
    let deliver: @Sendable (TransportEvent) -> Void
    let peers = NIOLockedValueBox<[NodeID: PeerSender]>([:])
    let serverChannel = NIOLockedValueBox<(any Channel)?>(nil)

    public init(id: NodeID, group: any EventLoopGroup, limits: TransportLimits = TransportLimits(), security: ChannelSecurity? = nil, logger: Logger,
                deliver: @escaping @Sendable (TransportEvent) -> Void) {
        self.id = id
        self.group = group
        self.limits = limits
        self.security = security
        self.logger = logger
        self.deliver = deliver
    }

    /// Starts accepting peers' streams; returns the bound port (useful when `port` is 0).
    @discardableResult
    public func listen(host: String, port: Int) async throws -> Int {
        try limits.validate()
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
                    try channel.pipeline.syncOperations.addHandler(InboundFrameHandler(limits: limits, logger: logger, identify: security?.identifyAccepted, deliver: deliver))
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
    /// The snapshot message being reassembled: (identifier, chunks expected, bytes so far).
    var snapshotAssembly: (identifier: UInt64, chunks: UInt32, received: UInt32, bytes: ByteBuffer)?

    init(limits: TransportLimits, logger: Logger, identify: (@Sendable (any Channel) -> NodeID?)? = nil, deliver: @escaping @Sendable (TransportEvent) -> Void) {
        self.limits = limits
        self.logger = logger
        self.identify = identify
        self.deliver = deliver
    }

    /// Hands `message` on unless the connection is bound to another member.
    private func accept(_ message: Message, context: ChannelHandlerContext) {
        if let boundMember, message.from != boundMember {
            forgedDropped += 1
            if forgedDropped % 1_000 == 1 {
                logger.warning("dropped a peer message whose sender is not the connection's member", metadata: [
                    "member": "\(String(boundMember, radix: 16))", "claimed": "\(String(message.from, radix: 16))",
                    "type": "\(message.type)", "dropped": "\(forgedDropped)",
                    "remote": "\(context.remoteAddress.map { "\($0)" } ?? "?")",
                ])
            }
            return
        }
        deliver(.message(message))
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
            case .snapshotChunk:
                try receiveChunk(&frame, context: context)
            }
        } catch {
            logger.warning("closing peer stream: \(error)", metadata: ["remote": "\(context.remoteAddress.map { "\($0)" } ?? "?")"])
            context.close(promise: nil)
        }
    }

    private func receiveChunk(_ frame: inout ByteBuffer, context: ChannelHandlerContext) throws {
        guard let identifier = frame.readInteger(endianness: .little, as: UInt64.self),
              let index = frame.readInteger(endianness: .little, as: UInt32.self),
              let count = frame.readInteger(endianness: .little, as: UInt32.self), count > 0, index < count
        else { throw MessageCodec.DecodingError(reason: "bad snapshot chunk header") }
        if index == 0 {
            snapshotAssembly = (identifier, count, 0, ByteBuffer())
        }
        // Moved out of the handler before it grows: a buffer still referenced from
        // `snapshotAssembly` would be copied whole by every chunk's write (copy on write), which
        // made receiving a snapshot quadratic in its size (a 350 MB one took 76 s).
        guard var assembly = snapshotAssembly.take(), assembly.identifier == identifier, assembly.received == index, assembly.chunks == count else {
            throw MessageCodec.DecodingError(reason: "snapshot chunk out of order")
        }
        guard assembly.bytes.readableBytes + frame.readableBytes <= limits.snapshotBytesMax else {
            throw MessageCodec.DecodingError(reason: "snapshot larger than \(limits.snapshotBytesMax) bytes")
        }
        assembly.bytes.writeBuffer(&frame)
        assembly.received += 1
        if assembly.received == assembly.chunks {
            snapshotAssembly = nil
            var whole = assembly.bytes
            accept(try MessageCodec.decodeMessage(from: &whole), context: context)
        } else {
            snapshotAssembly = assembly
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("peer stream error: \(error)")
        context.close(promise: nil)
    }
}
