import EtcdAPI
import GRPCCore
import GRPCNIOTransportHTTP2
import NIOConcurrencyHelpers
import Raft
import RaftRuntime

/// A follower's one connection to the leader's client port, for what must run on the leader
/// (membership changes, leader moves, lease keep-alives): kept while the leader stays the same
/// and replaced when another member leads, instead of a connection per forwarded request.
///
/// Keep-alives of every client of this member share one keep-alive stream to the leader: the
/// leader answers a stream's requests in order, so answers are matched to waiters first in, first
/// out. When the stream ends or the leader changes, every waiter fails with UNAVAILABLE and the
/// next keep-alive opens a new stream (etcd's clients retry).
final class LeaderLink: @unchecked Sendable {
    typealias Client = GRPCClient<HTTP2ClientTransport.Posix>

    private struct Connection {
        let leader: NodeID
        /// The generation of the identity it presents (``APISecurity/generation``).
        let generation: Int
        let client: Client
    }

    private struct KeepAliveStream {
        let generation: Int
        /// The connection it runs on (a new leader's connection gets a new stream).
        let client: ObjectIdentifier
        let requests: AsyncStream<Etcdserverpb_LeaseKeepAliveRequest>.Continuation
        var waiters: [CheckedContinuation<Etcdserverpb_LeaseKeepAliveResponse, any Error>] = []
        var task: Task<Void, Never>?
    }

    // Guarded by `lock`.
    private let lock = NIOLock()
    private var connection: Connection?
    private var keepAlives: KeepAliveStream?
    private var generation = 0

    /// The client connected to `leader` at `address`, made (and its old one closed) when the
    /// leader changed or this member's certificate was renewed (`generation`).
    func client(leader: NodeID, address: PeerAddress, generation: Int = 0, security: @autoclosure () throws -> HTTP2ClientTransport.Posix.TransportSecurity) throws -> Client {
        try lock.withLock {
            if let connection, connection.leader == leader, connection.generation == generation { return connection.client }
            connection?.client.beginGracefulShutdown()
            let client = Client(transport: try .http2NIOPosix(target: StoreMember.target(address), transportSecurity: security()))
            Task { try? await client.runConnections() }
            connection = Connection(leader: leader, generation: generation, client: client)
            return client
        }
    }

    /// Sends one keep-alive over the shared stream on `client` (from ``client(leader:address:security:)``)
    /// and waits for its answer.
    func keepAlive(_ request: Etcdserverpb_LeaseKeepAliveRequest, client: Client) async throws -> Etcdserverpb_LeaseKeepAliveResponse {
        try await withCheckedThrowingContinuation { waiter in
            let failed: [CheckedContinuation<Etcdserverpb_LeaseKeepAliveResponse, any Error>] = lock.withLock {
                var dropped: [CheckedContinuation<Etcdserverpb_LeaseKeepAliveResponse, any Error>] = []
                if let stream = keepAlives, stream.client != ObjectIdentifier(client) {
                    dropped = closeKeepAlives()
                }
                if keepAlives == nil { openKeepAlives(client: client) }
                keepAlives!.waiters.append(waiter)
                keepAlives!.requests.yield(request)
                return dropped
            }
            for waiter in failed { waiter.resume(throwing: Self.streamEnded) }
        }
    }

    static let streamEnded = RPCError(code: .unavailable, message: "etcdserver: the keep-alive stream to the leader ended")

    /// Under `lock`.
    private func openKeepAlives(client: Client) {
        generation += 1
        let generation = self.generation
        let (requests, continuation) = AsyncStream<Etcdserverpb_LeaseKeepAliveRequest>.makeStream()
        keepAlives = KeepAliveStream(generation: generation, client: ObjectIdentifier(client), requests: continuation)
        keepAlives!.task = Task {
            do {
                try await Etcdserverpb_Lease.Client(wrapping: client).leaseKeepAlive { writer in
                    for await request in requests { try await writer.write(request) }
                } onResponse: { answers in
                    for try await answer in answers.messages { self.answered(answer, generation: generation) }
                }
            } catch {
            }
            self.ended(generation: generation)
        }
    }

    /// Under `lock`: ends the stream and hands back its waiters to fail.
    private func closeKeepAlives() -> [CheckedContinuation<Etcdserverpb_LeaseKeepAliveResponse, any Error>] {
        guard let stream = keepAlives else { return [] }
        keepAlives = nil
        stream.requests.finish()
        stream.task?.cancel()
        return stream.waiters
    }

    private func answered(_ answer: Etcdserverpb_LeaseKeepAliveResponse, generation: Int) {
        let waiter = lock.withLock { () -> CheckedContinuation<Etcdserverpb_LeaseKeepAliveResponse, any Error>? in
            guard keepAlives?.generation == generation, keepAlives?.waiters.isEmpty == false else { return nil }
            return keepAlives!.waiters.removeFirst()
        }
        waiter?.resume(returning: answer)
    }

    private func ended(generation: Int) {
        let waiters = lock.withLock { keepAlives?.generation == generation ? closeKeepAlives() : [] }
        for waiter in waiters { waiter.resume(throwing: Self.streamEnded) }
    }
}
