import ArgumentParser
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Raft
import RaftRuntime
import ServiceLifecycle

/// A Raft member with a trivial state machine (an append-only list of values), for testing the
/// runtime with real processes: `raftkube-testkit raft-node ...` (a test fixture, kept out of
/// the product binary). A line-based client port takes `PUT v`, `GET` (linearizable), `DUMP` (local),
/// `STATUS`, `ADD-LEARNER id host:port`, `PROMOTE id`, `REMOVE id`, `TRANSFER id`.
struct RaftNodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "raft-node",
        abstract: "Run a Raft member with an append-only list state machine (for tests).")

    @Option(help: "This member's id (a positive integer).")
    var id: UInt64

    @Option(help: "Data directory for the WAL and snapshots.")
    var dataDir: String

    @Option(help: "host:port for peer traffic.")
    var listen: String

    @Option(help: "Comma-separated id=host:port of the members known at start (this one included).")
    var peers: String

    @Flag(help: "Start a new cluster whose voters are --peers (ignored when the data directory holds a log).")
    var bootstrap = false

    @Option(help: "Port for the line-based client protocol on 127.0.0.1.")
    var clientPort: Int

    @Option(help: "Milliseconds per tick.")
    var heartbeatMs: Int = 100

    @Option(help: "Snapshot every this many applied entries.")
    var snapshotInterval: UInt64 = 10_000

    @Option(help: "Entries kept below a snapshot.")
    var compactionMargin: UInt64 = 1_000

    func run() async throws {
        guard id > 0 else { throw ValidationError("--id must be positive") }
        guard let listenAddress = PeerAddress(listen) else { throw ValidationError("--listen must be host:port") }
        var peerAddresses: [NodeID: PeerAddress] = [:]
        for item in peers.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let node = UInt64(parts[0]), node > 0, let address = PeerAddress(String(parts[1])) else {
                throw ValidationError("--peers: '\(item)' is not id=host:port")
            }
            peerAddresses[node] = address
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .info
            return handler
        }
        var logger = Logger(label: "raftkube.raft-node")
        logger[metadataKey: "node"] = "\(id)"
        var configuration = RuntimeConfiguration(id: id, dataDirectory: dataDir, listen: listenAddress, peers: peerAddresses, bootstrap: bootstrap)
        configuration.heartbeatIntervalMs = heartbeatMs
        configuration.snapshotIntervalEntries = snapshotInterval
        configuration.compactionMarginEntries = compactionMargin
        let list = AppendOnlyList()
        let runtime = RaftRuntime(configuration: configuration, stateMachine: list, logger: logger)
        let clients = LineClientServer(port: clientPort, runtime: runtime, list: list, logger: logger)
        let group = ServiceGroup(services: [runtime, clients], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
    }
}

/// The test state machine: every applied command's bytes appended to a list.
final class AppendOnlyList: StateMachine, @unchecked Sendable {
    // Mutated by the runtime's actor (apply/restore) and read by client handlers through
    // `values`; the lock makes those reads safe.
    private let lock = NIOLock()
    private var items: [[UInt8]] = []
    private var lastIndex: UInt64 = 0

    var values: [[UInt8]] { lock.withLock { items } }

    func apply(_ commands: [AppliedCommand]) throws -> [[UInt8]] {
        lock.withLock {
            commands.map { command in
                items.append(command.data)
                lastIndex = command.index
                return Array("\(items.count)".utf8)
            }
        }
    }

    func snapshot() throws -> [UInt8] {
        lock.withLock {
            var buffer = ByteBuffer()
            buffer.writeInteger(UInt32(items.count), endianness: .little)
            for item in items {
                buffer.writeInteger(UInt32(item.count), endianness: .little)
                buffer.writeBytes(item)
            }
            return Array(buffer.readableBytesView)
        }
    }

    func restore(_ data: [UInt8], index: UInt64) throws {
        let restored = try Self.decode(data)
        lock.withLock {
            items = restored
            lastIndex = index
        }
    }

    func validateSnapshot(_ data: [UInt8], index: UInt64) throws {
        _ = try Self.decode(data)
    }

