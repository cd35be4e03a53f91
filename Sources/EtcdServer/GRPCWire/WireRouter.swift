import GRPCCore
import RaftRuntime
import Store
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP2
import SwiftProtobuf

/// The methods a ``WireServer`` answers, by HTTP/2 `:path` (`/package.Service/Method`).
///
/// Unary methods may answer on the connection's event loop (`inline`), with no task and no
/// thread hop: a serializable range is a lock and an SQLite read. Everything else runs in a task
/// per call. Handlers are the services' own methods (`SimpleServiceProtocol`), so the same code
/// answers whichever transport carries the call.
struct WireRouter: Sendable {
    enum Method: Sendable {
        /// One request, one response. `answer` runs on the event loop: it answers at once, or
        /// hands back work for a task.
        case unary(@Sendable (ByteBuffer) -> WireAnswer)
        /// Client, server or bidirectional streaming: the request messages and a writer.
        case streaming(@Sendable (WireInbound, WireOutbound) async throws -> Void)
    }

    private(set) var methods: [String: Method] = [:]

    func method(path: String) -> Method? { methods[path] }

    /// A unary method answered from a task per call.
    mutating func unary<Request: Message, Response: Message>(
        _ descriptor: MethodDescriptor,
        _ body: @escaping @Sendable (Request, ServerContext) async throws -> Response
    ) {
        let context = Self.context(descriptor)
        register(descriptor, inline: nil as (@Sendable (Request) throws -> Response?)?) { request in
            .later { try await body(request, context).serializedBytes() }
        }
    }

    /// A unary method answered without a task: `start` begins the work and calls its `done`
    /// (from any thread) with a closure that makes the response, which the connection runs on
    /// its event loop. `inline` (on the event loop) answers when it can and returns nil to leave
    /// the call to `start`.
    mutating func unary<Request: Message, Response: Message>(
        _ descriptor: MethodDescriptor,
        inline: (@Sendable (Request) throws -> Response?)? = nil,
        start: @escaping @Sendable (Request, @escaping @Sendable (@escaping @Sendable () throws -> Response) -> Void) -> Void
    ) {
        register(descriptor, inline: inline) { request in
            .started { done in
                start(request) { respond in done { try respond().serializedBytes() } }
            }
        }
    }

    /// Decodes the request, tries `inline`, and otherwise answers as `otherwise` says.
    private mutating func register<Request: Message, Response: Message>(
        _ descriptor: MethodDescriptor,
        inline: (@Sendable (Request) throws -> Response?)?,
        otherwise: @escaping @Sendable (Request) -> WireAnswer
    ) {
        methods["/" + descriptor.fullyQualifiedMethod] = .unary { bytes in
            let request: Request
            do {
                request = try Self.decode(bytes)
                if let inline, let response = try inline(request) { return .now(.success(try response.serializedBytes())) }
            } catch {
                return .now(.failure(Self.status(of: error)))
            }
            return otherwise(request)
        }
    }

    /// A bidirectional (or client) streaming method.
    mutating func bidirectional<Request: Message, Response: Message>(
        _ descriptor: MethodDescriptor,
        _ body: @escaping @Sendable (RPCAsyncSequence<Request, any Error>, RPCWriter<Response>, ServerContext) async throws -> Void
    ) {
        methods["/" + descriptor.fullyQualifiedMethod] = .streaming { inbound, outbound in
            let requests = inbound.messages.map { bytes throws -> Request in try Self.decode(bytes) }
            try await body(RPCAsyncSequence(wrapping: requests), RPCWriter(wrapping: MessageWriter<Response>(outbound: outbound)),
                           Self.context(descriptor, peer: inbound.peer))
        }
    }

    /// A server streaming method: one request, any number of responses.
    mutating func serverStreaming<Request: Message, Response: Message>(
        _ descriptor: MethodDescriptor,
        _ body: @escaping @Sendable (Request, RPCWriter<Response>, ServerContext) async throws -> Void
    ) {
        methods["/" + descriptor.fullyQualifiedMethod] = .streaming { inbound, outbound in
            var requests = inbound.messages.makeAsyncIterator()
            guard let first = try await requests.next() else {
                throw RPCError(code: .internalError, message: "grpc: no request message for a server streaming RPC")
            }
            try await body(try Self.decode(first), RPCWriter(wrapping: MessageWriter<Response>(outbound: outbound)),
                           Self.context(descriptor, peer: inbound.peer))
        }
    }

    private static func context(_ descriptor: MethodDescriptor, peer: String = "") -> ServerContext {
        ServerContext(descriptor: descriptor, remotePeer: peer, localPeer: "", cancellation: .init())
    }

    /// A request message from its bytes, or gRPC's INTERNAL as grpc-go words it.
    static func decode<Request: Message>(_ bytes: ByteBuffer) throws(RPCError) -> Request {
        do {
            return try Request(serializedBytes: Array(bytes.readableBytesView))
        } catch {
            throw RPCError(code: .internalError, message: "grpc: error unmarshalling request: \(error)")
        }
    }

    /// The gRPC status a handler's error answers with.
    static func status(of error: any Error) -> RPCError {
        switch error {
        case let error as RPCError: RPCError(code: error.code, message: error.message)
        case let error as StoreError: error.status
        case let error as RaftRuntimeError: StoreError(error).status
        case is CancellationError: RPCError(code: .cancelled, message: "context canceled")
        default: RPCError(code: .unknown, message: "\(error)")
        }
    }
}

