import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOTLS
import Raft
import Testing

@testable import RaftRuntime

/// ``ConnectionGate`` and ``ConnectionGuardHandler`` on real sockets with small limits: the cap,
/// the handshake timeout and the idle timeout, each closing exactly the connections it should.
@Suite("Connection limits")
struct ConnectionLimitsTests {
    /// Stands in for a TLS handler: the first byte read "completes the handshake".
    final class FakeHandshake: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        var done = false
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if !done {
                done = true
                context.fireUserInboundEventTriggered(TLSUserEvent.handshakeCompleted(negotiatedProtocol: nil))
            }
            context.fireChannelRead(data)
        }
    }

    /// A listener whose connections pass `gate`, optionally behind a ``FakeHandshake``.
    static func listen(_ gate: ConnectionGate, secured: Bool) async throws -> any Channel {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if secured { try channel.pipeline.syncOperations.addHandler(FakeHandshake()) }
                    try gate.admit(channel, secured: secured)
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    static func connect(_ listener: any Channel) async throws -> any Channel {
        try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: listener.localAddress!.port!).get()
    }

    /// Whether `channel` is closed by the other side within `seconds`.
    static func closes(_ channel: any Channel, within seconds: Double) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if !channel.isActive { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return !channel.isActive
    }

    @Test("Limits are validated")
    func validation() {
        #expect(throws: ConfigurationError.self) { try ConnectionLimits(connectionsMax: 0, handshakeTimeoutMs: 1, idleTimeoutMs: 0).validate() }
        #expect(throws: ConfigurationError.self) { try ConnectionLimits(connectionsMax: 1, handshakeTimeoutMs: 0, idleTimeoutMs: 0).validate() }
        #expect(throws: ConfigurationError.self) { try ConnectionLimits(connectionsMax: 1, handshakeTimeoutMs: 1, idleTimeoutMs: -1).validate() }
        for limits in [ConnectionLimits.client, .peer, .join] { #expect(throws: Never.self) { try limits.validate() } }
        var transport = TransportLimits()
        transport.connections.connectionsMax = 0
        #expect(throws: ConfigurationError.self) { try transport.validate() }
    }

    @Test("Past the cap a connection is closed at once; when one closes, the next is admitted")
    func cap() async throws {
        let gate = try ConnectionGate(limits: ConnectionLimits(connectionsMax: 2, handshakeTimeoutMs: 1_000, idleTimeoutMs: 0), name: "test", logger: Logger(label: "test"))
        let listener = try await Self.listen(gate, secured: false)
        defer { listener.close(promise: nil) }
        let first = try await Self.connect(listener)
        let second = try await Self.connect(listener)
        let third = try await Self.connect(listener)
        #expect(await Self.closes(third, within: 2))
        #expect(first.isActive && second.isActive)
        #expect(gate.openConnections == 2)
        try await first.close()
        let deadline = ContinuousClock.now + .seconds(2)
        while gate.openConnections > 1 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        let fourth = try await Self.connect(listener)
        #expect(!(await Self.closes(fourth, within: 0.3)))
        try await second.close()
        try await fourth.close()
    }

    @Test("A connection whose handshake does not complete in time is closed; one whose handshake completed stays")
    func handshakeTimeout() async throws {
        let gate = try ConnectionGate(limits: ConnectionLimits(connectionsMax: 10, handshakeTimeoutMs: 1_000, idleTimeoutMs: 0), name: "test", logger: Logger(label: "test"))
        let listener = try await Self.listen(gate, secured: true)
        defer { listener.close(promise: nil) }
        let started = ContinuousClock.now
        let silent = try await Self.connect(listener)
        let shaken = try await Self.connect(listener)
        try await shaken.writeAndFlush(ByteBuffer(bytes: [1]))
        // Later than the timeout is fine on a loaded machine; earlier is not. The timeout is a
        // second, not less: with the other suites in parallel on 2 cores, 300 ms between the
        // connect and the first byte was seen to pass (the shaken one was closed too).
        #expect(await Self.closes(silent, within: 10))
        #expect(ContinuousClock.now - started >= .milliseconds(1_000), "closed before the timeout")
        try await Task.sleep(for: .milliseconds(1_000))
        #expect(shaken.isActive, "a completed handshake was timed out")
        try await shaken.close()
    }

    @Test("A connection that carries nothing for the idle timeout is closed; one that keeps talking stays")
    func idleTimeout() async throws {
        let gate = try ConnectionGate(limits: ConnectionLimits(connectionsMax: 10, handshakeTimeoutMs: 1_000, idleTimeoutMs: 1_500), name: "test", logger: Logger(label: "test"))
        let listener = try await Self.listen(gate, secured: false)
        defer { listener.close(promise: nil) }
        let idle = try await Self.connect(listener)
        let talking = try await Self.connect(listener)
        let started = ContinuousClock.now
        // Heartbeats every 100 ms, as a leader's stream carries them; the idle timeout is 15 of
        // those gaps, so a loaded machine's late wake-up does not look like silence.
        while ContinuousClock.now - started < .milliseconds(4_000) {
            try await talking.writeAndFlush(ByteBuffer(bytes: [0]))
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(!idle.isActive, "an idle connection outlived the idle timeout")
        #expect(talking.isActive, "a connection with traffic was closed as idle")
        try await talking.close()
    }
}
