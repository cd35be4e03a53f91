import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOTLS
import Raft

/// Limits of one listener's accepted connections: how many may be open, how long a TLS handshake
/// may take, and how long a connection may carry nothing. Every listener has them (the etcd
/// client port, the peer port and the join port), so that a client that connects and then does
/// nothing, or connects without end, costs a bounded amount.
public struct ConnectionLimits: Sendable, Hashable {
    /// Connections open at once; one more accepted is closed at once (logged at a rate-limited
    /// warning).
    public var connectionsMax: Int
    /// A TLS connection whose handshake has not completed this long after it was accepted is
    /// closed. Ignored for plaintext listeners.
    public var handshakeTimeoutMs: Int64
    /// A connection that received and sent nothing for this long is closed; 0 never closes one.
    /// (The etcd client port counts open streams instead: see ``ConnectionGate/admit(_:secured:protocolHandlesIdle:)``.)
    public var idleTimeoutMs: Int64

    public init(connectionsMax: Int, handshakeTimeoutMs: Int64, idleTimeoutMs: Int64) {
        self.connectionsMax = connectionsMax
        self.handshakeTimeoutMs = handshakeTimeoutMs
        self.idleTimeoutMs = idleTimeoutMs
    }

    /// The etcd client port: room for many clients (the bench opens 32 connections; kube
    /// components a few each), 10 s for a handshake, and 5 minutes with no stream and no frame.
    public static let client = ConnectionLimits(connectionsMax: 1024, handshakeTimeoutMs: 10_000, idleTimeoutMs: 300_000)
    /// The peer port: one stream per peer and its reconnections. Heartbeats flow every 100 ms on
    /// a leader's streams, so only a stream between two followers, which carries nothing until
    /// one campaigns, is ever idle for 5 minutes; its sender reconnects when it has something.
    public static let peer = ConnectionLimits(connectionsMax: 128, handshakeTimeoutMs: 10_000, idleTimeoutMs: 300_000)
    /// The join port: one request and its answer per connection.
    public static let join = ConnectionLimits(connectionsMax: 64, handshakeTimeoutMs: 10_000, idleTimeoutMs: 30_000)

    public func validate() throws {
        guard connectionsMax > 0 else { throw ConfigurationError(field: "connectionsMax", reason: "must be positive") }
        guard handshakeTimeoutMs > 0 else { throw ConfigurationError(field: "handshakeTimeoutMs", reason: "must be positive") }
        guard idleTimeoutMs >= 0 else { throw ConfigurationError(field: "idleTimeoutMs", reason: "must not be negative (0: never)") }
    }
}

/// The admission of one listener's connections under its ``ConnectionLimits``: shared by all
/// the connections the listener accepts, it counts those open and refuses one past the cap;
/// each admitted connection gets a ``ConnectionGuardHandler`` for its timeouts.
public final class ConnectionGate: Sendable {
    /// A connection refused because the listener had `connectionsMax` open.
    public struct Refused: Error, CustomStringConvertible {
        public let connectionsMax: Int
        public var description: String { "connection refused: \(connectionsMax) connections open" }
    }

    public let limits: ConnectionLimits
    let name: String
    let logger: Logger
    /// Open connections; refused ones since the last warning and when it was logged.
    private let state = NIOLockedValueBox((open: 0, refused: 0, warnedAt: NIODeadline.distantPast))
    /// At most one warning about refused connections per this interval.
    static let warningIntervalMs: Int64 = 10_000

    /// `name` says which listener in logs ("client", "peer", "join").
    public init(limits: ConnectionLimits, name: String, logger: Logger) throws {
        try limits.validate()
        self.limits = limits
        self.name = name
        self.logger = logger
    }

    /// Connections open now.
    public var openConnections: Int { state.withLockedValue { $0.open } }

