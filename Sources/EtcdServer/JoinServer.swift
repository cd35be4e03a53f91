import ClusterPKI
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import RaftRuntime
import ServiceLifecycle

/// One JSON document per line, both ways, over TLS: the join endpoint's protocol.
enum JoinWire {
    static let lineBytesMax = 256 << 10

    struct LineDecoder: ByteToMessageDecoder {
        typealias InboundOut = ByteBuffer
        mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
            guard let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
                if buffer.readableBytes > lineBytesMax { throw JoinError("request larger than \(lineBytesMax) bytes") }
                return .needMoreData
            }
            let length = newline - buffer.readerIndex
            context.fireChannelRead(wrapInboundOut(buffer.readSlice(length: length)!))
            buffer.moveReaderIndex(forwardBy: 1)
            return .continue
        }
    }
}

public struct JoinError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Serves join requests on a control-plane node (TLS with the node's certificate and the CA in
/// the chain, so that the joiner can check the CA against its pinned hash; no client
/// certificate: the token is the joiner's credential).
public struct JoinServer: Service {
    let authority: JoinAuthority
    let identity: any IdentityProvider
    let host: String
    let port: Int

    public init(authority: JoinAuthority, identity: any IdentityProvider, host: String, port: Int) {
        self.authority = authority
        self.identity = identity
        self.host = host
        self.port = port
    }

    final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let authority: JoinAuthority
        init(authority: JoinAuthority) { self.authority = authority }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let line = unwrapInboundIn(data)
            let channel = context.channel
            let authority = self.authority
            // Failed attempts are counted per address, not per connection.
            let source = context.remoteAddress?.ipAddress ?? "unknown"
            Task {
                let response: JoinResponse
                if let request = try? JSONDecoder().decode(JoinRequest.self, from: Data(line.readableBytesView)) {
                    response = await authority.handle(request, source: source)
                } else {
                    response = JoinResponse(error: "malformed join request (raftkube join sends JSON with token, nodeName, advertiseAddress, controlPlane, publicKey)")
                }
                var bytes = (try? JSONEncoder().encode(response)) ?? Data()
                bytes.append(UInt8(ascii: "\n"))
                try? await channel.writeAndFlush(ByteBuffer(bytes: bytes))
                try? await channel.close()
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }

    public func run() async throws {
        let contexts = try TLSContextCache(identity) { identity in
            var configuration = try identity.serverConfiguration()
            configuration.certificateChain = try (identity.certificateChain + [identity.trust.ca]).map {
                .certificate(try NIOSSLCertificate(bytes: Array(try $0.serializeAsPEM().pemString.utf8), format: .pem))
            }
            configuration.certificateVerification = .none
            return try NIOSSLContext(configuration: configuration)
        }
        let authority = self.authority
        let gate = try ConnectionGate(limits: .join, name: "join", logger: Logger(label: "raftkube.join"))
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: try contexts.current().context))
                    try gate.admit(channel, secured: true)
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(JoinWire.LineDecoder()))
                    try channel.pipeline.syncOperations.addHandler(Handler(authority: authority))
                }
            }
            .bind(host: host, port: port).get()
        try await withGracefulShutdownHandler {
            try await channel.closeFuture.get()
        } onGracefulShutdown: {
            channel.close(promise: nil)
        }
    }
}
