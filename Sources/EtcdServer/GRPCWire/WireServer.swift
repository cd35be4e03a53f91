import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP2
import NIOPosix
import RaftRuntime

/// A gRPC server on SwiftNIO's HTTP/2 codec, made for the store's hot paths: one
/// ``WireConnection`` handler per connection sees every stream's frames (no channel, task or
/// async sequence per call unless the call needs one). TLS, when given, goes first in each
/// connection's pipeline.
final class WireServer: Sendable {
    private let listener: any Channel
    /// Open connections, closed on shutdown.
    private let connections: NIOLockedValueBox<[ObjectIdentifier: any Channel]>

    private init(listener: any Channel, connections: NIOLockedValueBox<[ObjectIdentifier: any Channel]>) {
        self.listener = listener
        self.connections = connections
    }

    /// Listens on `host:port`; `responseBytesMax` bounds the responses that all its connections
    /// together have waiting for their clients (``WireResponseBudget``); `secure` adds TLS to
    /// each accepted connection, `gate` admits
    /// each (the connection cap and the TLS handshake timeout; ``WireConnection`` closes idle
    /// connections itself, as it knows which have open streams).
    static func bind(
        host: String, port: Int, router: WireRouter, limits: WireLimits, responseBytesMax: Int = 1 << 30, gate: ConnectionGate,
        secure: (@Sendable (any Channel) throws -> Void)?, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> WireServer {
        let connections = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])
        let budget = WireResponseBudget(bytesMax: responseBytesMax)
        let listener = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try secure?(channel)
                    try gate.admit(channel, secured: secure != nil, protocolHandlesIdle: true)
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(NIOHTTP2Handler(mode: .server, initialSettings: limits.settings))
                    try sync.addHandler(WireConnection(router: router, limits: limits, budget: budget, eventLoop: channel.eventLoop))
                    let key = ObjectIdentifier(channel)
                    connections.withLockedValue { $0[key] = channel }
                    channel.closeFuture.whenComplete { _ in _ = connections.withLockedValue { $0.removeValue(forKey: key) } }
                }
            }
            .bind(host: host, port: port).get()
        return WireServer(listener: listener, connections: connections)
    }

    var port: Int? { listener.localAddress?.port }

    /// Returns when the listener is closed.
    func waitUntilClosed() async throws {
        try await listener.closeFuture.get()
    }

    /// Stops accepting and closes every open connection (their calls are cancelled).
    func close() {
        listener.close(promise: nil)
        let open = connections.withLockedValue { Array($0.values) }
        for channel in open { channel.close(promise: nil) }
    }
}
