import GRPCCore
import NIOCore
import NIOHPACK
import NIOHTTP2

/// Limits of one ``WireServer`` connection.
struct WireLimits: Sendable {
    /// The largest request message (protobuf bytes); past it the call fails with
    /// RESOURCE_EXHAUSTED as grpc-go words it.
    var messageBytesMax: Int
    /// Request messages a streaming call may have waiting for its handler.
    var inboundMessagesMax = 1024
    /// The connection's receive window (HTTP/2 flow control), in bytes.
    var connectionWindowBytes = 16 << 20
    /// Each stream's receive window: larger than the largest message, so that a unary request
    /// always fits without a window update.
    var streamWindowBytes: Int { max(1 << 20, messageBytesMax + 64 * 1024) }
    var concurrentStreamsMax = 4096

    var settings: HTTP2Settings {
        [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: concurrentStreamsMax),
            HTTP2Setting(parameter: .initialWindowSize, value: streamWindowBytes),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 16 * 1024),
        ]
    }
}

/// gRPC over one HTTP/2 connection, server side: the handler after `NIOHTTP2Handler` (which
/// keeps the protocol's state, HPACK and outbound flow control), seeing every stream's frames
/// itself. There is no channel per stream, no async sequence per call, and unary calls that can
/// be answered at once are answered on the event loop; the replies of one read are flushed
/// together.
///
/// Receive windows are this handler's job (without a stream multiplexer nothing else returns
/// them): the connection's window is topped up as DATA arrives, a streaming call's window as its
/// messages are queued for its handler (whose queue is bounded).
final class WireConnection: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    /// One call.
    private final class Call {
        let method: WireRouter.Method
        var reader: GRPCMessageReader
        /// Unary: the request message.
        var request: ByteBuffer?
        /// Streaming: where request messages go.
        var inbound: AsyncThrowingStream<ByteBuffer, any Error>.Continuation?
        var task: Task<Void, Never>?
        var headersSent = false
        /// Trailers sent: nothing more goes out on this stream.
        var finished = false
        var requestEnded = false
        /// Received bytes of a streaming call not yet returned to the client's window.
        var creditOwed = 0

        init(method: WireRouter.Method, reader: GRPCMessageReader) {
            self.method = method
            self.reader = reader
        }
    }

    private let router: WireRouter
    private let limits: WireLimits
    private let eventLoop: any EventLoop
    private var context: ChannelHandlerContext?
    private var calls: [HTTP2StreamID: Call] = [:]
    /// Where streaming calls post their messages and started calls their answers. It refers
    /// back to this handler, so it is dropped when the connection closes (no cycle outlives it).
    private var mailboxStorage: WireMailbox?
    private var mailbox: WireMailbox {
        if let mailboxStorage { return mailboxStorage }
        let mailbox = WireMailbox(connection: NIOLoopBound(self, eventLoop: eventLoop))
        mailboxStorage = mailbox
        return mailbox
    }
    private var connectionCreditOwed = 0
    private var reading = false
    private var flushOwed = false
    private var flushScheduled = false

    init(router: WireRouter, limits: WireLimits, eventLoop: any EventLoop) {
        self.router = router
        self.limits = limits
        self.eventLoop = eventLoop
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { openConnectionWindow(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        openConnectionWindow(context: context)
        context.fireChannelActive()
    }

    /// HTTP/2 starts every connection's window at 64 KiB; ours is larger.
    private func openConnectionWindow(context: ChannelHandlerContext) {
        let increment = limits.connectionWindowBytes - 65_535
        guard increment > 0 else { return }
        context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: increment))), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        for call in calls.values { abandon(call) }
        calls = [:]
        mailboxStorage = nil
        self.context = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Protocol errors of the connection (NIOHTTP2 has sent GOAWAY where it applies).
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let closed = event as? StreamClosedEvent, let call = calls.removeValue(forKey: closed.streamID) {
            abandon(call)
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// A stream that closed before its handler finished: its handler stops.
    private func abandon(_ call: Call) {
        call.finished = true
        call.inbound?.finish(throwing: CancellationError())
        call.task?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        reading = true
        let frame = unwrapInboundIn(data)
        switch frame.payload {
        case .headers(let headers):
            if let call = calls[frame.streamID] {
                // Trailers from a client: only the end of its stream matters.
                if headers.endStream { endOfRequest(call, stream: frame.streamID) }
            } else {
                start(stream: frame.streamID, headers: headers)
            }
        case .data(let payload):
            var length = payload.paddingBytes.map { $0 + 1 } ?? 0
            if case .byteBuffer(let bytes) = payload.data { length += bytes.readableBytes }
            returnConnectionCredit(length)
            guard let call = calls[frame.streamID], case .byteBuffer(let bytes) = payload.data else { return }
            guard !call.finished else {
                // Answered already (a refusal): the rest of the request is read and dropped, its
                // window returned, so that the client can finish sending and read the answer.
                if !payload.endStream, length > 0 { write(HTTP2Frame(streamID: frame.streamID, payload: .windowUpdate(windowSizeIncrement: length))) }
                return
            }
            received(bytes, length: length, endStream: payload.endStream, call: call, stream: frame.streamID)
        case .rstStream:
            if let call = calls.removeValue(forKey: frame.streamID) { abandon(call) }
        default:
            // SETTINGS, PING, GOAWAY, WINDOW_UPDATE, PRIORITY: NIOHTTP2Handler's business.
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        reading = false
        if flushOwed {
            flushOwed = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    // MARK: Requests

    private func start(stream: HTTP2StreamID, headers: HTTP2Frame.FramePayload.Headers) {
        let fields = headers.headers
        guard fields.first(name: ":method") == "POST" else {
            return refuseHTTP(stream, status: "405", endStream: headers.endStream)
        }
        guard fields.first(name: "content-type")?.hasPrefix("application/grpc") == true else {
            return refuseHTTP(stream, status: "415", endStream: headers.endStream)
        }
        let path = fields.first(name: ":path") ?? ""
        guard let method = router.method(path: path) else {
            return refuse(stream, RPCError(code: .unimplemented, message: "unknown method \(path)"), endStream: headers.endStream)
        }
        if let encoding = fields.first(name: "grpc-encoding"), encoding != "identity" {
            return refuse(stream, RPCError(code: .unimplemented, message: "grpc: Decompressor is not installed for grpc-encoding \"\(encoding)\""), endStream: headers.endStream)
        }
        let call = Call(method: method, reader: GRPCMessageReader(messageBytesMax: limits.messageBytesMax))
        calls[stream] = call
        if case .streaming(let body) = method {
            let (messages, continuation) = AsyncThrowingStream<ByteBuffer, any Error>.makeStream(bufferingPolicy: .bufferingOldest(limits.inboundMessagesMax))
            call.inbound = continuation
            let connection = NIOLoopBound(self, eventLoop: eventLoop)
            let mailbox = self.mailbox
            let outbound = WireOutbound(mailbox: mailbox, stream: stream)
            call.task = Task {
                let failure: RPCError?
                do {
                    try await body(WireInbound(messages: messages), outbound)
                    failure = nil
                } catch {
                    failure = WireRouter.status(of: error)
                }
                mailbox.run { connection.value.finish(stream: stream, failure: failure) }
            }
        }
        if headers.endStream { endOfRequest(call, stream: stream) }
    }

    private func received(_ bytes: ByteBuffer, length: Int, endStream: Bool, call: Call, stream: HTTP2StreamID) {
        let messages: [ByteBuffer]
        do {
            messages = try call.reader.append(bytes)
        } catch {
            return fail(call, stream: stream, Self.status(error))
        }
        switch call.method {
        case .unary:
            for message in messages {
                guard call.request == nil else {
                    return fail(call, stream: stream, RPCError(code: .internalError, message: "grpc: more than one request message for a unary RPC"))
                }
                call.request = message
            }
        case .streaming:
            for message in messages {
                if case .dropped = call.inbound?.yield(message) {
                    return fail(call, stream: stream, RPCError(code: .resourceExhausted, message: "grpc: more than \(limits.inboundMessagesMax) request messages waiting"))
                }
            }
            call.creditOwed += length
            if !endStream, call.creditOwed >= limits.streamWindowBytes / 2 {
                write(HTTP2Frame(streamID: stream, payload: .windowUpdate(windowSizeIncrement: call.creditOwed)))
                call.creditOwed = 0
            }
        }
        if endStream { endOfRequest(call, stream: stream) }
    }

    private func endOfRequest(_ call: Call, stream: HTTP2StreamID) {
        guard !call.requestEnded else { return }
        call.requestEnded = true
        guard !call.finished else { return }
        do {
            try call.reader.finish()
        } catch {
            return fail(call, stream: stream, Self.status(error))
        }
        switch call.method {
        case .unary(let answer):
            guard let request = call.request else {
                return fail(call, stream: stream, RPCError(code: .internalError, message: "grpc: no request message for a unary RPC"))
            }
            call.request = nil
            switch answer(request) {
            case .now(.success(let response)):
                respond(call, stream: stream, response)
            case .now(.failure(let error)):
                fail(call, stream: stream, error)
            case .started(let start):
                let connection = NIOLoopBound(self, eventLoop: eventLoop)
                let mailbox = self.mailbox
                start { respond in
                    mailbox.run { connection.value.complete(stream: stream, Result { try respond() }.mapError(WireRouter.status(of:))) }
                }
            case .later(let work):
                let connection = NIOLoopBound(self, eventLoop: eventLoop)
                let mailbox = self.mailbox
                call.task = Task {
                    let result: Result<[UInt8], RPCError>
                    do {
                        result = .success(try await work())
                    } catch {
                        result = .failure(WireRouter.status(of: error))
                    }
                    mailbox.run { connection.value.complete(stream: stream, result) }
                }
            }
        case .streaming:
            call.inbound?.finish()
        }
    }

    private func returnConnectionCredit(_ length: Int) {
        connectionCreditOwed += length
        if connectionCreditOwed >= limits.connectionWindowBytes / 2 {
            write(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: connectionCreditOwed)))
            connectionCreditOwed = 0
        }
    }

    static func status(_ failure: GRPCMessageReader.Failure) -> RPCError {
        switch failure {
        case .tooLarge(let length, let limit):
            RPCError(code: .resourceExhausted, message: "grpc: received message larger than max (\(length) vs. \(limit))")
        case .compressed:
            RPCError(code: .internalError, message: "grpc: compressed flag set with identity or empty encoding")
        case .truncated(let bytes):
            RPCError(code: .internalError, message: "grpc: the request ended inside a message (\(bytes) bytes left over)")
        }
    }

    // MARK: Responses (event loop only)

    /// A unary call's answer from its task.
    fileprivate func complete(stream: HTTP2StreamID, _ result: Result<[UInt8], RPCError>) {
        guard let call = calls[stream], !call.finished else { return }
        switch result {
        case .success(let response): respond(call, stream: stream, response)
        case .failure(let error): fail(call, stream: stream, error)
        }
    }

    /// A streaming call's handler returned (failure nil) or threw.
    fileprivate func finish(stream: HTTP2StreamID, failure: RPCError?) {
        guard let call = calls[stream], !call.finished else { return }
        if let failure {
            fail(call, stream: stream, failure)
        } else {
            sendTrailers(call, stream: stream, status: nil)
        }
    }

    /// One response message of a streaming call; the future completes once it is written.
    func send(_ message: [UInt8], on stream: HTTP2StreamID) -> EventLoopFuture<Void> {
        guard let context, let call = calls[stream], !call.finished else {
            return eventLoop.makeFailedFuture(CancellationError())
        }
        sendHeadersIfNeeded(call, stream: stream)
        let promise = context.eventLoop.makePromise(of: Void.self)
        let bytes = GRPCMessageReader.frame(message, allocator: context.channel.allocator)
        context.write(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: .data(.init(data: .byteBuffer(bytes))))), promise: promise)
        flushSoon()
        return promise.futureResult
    }

    private func respond(_ call: Call, stream: HTTP2StreamID, _ message: [UInt8]) {
        guard let context else { return }
        sendHeadersIfNeeded(call, stream: stream)
        let bytes = GRPCMessageReader.frame(message, allocator: context.channel.allocator)
        write(HTTP2Frame(streamID: stream, payload: .data(.init(data: .byteBuffer(bytes)))))
        sendTrailers(call, stream: stream, status: nil)
    }

    private func fail(_ call: Call, stream: HTTP2StreamID, _ error: RPCError) {
        guard !call.finished else { return }
        sendTrailers(call, stream: stream, status: error)
        call.inbound?.finish(throwing: CancellationError())
        call.task?.cancel()
    }

    private func sendHeadersIfNeeded(_ call: Call, stream: HTTP2StreamID) {
        guard !call.headersSent else { return }
        call.headersSent = true
        write(HTTP2Frame(streamID: stream, payload: .headers(.init(headers: Self.responseHeaders))))
    }

    private static let responseHeaders: HPACKHeaders = [":status": "200", "content-type": "application/grpc"]

    /// Ends the call: grpc-status (and grpc-message) in trailers, or alone ("Trailers-Only")
    /// when no response headers went out. A client still sending may finish (what it sends is
    /// dropped): some clients (curl) fail a stream reset while they send, even with NO_ERROR.
    private func sendTrailers(_ call: Call, stream: HTTP2StreamID, status error: RPCError?) {
        call.finished = true
        var trailers: HPACKHeaders = call.headersSent ? [:] : Self.responseHeaders
        call.headersSent = true
        trailers.add(name: "grpc-status", value: String(error?.code.rawValue ?? 0))
        if let error, !error.message.isEmpty { trailers.add(name: "grpc-message", value: GRPCStatusMessage.encode(error.message)) }
        write(HTTP2Frame(streamID: stream, payload: .headers(.init(headers: trailers, endStream: true))))
    }

    private func refuse(_ stream: HTTP2StreamID, _ error: RPCError, endStream: Bool) {
        fail(refusedCall(stream, endStream: endStream), stream: stream, error)
    }

    private func refuseHTTP(_ stream: HTTP2StreamID, status: String, endStream: Bool) {
        write(HTTP2Frame(streamID: stream, payload: .headers(.init(headers: [":status": status], endStream: true))))
        refusedCall(stream, endStream: endStream).finished = true
    }

    /// A refused call, kept until its stream closes so that the rest of the request is dropped
    /// and its window returned. Its method never runs.
    private func refusedCall(_ stream: HTTP2StreamID, endStream: Bool) -> Call {
        let call = Call(method: .unary { _ in .now(.failure(RPCError(code: .unknown, message: "refused"))) }, reader: GRPCMessageReader(messageBytesMax: 1))
        call.requestEnded = endStream
        calls[stream] = call
        return call
    }

    private func write(_ frame: HTTP2Frame) {
        guard let context else { return }
        context.write(wrapOutboundOut(frame), promise: nil)
        flushSoon()
    }

    /// Replies written while reading go out at the end of the read; others at the end of this
    /// event loop tick, together with any written beside them.
    private func flushSoon() {
        if reading {
            flushOwed = true
            return
        }
        guard !flushScheduled, context != nil else { return }
        flushScheduled = true
        let connection = NIOLoopBound(self, eventLoop: eventLoop)
        eventLoop.execute {
            connection.value.flushScheduled = false
            connection.value.context?.flush()
        }
    }
}
