import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import SwiftProtobuf

/// A gRPC client for unary calls over one plaintext HTTP/2 connection, made for `raftkube bench`:
/// one handler after SwiftNIO's HTTP/2 codec sees every stream's frames, so a call costs two
/// frames out, a few frames in and one continuation, not a stream channel and tasks of its own.
/// A load generator that spends less CPU per call leaves more of a small machine to the servers
/// it measures (grpc-swift's client used about as much CPU per put as the members together).
///
/// It speaks to any gRPC server (raftkube's or etcd's). Calls are failed with ``WireCallError``:
/// the call's `grpc-status` and `grpc-message`, or `unavailable` (14) when the connection is lost.
public final class WireClient: Sendable {
    private let channel: any Channel
    private let handler: NIOLoopBound<WireClientHandler>

    private init(channel: any Channel, handler: NIOLoopBound<WireClientHandler>) {
        self.channel = channel
        self.handler = handler
    }

    /// Connects to `host:port`.
    public static func connect(host: String, port: Int, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> WireClient {
        let authority = "\(host):\(port)"
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(NIOHTTP2Handler(mode: .client, connectionConfiguration: WireClientHandler.connection, streamConfiguration: WireClientHandler.stream))
                    try sync.addHandler(WireClientHandler(authority: authority))
                }
            }
            .connect(host: host, port: port).get()
        let handler = try await channel.eventLoop.submit {
            NIOLoopBound(try channel.pipeline.syncOperations.handler(type: WireClientHandler.self), eventLoop: channel.eventLoop)
        }.get()
        return WireClient(channel: channel, handler: handler)
    }

    /// Calls the unary method at `path` (e.g. `/etcdserverpb.KV/Put`).
    public func unary<Request: Message, Response: Message>(_ path: String, _ request: Request, as: Response.Type = Response.self) async throws -> Response {
        let body = GRPCMessageReader.frame(try request.serializedBytes(), allocator: channel.allocator)
        let bytes = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ByteBuffer, any Error>) in
            let handler = self.handler
            channel.eventLoop.execute {
                handler.value.start(path: path, body: body, continuation: continuation)
            }
        }
        return try Response(serializedBytes: Array(bytes.readableBytesView))
    }

    public func close() async {
        try? await channel.close()
    }
}

/// The status of a failed call.
public struct WireCallError: Error, Hashable, CustomStringConvertible {
    /// gRPC status code (14: unavailable, 13: internal, ...).
    public var code: Int
    public var message: String

    public var description: String { "gRPC status \(code): \(message)" }
}