    /// The items of a snapshot from ``snapshot()``; throws for bytes that are not one (a count
    /// beyond the bytes present, trailing bytes).
    static func decode(_ data: [UInt8]) throws -> [[UInt8]] {
        var buffer = ByteBuffer(bytes: data)
        guard let count = buffer.readInteger(endianness: .little, as: UInt32.self) else { throw RuntimeError.rejected("bad list snapshot") }
        var restored: [[UInt8]] = []
        for _ in 0..<count {
            guard let length = buffer.readInteger(endianness: .little, as: UInt32.self), let bytes = buffer.readBytes(length: Int(length)) else {
                throw RuntimeError.rejected("bad list snapshot")
            }
            restored.append(bytes)
        }
        guard buffer.readableBytes == 0 else { throw RuntimeError.rejected("bad list snapshot: trailing bytes") }
        return restored
    }

    var durableAppliedIndex: UInt64 { 0 }
}

/// Serves the line protocol of `raft-node` on 127.0.0.1.
struct LineClientServer: Service {
    let port: Int
    let runtime: RaftRuntime
    let list: AppendOnlyList
    let logger: Logger

    func run() async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        do {
            try await cancelWhenGracefulShutdown {
                try await withThrowingDiscardingTaskGroup { group in
                    try await server.executeThenClose { connections in
                        for try await connection in connections {
                            group.addTask { await self.serve(connection) }
                        }
                    }
                }
            }
        } catch is CancellationError {
            // Graceful shutdown: stop accepting clients.
        }
    }

    private func serve(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var pending = ByteBuffer()
                for try await var chunk in inbound {
                    pending.writeBuffer(&chunk)
                    while let newline = pending.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
                        let length = newline - pending.readerIndex
                        let line = pending.readString(length: length) ?? ""
                        pending.moveReaderIndex(forwardBy: 1)
                        let reply = await answer(line)
                        try await outbound.write(ByteBuffer(string: reply + "\n"))
                    }
                    if pending.readableBytes > 1 << 20 { return }
                }
            }
        } catch {
            logger.debug("client connection ended: \(error)")
        }
    }

    private func answer(_ line: String) async -> String {
        let words = line.split(separator: " ", maxSplits: 2).map(String.init)
        do {
            switch words.first {
            case "PUT" where words.count >= 2:
                let result = try await runtime.propose(Array(words[1...].joined(separator: " ").utf8))
                return "OK \(result.index)"
            case "GET":
                try await runtime.readBarrier()
                return "LIST " + list.values.map { String(decoding: $0, as: UTF8.self) }.joined(separator: ",")
            case "PING":
                return "PONG"
            case "DUMP":
                return "LIST " + list.values.map { String(decoding: $0, as: UTF8.self) }.joined(separator: ",")
            case "STATUS":
                let status = try await runtime.status()
                let replication = status.replication.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value.match)" }.joined(separator: ",")
                return "STATUS id=\(status.id) role=\(status.role.rawValue) term=\(status.term) leader=\(status.leader) commit=\(status.commitIndex) applied=\(status.appliedIndex) first=\(status.firstIndex) voters=\(status.membership.voters.map(String.init).joined(separator: ",")) learners=\(status.membership.learners.map(String.init).joined(separator: ",")) match=\(replication)"
            case "ADD-LEARNER" where words.count == 3:
                guard let node = UInt64(words[1]), let address = PeerAddress(words[2]) else { return "ERR usage: ADD-LEARNER id host:port" }
                try await runtime.addLearner(node, address: address)
                return "OK"
            case "PROMOTE" where words.count == 2:
                guard let node = UInt64(words[1]) else { return "ERR usage: PROMOTE id" }
                try await runtime.promote(node)
                return "OK"
            case "REMOVE" where words.count == 2:
                guard let node = UInt64(words[1]) else { return "ERR usage: REMOVE id" }
                try await runtime.remove(node)
                return "OK"
            case "TRANSFER" where words.count == 2:
                guard let node = UInt64(words[1]) else { return "ERR usage: TRANSFER id" }
                try await runtime.transferLeadership(to: node)
                return "OK"
            default:
                return "ERR unknown command"
            }
        } catch {
            return "ERR \(error)"
        }
    }
}
