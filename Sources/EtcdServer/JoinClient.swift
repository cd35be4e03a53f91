import ClusterPKI
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import X509

/// The joiner's side: checks the server's CA against the pinned hash during the TLS handshake,
/// before anything is sent, then sends the request and reads the answer.
public enum JoinClient {
    final class ResponseHandler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let promise: EventLoopPromise<ByteBuffer>
        init(promise: EventLoopPromise<ByteBuffer>) { self.promise = promise }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { promise.succeed(unwrapInboundIn(data)) }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            promise.fail(error)
            context.close(promise: nil)
        }
        func channelInactive(context: ChannelHandlerContext) { promise.fail(JoinError("the server closed the connection without an answer")) }
    }

    public static func join(host: String, port: Int, caHash: String, request: JoinRequest) async throws -> JoinResponse {
        let pinned = NIOLockedValueBox<String?>(nil)
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .noHostnameVerification
        let context = try NIOSSLContext(configuration: configuration)
        let group = MultiThreadedEventLoopGroup.singleton
        let promise = group.next().makePromise(of: ByteBuffer.self)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let handler = try NIOSSLClientHandler(context: context, serverHostname: nil) { certificates, verification in
                            verification.succeed(Self.checkPinned(certificates, caHash: caHash, refusal: pinned))
                        }
                        try channel.pipeline.syncOperations.addHandler(handler)
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(JoinWire.LineDecoder()))
                        try channel.pipeline.syncOperations.addHandler(ResponseHandler(promise: promise))
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            throw JoinError("cannot reach \(host):\(port): \(error)")
        }
        defer { channel.close(promise: nil) }
        var bytes = try JSONEncoder().encode(request)
        bytes.append(UInt8(ascii: "\n"))
        do {
            try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
            let line = try await promise.futureResult.get()
            return try JSONDecoder().decode(JoinResponse.self, from: Data(line.readableBytesView))
        } catch {
            if let refusal = pinned.withLockedValue({ $0 }) { throw JoinError(refusal) }
            throw JoinError("the join with \(host):\(port) failed: \(error)")
        }
    }

    /// Accepts the server only if its chain ends in a CA with the pinned hash that signed the
    /// server's certificate; records why not otherwise.
    static func checkPinned(_ certificates: [NIOSSLCertificate], caHash: String, refusal: NIOLockedValueBox<String?>) -> NIOSSLVerificationResult {
        guard certificates.count >= 2,
              let chain = try? certificates.map({ try Certificate(derEncoded: try $0.toDERBytes()) }),
              let ca = chain.last, let leaf = chain.first
        else {
            refusal.withLockedValue { $0 = "the server did not present its CA certificate: it is not a raftkube control-plane node's join port; nothing was sent" }
            return .failed
        }
        let hash = CertificateAuthority.hash(of: ca)
        guard hash == caHash else {
            refusal.withLockedValue { $0 = "the server's CA has hash \(hash), not the pinned \(caHash): wrong address, another cluster, or someone in between; nothing was sent" }
            return .failed
        }
        guard ca.publicKey.isValidSignature(leaf.signature, for: leaf) else {
            refusal.withLockedValue { $0 = "the server's certificate is not signed by the pinned CA; nothing was sent" }
            return .failed
        }
        return .certificateVerified
    }
}