/// The client connection's handler: starts streams, reassembles each response, credits the
/// connection's receive window, and fails whatever is open when the connection goes.
final class WireClientHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    static let streamWindowBytes = 4 << 20
    /// The server is trusted: no limit on its PINGs (grpc-go sends one per burst of DATA to
    /// estimate bandwidth) or on its RST_STREAMs (etcd resets each stream it has answered).
    static var connection: NIOHTTP2Handler.ConnectionConfiguration {
        var configuration = NIOHTTP2Handler.ConnectionConfiguration()
        configuration.initialSettings = [
            HTTP2Setting(parameter: .initialWindowSize, value: streamWindowBytes),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 64 * 1024),
        ]
        configuration.controlFrameRateLimit.maximumCount = unlimitedCount
        configuration.controlFrameRateLimit.windowLength = unlimitedWindow
        return configuration
    }
    static var stream: NIOHTTP2Handler.StreamConfiguration {
        var configuration = NIOHTTP2Handler.StreamConfiguration()
        configuration.streamResetFrameRateLimit.maximumCount = unlimitedCount
        configuration.streamResetFrameRateLimit.windowLength = unlimitedWindow
        configuration.streamErrorRateLimit.maximumCount = unlimitedCount
        configuration.streamErrorRateLimit.windowLength = unlimitedWindow
        return configuration
    }
    /// A rate limit that never trips: more than this many frames inside one nanosecond cannot
    /// arrive. Not `Int.max` as the count: NIOHTTP2 reserves a `Deque` of that many timestamps
    /// per limit, and `ManagedBuffer.create(minimumCapacity: .max)` wraps the allocation's size
    /// to a few bytes; glibc's usable size then gives the buffer a capacity of 0, ThreadSanitizer's
    /// allocator one of -1, and the process died with "deinitialize with negative count" or a
    /// SEGV in `swift_release` inside `ClientBootstrap.connect` (issue 15).
    static let unlimitedCount = 1_000
    static let unlimitedWindow = TimeAmount.nanoseconds(1)
    static let messageBytesMax = 64 << 20

    private struct Call {
        var continuation: CheckedContinuation<ByteBuffer, any Error>
        var reader = GRPCMessageReader(messageBytesMax: WireClientHandler.messageBytesMax)
        var message: ByteBuffer?
        var failure: WireCallError?
    }

    private let authority: String
    private var context: ChannelHandlerContext?
    private var calls: [HTTP2StreamID: Call] = [:]
    private var nextStream = HTTP2StreamID(1)
    private var connectionCreditOwed = 0
    private var closedReason: String?

    init(authority: String) {
        self.authority = authority
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func start(path: String, body: ByteBuffer, continuation: CheckedContinuation<ByteBuffer, any Error>) {
        guard let context, closedReason == nil else {
            continuation.resume(throwing: WireCallError(code: 14, message: closedReason ?? "not connected"))
            return
        }
        let stream = nextStream
        nextStream = HTTP2StreamID(Int32(stream) + 2)
        calls[stream] = Call(continuation: continuation)
        let headers: HPACKHeaders = [":method": "POST", ":scheme": "http", ":path": path, ":authority": authority,
                                     "content-type": "application/grpc", "te": "trailers"]
        context.write(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: .headers(.init(headers: headers)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: .data(.init(data: .byteBuffer(body), endStream: true)))), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.payload {
        case .data(let payload):
            guard case .byteBuffer(let bytes) = payload.data else { return }
            credit(bytes.readableBytes, context: context)
            guard var call = calls[frame.streamID] else { return }
            do {
                for message in try call.reader.append(bytes) {
                    if call.message == nil { call.message = message } else { call.failure = WireCallError(code: 13, message: "more than one response message") }
                }
            } catch {
                call.failure = WireCallError(code: 13, message: "bad response framing: \(error)")
            }
            calls[frame.streamID] = call
            if payload.endStream { finish(frame.streamID, status: WireCallError(code: 13, message: "response ended without trailers")) }
        case .headers(let payload):
            guard payload.endStream else {
                if let status = payload.headers.first(name: ":status"), status != "200" {
                    calls[frame.streamID]?.failure = WireCallError(code: 13, message: "HTTP status \(status)")
                }
                return
            }
            let code = payload.headers.first(name: "grpc-status").flatMap(Int.init) ?? 13
            let message = payload.headers.first(name: "grpc-message")?.removingPercentEncoding ?? ""
            finish(frame.streamID, status: code == 0 ? nil : WireCallError(code: code, message: message))
        case .rstStream(let reason):
            // etcd's server resets a stream it has finished answering: only an open call fails.
            finish(frame.streamID, status: WireCallError(code: 14, message: "stream reset: \(reason)"))
        case .goAway(let lastStream, let reason, _):
            for stream in calls.keys where stream > lastStream {
                finish(stream, status: WireCallError(code: 14, message: "connection going away: \(reason)"))
            }
            closedReason = "connection going away: \(reason)"
        default:
            break
        }
    }

    private func credit(_ bytes: Int, context: ChannelHandlerContext) {
        guard bytes > 0 else { return }
        connectionCreditOwed += bytes
        guard connectionCreditOwed >= 32 * 1024 else { return }
        context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: connectionCreditOwed))), promise: nil)
        connectionCreditOwed = 0
    }

    /// Ends the call on `stream`: its message, or the first failure seen, or `status`.
    private func finish(_ stream: HTTP2StreamID, status: WireCallError?) {
        guard let call = calls.removeValue(forKey: stream) else { return }
        if let failure = call.failure ?? status {
            call.continuation.resume(throwing: failure)
        } else if let message = call.message {
            call.continuation.resume(returning: message)
        } else {
            call.continuation.resume(throwing: WireCallError(code: 13, message: "no response message"))
        }
    }

    private func failAll(_ reason: String) {
        closedReason = closedReason ?? reason
        for stream in Array(calls.keys) { finish(stream, status: WireCallError(code: 14, message: reason)) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll("connection closed")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? NIOHTTP2Errors.StreamError {
            // One stream's protocol error (the connection goes on).
            finish(error.streamID, status: WireCallError(code: 13, message: "stream error: \(error.baseError)"))
            return
        }
        failAll("connection error: \(error)")
        context.close(promise: nil)
    }
}
