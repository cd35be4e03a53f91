import GRPCCore
import NIOConcurrencyHelpers
import NIOCore
import NIOHPACK
import NIOHTTP2

/// Limits of one ``WireServer`` connection.
///
/// What one connection can make the server hold is bounded by `connectionBufferedBytesMax`: it
/// is the connection's HTTP/2 receive window, and received bytes are returned to that window only
/// once they are no longer held (a unary call's request once the call has answered, a streaming
/// call's message once its handler has taken it, dropped bytes at once). A client sending past
/// the window breaks HTTP/2 flow control, which `NIOHTTP2Handler` answers with GOAWAY
/// (FLOW_CONTROL_ERROR); one opening more than `concurrentStreamsMax` streams gets GOAWAY
/// (PROTOCOL_ERROR), as Go's HTTP/2 server does once its SETTINGS were acknowledged.
struct WireLimits: Sendable {
    /// The largest request message (protobuf bytes); past it the call fails with
    /// RESOURCE_EXHAUSTED as grpc-go words it.
    var messageBytesMax: Int
    /// Request messages a streaming call may have waiting for its handler.
    var inboundMessagesMax = 1024
    /// Bytes one connection may have received and not yet released (requests waiting for or held
    /// by their calls, partial messages): the connection's receive window (HTTP/2 flow control).
    /// Room for several of the largest messages, so that concurrent large requests on one
    /// connection do not wait for each other.
    var connectionBufferedBytesMax = 16 << 20
    /// Each stream's receive window: larger than the largest message, so that a unary request
    /// always fits without a window update.
    var streamWindowBytes: Int { max(1 << 20, messageBytesMax + 64 * 1024) }
    /// Streams a client may have open at once on one connection (Go's HTTP/2 server's default,
    /// which etcd's and kube-apiserver's clients meet).
    var concurrentStreamsMax = 250
    /// A connection with no open stream that received no frame for this long is closed (GOAWAY
    /// NO_ERROR, then close); 0 keeps idle connections open.
    var idleTimeoutMs: Int64 = 0
    /// Bytes of responses one connection may have written and the client not yet taken (HTTP/2
    /// keeps a stream's DATA while the client's window is shut, and a client that never reads
    /// shuts it): past it a unary call is answered RESOURCE_EXHAUSTED instead of with its
    /// response. Room for two of the largest range results (64 MiB); one response always goes
    /// out when nothing is waiting.
    var unreadResponseBytesMax = 128 << 20

    func validate() {
        precondition(messageBytesMax > 0 && inboundMessagesMax > 0 && concurrentStreamsMax > 0 && idleTimeoutMs >= 0 && unreadResponseBytesMax > 0)
        precondition(connectionBufferedBytesMax >= 2 * streamWindowBytes, "a connection must hold at least two of the largest messages")
        precondition(connectionBufferedBytesMax <= Int(Int32.max), "HTTP/2 windows are 31 bits")
    }

    var settings: HTTP2Settings {
        [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: concurrentStreamsMax),
            HTTP2Setting(parameter: .initialWindowSize, value: streamWindowBytes),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 16 * 1024),
        ]
    }
}

/// Bytes of responses that every connection of a server together has written and their clients
/// not yet taken: the server-wide bound beside each connection's
/// ``WireLimits/unreadResponseBytesMax``, so that many connections that do not read cannot add
/// up to more than this.
final class WireResponseBudget: Sendable {
    let bytesMax: Int
    private let unread = NIOLockedValueBox(0)

    init(bytesMax: Int = 1 << 30) {
        precondition(bytesMax > 0)
        self.bytesMax = bytesMax
    }

    var unreadBytes: Int { unread.withLockedValue { $0 } }

    /// Takes `bytes` when they fit (or nothing is unread at all); false when they do not.
    func take(_ bytes: Int, force: Bool = false) -> Bool {
        unread.withLockedValue { unread in
            guard force || unread == 0 || unread + bytes <= bytesMax else { return false }
            unread += bytes
            return true
        }
    }

    func give(_ bytes: Int) {
        unread.withLockedValue { $0 -= bytes }
    }
}