    /// Admits an accepted `channel` or refuses it. Call it in the child channel initializer after
    /// the TLS handler is added (`secured`) and before the protocol's handlers: on refusal the
    /// channel is closed and ``Refused`` thrown, which ends the initializer. An admitted channel
    /// gets a ``ConnectionGuardHandler``; `protocolHandlesIdle` leaves the idle timeout to a
    /// protocol that knows better than bytes (HTTP/2: a watch stream waiting for events is not
    /// idle).
    public func admit(_ channel: any Channel, secured: Bool, protocolHandlesIdle: Bool = false) throws {
        let now = NIODeadline.now()
        let (admitted, warning) = state.withLockedValue { state -> (Bool, (open: Int, refused: Int)?) in
            guard state.open >= limits.connectionsMax else {
                state.open += 1
                return (true, nil)
            }
            state.refused += 1
            guard now - state.warnedAt >= .milliseconds(Self.warningIntervalMs) else { return (false, nil) }
            defer {
                state.warnedAt = now
                state.refused = 0
            }
            return (false, (state.open, state.refused))
        }
        guard admitted else {
            if let warning {
                logger.warning("refusing connections: the listener is full", metadata: [
                    "listener": "\(name)", "open": "\(warning.open)", "connectionsMax": "\(limits.connectionsMax)",
                    "refused": "\(warning.refused)", "remote": "\(channel.remoteAddress.map { "\($0)" } ?? "?")",
                ])
            }
            channel.close(promise: nil)
            throw Refused(connectionsMax: limits.connectionsMax)
        }
        channel.closeFuture.whenComplete { [state] _ in state.withLockedValue { $0.open -= 1 } }
        let handler = ConnectionGuardHandler(
            handshakeTimeout: secured ? .milliseconds(limits.handshakeTimeoutMs) : nil,
            idleTimeout: protocolHandlesIdle || limits.idleTimeoutMs == 0 ? nil : .milliseconds(limits.idleTimeoutMs),
            listener: name, logger: logger)
        try channel.pipeline.syncOperations.addHandler(handler)
    }
}

/// Closes its connection when a TLS handshake has not completed in time, or when nothing was
/// read or written for the idle timeout. It sits after the TLS handler, where the handshake's
/// completion arrives as a `TLSUserEvent`; bytes pass through untouched.
public final class ConnectionGuardHandler: ChannelDuplexHandler {
    public typealias InboundIn = NIOAny
    public typealias OutboundIn = NIOAny

    let handshakeTimeout: TimeAmount?
    let idleTimeout: TimeAmount?
    let listener: String
    let logger: Logger
    private var handshakeTimer: Scheduled<Void>?
    private var idleTimer: Scheduled<Void>?
    private var lastActivity = NIODeadline.now()
    private var started = false

    init(handshakeTimeout: TimeAmount?, idleTimeout: TimeAmount?, listener: String, logger: Logger) {
        precondition(handshakeTimeout.map { $0 > .zero } ?? true && idleTimeout.map { $0 > .zero } ?? true)
        self.handshakeTimeout = handshakeTimeout
        self.idleTimeout = idleTimeout
        self.listener = listener
        self.logger = logger
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        stop()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        stop()
        context.fireChannelInactive()
    }

    private func start(context: ChannelHandlerContext) {
        guard !started else { return }
        started = true
        lastActivity = .now()
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        if let handshakeTimeout {
            handshakeTimer = context.eventLoop.scheduleTask(in: handshakeTimeout) {
                let guardHandler = handler.value
                guardHandler.handshakeTimer = nil
                guardHandler.logger.debug("closing a connection whose TLS handshake did not complete in time", metadata: [
                    "listener": "\(guardHandler.listener)", "remote": "\(bound.value.remoteAddress.map { "\($0)" } ?? "?")",
                ])
                bound.value.close(promise: nil)
            }
        }
        if let idleTimeout { scheduleIdleCheck(bound, after: idleTimeout) }
    }

    private func scheduleIdleCheck(_ context: NIOLoopBound<ChannelHandlerContext>, after delay: TimeAmount) {
        guard let idleTimeout else { return }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        idleTimer = context.eventLoop.scheduleTask(in: delay) {
            let guardHandler = handler.value
            guardHandler.idleTimer = nil
            let idleFor = NIODeadline.now() - guardHandler.lastActivity
            if idleFor >= idleTimeout {
                guardHandler.logger.debug("closing an idle connection", metadata: ["listener": "\(guardHandler.listener)"])
                context.value.close(promise: nil)
            } else {
                guardHandler.scheduleIdleCheck(context, after: idleTimeout - idleFor)
            }
        }
    }

    private func stop() {
        handshakeTimer?.cancel()
        handshakeTimer = nil
        idleTimer?.cancel()
        idleTimer = nil
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastActivity = .now()
        context.fireChannelRead(data)
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        lastActivity = .now()
        context.write(data, promise: promise)
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            handshakeTimer?.cancel()
            handshakeTimer = nil
        }
        context.fireUserInboundEventTriggered(event)
    }
}