/// What a unary handler answers: now, on the event loop; later from a task; or when work it
/// started calls back (`done`, from any thread) with a closure making the response bytes, which
/// the connection runs on its event loop.
enum WireAnswer: Sendable {
    typealias Respond = @Sendable () throws -> [UInt8]
    case now(Result<[UInt8], RPCError>)
    case later(@Sendable () async throws -> [UInt8])
    case started(@Sendable (_ done: @escaping @Sendable (@escaping Respond) -> Void) -> Void)
}

/// The request messages of one streaming call, as the connection receives them. Bounded: the
/// connection returns a message's bytes to the client's window only once the handler took it
/// here, and a client that sends more messages than may wait fails its call (RESOURCE_EXHAUSTED).
struct WireInbound: Sendable {
    let messages: Messages
    /// The client's address as gRPC names it (`ipv4:127.0.0.1:5555`), unique among open
    /// connections: what per-connection limits (watchers) count by.
    let peer: String

    /// `taken` runs (on the handler's task) with the size of each message, prefix included, as
    /// the handler takes it.
    init(messages: AsyncThrowingStream<ByteBuffer, any Error>, peer: String, taken: @escaping @Sendable (Int) -> Void) {
        self.messages = Messages(stream: messages, taken: taken)
        self.peer = peer
    }

    struct Messages: AsyncSequence, Sendable {
        typealias Element = ByteBuffer
        let stream: AsyncThrowingStream<ByteBuffer, any Error>
        let taken: @Sendable (Int) -> Void

        struct AsyncIterator: AsyncIteratorProtocol {
            var base: AsyncThrowingStream<ByteBuffer, any Error>.AsyncIterator
            let taken: @Sendable (Int) -> Void

            mutating func next() async throws -> ByteBuffer? {
                guard let message = try await base.next() else { return nil }
                taken(5 + message.readableBytes)
                return message
            }
        }

        func makeAsyncIterator() -> AsyncIterator {
            AsyncIterator(base: stream.makeAsyncIterator(), taken: taken)
        }
    }
}

/// Writes the response messages of one streaming call, in order. A write posts the message to
/// its connection's ``WireMailbox`` and returns at once while the call has less than
/// `pendingBytesMax` posted and not yet written to the socket; past that it waits for its own
/// message to be written. So a client that does not read (its HTTP/2 window closed) holds up its
/// own writer, with bounded memory, and nothing else.
struct WireOutbound: Sendable {
    let mailbox: WireMailbox
    let stream: HTTP2StreamID
    /// Bytes posted and not yet written; whether a write failed (the stream is gone, so every
    /// later write fails too).
    private let state = NIOLockedValueBox((pendingBytes: 0, failed: false))
    static let pendingBytesMax = 256 * 1024

    init(mailbox: WireMailbox, stream: HTTP2StreamID) {
        self.mailbox = mailbox
        self.stream = stream
    }

    func write(_ message: [UInt8]) async throws {
        let size = message.count + 5
        let (pendingBefore, failed) = state.withLockedValue { state in
            defer { state.pendingBytes += size }
            return (state.pendingBytes, state.failed)
        }
        if failed { throw CancellationError() }
        let state = self.state
        let written = { @Sendable (result: Result<Void, any Error>) in
            state.withLockedValue { state in
                state.pendingBytes -= size
                if case .failure = result { state.failed = true }
            }
        }
        if pendingBefore + size <= Self.pendingBytesMax {
            mailbox.post(message, on: stream, written: written)
        } else {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                mailbox.post(message, on: stream) { result in
                    written(result)
                    continuation.resume(with: result)
                }
            }
        }
    }
}

/// Work for one connection's event loop, posted from any thread and handed over in batches: one
/// hop for all that was posted meanwhile (a put seen by a thousand watch streams is a thousand
/// messages, not a thousand hops; so are the answers of a batch of writes), run in the order
/// posted.
final class WireMailbox: Sendable {
    typealias Written = @Sendable (Result<Void, any Error>) -> Void
    private enum Item {
        case message(stream: HTTP2StreamID, message: [UInt8], written: Written)
        case run(@Sendable () -> Void)
    }
    private let connection: NIOLoopBound<WireConnection>
    private let posted = NIOLockedValueBox((items: [Item](), scheduled: false))

    init(connection: NIOLoopBound<WireConnection>) {
        self.connection = connection
    }

    /// A response message of a streaming call.
    func post(_ message: [UInt8], on stream: HTTP2StreamID, written: @escaping Written) {
        post(.message(stream: stream, message: message, written: written))
    }

    /// Runs `body` on the event loop after everything posted before it.
    func run(_ body: @escaping @Sendable () -> Void) {
        post(.run(body))
    }

    private func post(_ item: Item) {
        let schedule = posted.withLockedValue { posted in
            posted.items.append(item)
            defer { posted.scheduled = true }
            return !posted.scheduled
        }
        if schedule {
            connection.eventLoop.execute { self.deliver() }
        }
    }

    private func deliver() {
        let items = posted.withLockedValue { posted in
            defer {
                posted.items = []
                posted.scheduled = false
            }
            return posted.items
        }
        let connection = self.connection.value
        for item in items {
            switch item {
            case .message(let stream, let message, let written): connection.send(message, on: stream).whenComplete(written)
            case .run(let body): body()
            }
        }
    }
}

/// Protobuf messages into a ``WireOutbound``.
struct MessageWriter<Message: SwiftProtobuf.Message>: RPCWriterProtocol {
    let outbound: WireOutbound

    func write(_ element: Message) async throws {
        try await outbound.write(try element.serializedBytes())
    }

    func write(contentsOf elements: some Sequence<Message>) async throws {
        for element in elements { try await write(element) }
    }
}