/// gRPC over one HTTP/2 connection, server side: the handler after `NIOHTTP2Handler` (which
/// keeps the protocol's state, HPACK and outbound flow control), seeing every stream's frames
/// itself. There is no channel per stream, no async sequence per call, and unary calls that can
/// be answered at once are answered on the event loop; the replies of one read are flushed
/// together.
///
/// Receive windows are this handler's job (without a stream multiplexer nothing else returns
/// them), and they are its memory bound: a DATA frame's bytes go back to the stream's and the
/// connection's windows only once nothing holds them any more (see ``WireLimits``). A unary
/// call's bytes are released when the call ends; a streaming call's as its handler takes each
/// message; bytes dropped (of a refused call, or a stream already gone) at once.
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
        /// Bytes of DATA received on this stream and not yet returned to the client's windows.
        /// Invariant: at least what the call holds (``WireConnection/held(_:)``).
        var unreturnedBytes = 0
        /// Bytes of whole messages queued for a streaming call's handler and not yet taken.
        var queuedBytes = 0

        init(method: WireRouter.Method, reader: GRPCMessageReader) {
            self.method = method
            self.reader = reader
        }
    }

    private let router: WireRouter
    private let limits: WireLimits
    private let budget: WireResponseBudget
    private let eventLoop: any EventLoop
    /// Bytes of DATA written on this connection and not yet passed to the socket (NIOHTTP2
    /// holds them while the client's window is shut).
    private var unreadResponseBytes = 0
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
    /// Bytes received on the connection and not yet returned to its window. Invariant: at most
    /// `limits.connectionBufferedBytesMax` (NIOHTTP2Handler refuses DATA past the window).
    private var connectionUnreturnedBytes = 0
    /// Released bytes not yet returned to the connection's window (returned in batches).
    private var connectionReleasedBytes = 0
    /// When the last frame arrived, for the idle timeout.
    private var lastFrameAt = NIODeadline.now()
    private var idleCheck: Scheduled<Void>?
    private var reading = false
    private var flushOwed = false
    private var flushScheduled = false

    init(router: WireRouter, limits: WireLimits, budget: WireResponseBudget, eventLoop: any EventLoop) {
        limits.validate()
        self.router = router
        self.limits = limits
        self.budget = budget
        self.eventLoop = eventLoop
    }

    /// The client's address as gRPC names it; unique among open connections (see ``WireInbound/peer``).
    private var peer = ""

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        peer = peerName(context.channel.remoteAddress)
        if context.channel.isActive { opened(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        opened(context: context)
        context.fireChannelActive()
    }

    /// `ipv4:ADDRESS:PORT` or `ipv6:[ADDRESS]:PORT` as gRPC names peers; this handler's identity
    /// when the channel has no IP address.
    private func peerName(_ address: SocketAddress?) -> String {
        guard let address, let ip = address.ipAddress, let port = address.port else { return "connection:\(ObjectIdentifier(self))" }
        return address.protocol == .inet6 ? "ipv6:[\(ip)]:\(port)" : "ipv4:\(ip):\(port)"
    }

    /// HTTP/2 starts every connection's window at 64 KiB; ours is larger. The idle check starts.
    private func opened(context: ChannelHandlerContext) {
        let increment = limits.connectionBufferedBytesMax - 65_535
        if increment > 0 {
            context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: increment))), promise: nil)
        }
        lastFrameAt = .now()
        scheduleIdleCheck(after: .milliseconds(limits.idleTimeoutMs))
    }

    /// Closes the connection when it has had no open stream and no frame for
    /// `limits.idleTimeoutMs`; a watch stream that waits for events keeps it open.
    private func scheduleIdleCheck(after delay: TimeAmount) {
        guard limits.idleTimeoutMs > 0, idleCheck == nil else { return }
        let connection = NIOLoopBound(self, eventLoop: eventLoop)
        idleCheck = eventLoop.scheduleTask(in: delay) {
            let connection = connection.value
            connection.idleCheck = nil
            guard let context = connection.context else { return }
            let idleFor = NIODeadline.now() - connection.lastFrameAt
            let timeout = TimeAmount.milliseconds(connection.limits.idleTimeoutMs)
            if connection.calls.isEmpty && idleFor >= timeout {
                context.writeAndFlush(connection.wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: .maxID, errorCode: .noError, opaqueData: nil))), promise: nil)
                context.close(promise: nil)
            } else {
                connection.scheduleIdleCheck(after: connection.calls.isEmpty ? timeout - idleFor : timeout)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        for call in calls.values { abandon(call) }
        calls = [:]
        mailboxStorage = nil
        idleCheck?.cancel()
        idleCheck = nil
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

    /// A stream that closed (before or after its handler finished): its handler stops, and what
    /// it held goes back to the connection's window (the stream has no window any more).
    private func abandon(_ call: Call) {
        call.finished = true
        call.inbound?.finish(throwing: CancellationError())
        call.task?.cancel()
        release(connectionBytes: call.unreturnedBytes)
        call.unreturnedBytes = 0
        call.queuedBytes = 0
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        reading = true
        lastFrameAt = .now()
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
            connectionUnreturnedBytes += length
            assert(connectionUnreturnedBytes <= limits.connectionBufferedBytesMax, "NIOHTTP2Handler enforces the connection's window")
            guard let call = calls[frame.streamID], case .byteBuffer(let bytes) = payload.data else {
                // A stream already gone: nothing holds these bytes.
                return release(connectionBytes: length)
            }
            call.unreturnedBytes += length
            if call.finished {
                // Answered already (a refusal): the rest of the request is read and dropped, its
                // window returned, so that the client can finish sending and read the answer.
                if payload.endStream { call.requestEnded = true }
                return settle(call, stream: frame.streamID)
            }
            received(bytes, endStream: payload.endStream, call: call, stream: frame.streamID)
            settle(call, stream: frame.streamID)
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
            let inbound = WireInbound(messages: messages, peer: peer) { bytes in
                mailbox.run { connection.value.consumed(bytes, stream: stream) }
            }
            call.task = Task {
                let failure: RPCError?
                do {
                    try await body(inbound, outbound)
                    failure = nil
                } catch {
                    failure = WireRouter.status(of: error)
                }
                mailbox.run { connection.value.finish(stream: stream, failure: failure) }
            }
        }
        if headers.endStream { endOfRequest(call, stream: stream) }
    }

    private func received(_ bytes: ByteBuffer, endStream: Bool, call: Call, stream: HTTP2StreamID) {
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
                call.queuedBytes += 5 + message.readableBytes
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

    // MARK: Flow control (the byte budget)

    /// Bytes the call holds: all it received while a unary call runs; a streaming call's
    /// queued messages and partial message; nothing once it is answered.
    private func held(_ call: Call) -> Int {
        if call.finished { return 0 }
        switch call.method {
        case .unary: return call.unreturnedBytes
        case .streaming: return call.queuedBytes + call.reader.bufferedBytes
        }
    }

    /// Returns what `call` no longer holds to the client's windows: in batches (a quarter of the
    /// window), and at once when the client may be waiting for it (half its window used, or the
    /// call answered).
    private func settle(_ call: Call, stream: HTTP2StreamID) {
        let releasable = call.unreturnedBytes - held(call)
        assert(releasable >= 0, "a call holds no more than it received")
        guard releasable > 0 else { return }
        let window = limits.streamWindowBytes
        guard call.finished || releasable >= window / 4 || call.unreturnedBytes >= window / 2 else { return }
        call.unreturnedBytes -= releasable
        if !call.requestEnded {
            write(HTTP2Frame(streamID: stream, payload: .windowUpdate(windowSizeIncrement: releasable)))
        }
        release(connectionBytes: releasable)
    }

    /// `length` received bytes are no longer held: back to the connection's window, batched as
    /// ``settle(_:stream:)`` batches a stream's.
    private func release(connectionBytes length: Int) {
        guard length > 0 else { return }
        connectionReleasedBytes += length
        let window = limits.connectionBufferedBytesMax
        guard connectionReleasedBytes >= window / 4 || connectionUnreturnedBytes >= window / 2 else { return }
        assert(connectionReleasedBytes <= connectionUnreturnedBytes)
        write(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: connectionReleasedBytes)))
        connectionUnreturnedBytes -= connectionReleasedBytes
        connectionReleasedBytes = 0
    }

    /// A streaming call's handler took a message of `bytes` (with its prefix).
    fileprivate func consumed(_ bytes: Int, stream: HTTP2StreamID) {
        guard let call = calls[stream], !call.finished else { return }
        call.queuedBytes -= bytes
        assert(call.queuedBytes >= 0)
        settle(call, stream: stream)
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
        // Counted, never refused here: watch streams have their own byte caps per watcher.
        _ = budget.take(bytes.readableBytes, force: true)
        writeData(bytes, stream: stream, promise: promise)
        return promise.futureResult
    }

    private func respond(_ call: Call, stream: HTTP2StreamID, _ message: [UInt8]) {
        guard let context else { return }
        let bytes = GRPCMessageReader.frame(message, allocator: context.channel.allocator)
        if let refusal = unreadRefusal(bytes.readableBytes) { return fail(call, stream: stream, refusal) }
        sendHeadersIfNeeded(call, stream: stream)
        writeData(bytes, stream: stream, promise: context.eventLoop.makePromise(of: Void.self))
        sendTrailers(call, stream: stream, status: nil)
    }

    /// Nil when a response of `bytes` may be written (and then the server-wide budget holds
    /// them); else why not. One response always goes out on a connection with nothing unread.
    private func unreadRefusal(_ bytes: Int) -> RPCError? {
        if unreadResponseBytes > 0 && unreadResponseBytes + bytes > limits.unreadResponseBytesMax {
            return RPCError(code: .resourceExhausted, message: "etcdserver: too many responses not read by this client (\(unreadResponseBytes) bytes wait on this connection; at most \(limits.unreadResponseBytesMax)): read them before asking for more")
        }
        if !budget.take(bytes) {
            return RPCError(code: .resourceExhausted, message: "etcdserver: too many responses not read by clients (\(budget.unreadBytes) bytes wait on this server; at most \(budget.bytesMax)): retry later")
        }
        return nil
    }

    /// Writes a response message whose bytes are in `budget` already, and counts them as unread
    /// until NIOHTTP2 passes them on (or drops them with their stream).
    private func writeData(_ bytes: ByteBuffer, stream: HTTP2StreamID, promise: EventLoopPromise<Void>) {
        guard let context else {
            budget.give(bytes.readableBytes)
            return promise.fail(CancellationError())
        }
        let length = bytes.readableBytes
        unreadResponseBytes += length
        let connection = NIOLoopBound(self, eventLoop: eventLoop)
        let budget = self.budget
        promise.futureResult.whenComplete { _ in
            connection.value.unreadResponseBytes -= length
            budget.give(length)
        }
        context.write(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: .data(.init(data: .byteBuffer(bytes))))), promise: promise)
        flushSoon()
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
        // Answered: the call holds nothing any more.
        settle(call, stream: stream)
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
