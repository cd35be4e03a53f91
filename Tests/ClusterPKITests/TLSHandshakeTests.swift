import ClusterPKI
import Crypto
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import Testing
import X509

/// Collects log messages with their metadata, for checking what a refusal logged.
final class RecordingLogHandler: LogHandler, @unchecked Sendable {
    let lines = NIOLockedValueBox<[String]>([])
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let text = "\(event.message) \((event.metadata ?? [:]).map { "\($0)=\($1)" }.sorted().joined(separator: " "))"
        lines.withLockedValue { $0.append(text) }
    }
}

/// Echoes what it reads.
final class EchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(data, promise: nil)
    }
}

/// Completes a promise with the first bytes read, or the error that closed the channel.
final class FirstReadHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let promise: EventLoopPromise<String>
    init(promise: EventLoopPromise<String>) { self.promise = promise }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        promise.succeed(String(buffer: unwrapInboundIn(data)))
    }
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }
    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ChannelError.eof)
    }
}

/// Real TLS 1.3 handshakes on loopback with the cluster's certificates and trust callback.
@Suite("Mutual TLS handshakes")
struct TLSHandshakeTests {
    static func identity(_ ca: CertificateAuthority, _ profile: CertificateAuthority.Profile, name: String, now: Date = Date(), days: Int = 30, trusting: Certificate? = nil) throws -> TLSIdentity {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let certificate = try ca.issue(profile: profile, commonName: name, ipAddresses: ["127.0.0.1"], publicKey: key.publicKey, now: now, days: days)
        return TLSIdentity(trust: ClusterTrust(ca: trusting ?? ca.certificate), certificateChain: [certificate], privateKey: key)
    }

    /// Starts an echo server that requires node certificates; returns its channel.
    static func server(_ identity: TLSIdentity, logger: Logger) async throws -> any Channel {
        let context = try NIOSSLContext(configuration: try identity.serverConfiguration())
        let trust = identity.trust
        return try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(
                        context: context,
                        customVerificationCallbackWithMetadata: trust.verificationCallback(requiring: [CertificateAuthority.peerOrganization], memberBound: true, logger: logger, context: "test server")))
                    try channel.pipeline.syncOperations.addHandler(EchoHandler())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    /// Connects with `identity`, sends "ping" and returns the answer (or throws the failure).
    static func exchange(_ identity: TLSIdentity, port: Int, logger: Logger) async throws -> String {
        let context = try NIOSSLContext(configuration: try identity.clientConfiguration())
        let trust = identity.trust
        let group = MultiThreadedEventLoopGroup.singleton
        let promise = group.next().makePromise(of: String.self)
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(
                        context: context, serverHostname: nil,
                        customVerificationCallbackWithMetadata: trust.verificationCallback(requiring: [CertificateAuthority.peerOrganization], memberBound: true, logger: logger, context: "test client")))
                    try channel.pipeline.syncOperations.addHandler(FirstReadHandler(promise: promise))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        defer { channel.close(promise: nil) }
        try await channel.writeAndFlush(ByteBuffer(string: "ping")).get()
        return try await promise.futureResult.get()
    }

    @Test("two peers of one cluster talk; a foreign, an expired, a worker's and an admin certificate are refused with the reason logged")
    func handshakes() async throws {
        let ca = try CertificateAuthority.create(clusterName: "lab")
        let serverLog = RecordingLogHandler()
        let serverLogger = Logger(label: "server") { _ in serverLog }
        let quiet = Logger(label: "client") { _ in SwiftLogNoOpLogHandler() }
        let server = try await Self.server(try Self.identity(ca, .peer(memberID: 1), name: "vm1"), logger: serverLogger)
        defer { server.close(promise: nil) }
        let port = try #require(server.localAddress?.port)

        #expect(try await Self.exchange(try Self.identity(ca, .peer(memberID: 2), name: "vm2"), port: port, logger: quiet) == "ping")

        let other = try CertificateAuthority.create(clusterName: "elsewhere")
        let cases: [(TLSIdentity, String)] = [
            (try Self.identity(other, .peer(memberID: 4), name: "intruder", trusting: ca.certificate), "was not issued by this cluster's CA"),
            (try Self.identity(ca, .peer(memberID: 5), name: "stale", now: Date().addingTimeInterval(-10 * 86_400), days: 1), "expired"),
            (try Self.identity(ca, .node, name: "system:node:worker"), "is not a raftkube:peers certificate"),
            (try Self.identity(ca, .client(organization: CertificateAuthority.adminOrganization), name: "admin"), "is not a raftkube:peers certificate"),
        ]
        for (identity, reason) in cases {
            await #expect(throws: (any Error).self, "\(reason)") { _ = try await Self.exchange(identity, port: port, logger: quiet) }
            let logged = serverLog.lines.withLockedValue { $0 }
            #expect(logged.contains { $0.contains("refused a TLS peer") && $0.contains(reason) }, "\(logged)")
        }

        // A client that trusts another CA refuses the server, and says so.
        let clientLog = RecordingLogHandler()
        let misled = try Self.identity(other, .peer(memberID: 9), name: "vm9")
        await #expect(throws: (any Error).self) {
            _ = try await Self.exchange(misled, port: port, logger: Logger(label: "client") { _ in clientLog })
        }
        #expect(clientLog.lines.withLockedValue { $0 }.contains { $0.contains("was not issued by this cluster's CA") })
        // The server still serves its own cluster after all that.
        #expect(try await Self.exchange(try Self.identity(ca, .peer(memberID: 3), name: "vm3"), port: port, logger: quiet) == "ping")
    }
}
