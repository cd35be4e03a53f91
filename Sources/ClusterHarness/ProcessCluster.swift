import Foundation
import NIOCore
import NIOPosix

/// Real `raftkube-testkit raft-node` processes on 127.0.0.1, each with its own data directory, that a
/// test or a benchmark can kill with SIGKILL and restart.
public final class ProcessCluster: @unchecked Sendable {
    // Mutated only from the test's own task (start/kill/restart are called sequentially).
    public struct Member {
        var id: UInt64
        var peerPort: Int
        var clientPort: Int
        var dataDirectory: String
        var process: Process?
        var bootstrap: Bool
    }

    public let root: String
    let basePort: Int
    let heartbeatMs: Int
    let snapshotInterval: UInt64
    let compactionMargin: UInt64
    public private(set) var members: [UInt64: Member] = [:]
    private let lock = NSLock()

    /// The `raftkube` binary beside the running executable (a test bundle).
    public static var siblingBinary: String { sibling("raftkube") }

    /// The `raftkube-testkit` binary (which has `raft-node`) beside the running executable.
    public static var testkitBinary: String { sibling("raftkube-testkit") }

    /// The executable `name` beside the running one.
    public static func sibling(_ name: String) -> String {
        let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        var candidate = directory.appendingPathComponent(name).path
        if !FileManager.default.fileExists(atPath: candidate) {
            // `swift test` may run the bundle from inside the .xctest directory.
            candidate = directory.deletingLastPathComponent().appendingPathComponent(name).path
        }
        return candidate
    }

    let binary: String

    public init(name: String, binary: String = ProcessCluster.testkitBinary, heartbeatMs: Int = 50, snapshotInterval: UInt64 = 10_000, compactionMargin: UInt64 = 1_000) throws {
        self.binary = binary
        root = NSTemporaryDirectory() + "raftkube-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        // Ports from a range derived from the pid and a random offset, to keep parallel runs apart.
        basePort = 20_000 + Int(getpid() % 50) * 200 + PortBlocks.next() * 20
        self.heartbeatMs = heartbeatMs
        self.snapshotInterval = snapshotInterval
        self.compactionMargin = compactionMargin
    }

    public func peerPort(_ id: UInt64) -> Int { basePort + Int(id) * 2 }
    public func clientPort(_ id: UInt64) -> Int { basePort + Int(id) * 2 + 1 }

    /// Starts `ids` as a new cluster whose voters are exactly those ids.
    public func bootstrap(_ ids: [UInt64]) throws {
        for id in ids {
            members[id] = Member(id: id, peerPort: peerPort(id), clientPort: clientPort(id), dataDirectory: "\(root)/n\(id)", bootstrap: true)
        }
        for id in ids { try start(id, peers: ids) }
    }

    /// Starts a node that will join (empty membership), knowing the addresses of `peers`.
    public func startJoining(_ id: UInt64, peers: [UInt64]) throws {
        members[id] = Member(id: id, peerPort: peerPort(id), clientPort: clientPort(id), dataDirectory: "\(root)/n\(id)", bootstrap: false)
        try start(id, peers: peers + [id])
    }

    private var startPeers: [UInt64: [UInt64]] = [:]

    public func start(_ id: UInt64, peers: [UInt64]? = nil) throws {
        guard var member = members[id] else { return }
        let peerList = peers ?? startPeers[id] ?? []
        startPeers[id] = peerList
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        var arguments = [
            "raft-node", "--id", "\(id)", "--data-dir", member.dataDirectory,
            "--listen", "127.0.0.1:\(member.peerPort)", "--client-port", "\(member.clientPort)",
            "--peers", peerList.map { "\($0)=127.0.0.1:\(peerPort($0))" }.joined(separator: ","),
            "--heartbeat-ms", "\(heartbeatMs)", "--snapshot-interval", "\(snapshotInterval)",
            "--compaction-margin", "\(compactionMargin)",
        ]
        if member.bootstrap { arguments.append("--bootstrap") }
        process.arguments = arguments
        let log = FileHandle(forWritingAtPath: "\(root)/n\(id).log") ?? {
            _ = FileManager.default.createFile(atPath: "\(root)/n\(id).log", contents: nil)
            return FileHandle(forWritingAtPath: "\(root)/n\(id).log")!
        }()
        log.seekToEndOfFile()
        process.standardError = log
        process.standardOutput = log
        try process.run()
        member.process = process
        members[id] = member
    }

    public func kill(_ id: UInt64) {
        guard var member = members[id], let process = member.process else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        member.process = nil
        members[id] = member
    }

    /// Freezes a member (SIGSTOP): it stops reading its sockets, like a very slow peer.
    public func pause(_ id: UInt64) {
        if let process = members[id]?.process { Foundation.kill(process.processIdentifier, SIGSTOP) }
    }

    public func resume(_ id: UInt64) {
        if let process = members[id]?.process { Foundation.kill(process.processIdentifier, SIGCONT) }
    }

    /// Asks a member to shut down gracefully (SIGTERM) and returns its exit status, or nil if it
    /// did not exit within `timeoutMs` (it is then killed).
    public func terminate(_ id: UInt64, timeoutMs: Int = 10_000) async -> Int32? {
        guard var member = members[id], let process = member.process else { return nil }
        Foundation.kill(process.processIdentifier, SIGTERM)
        let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
        while process.isRunning && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        let status: Int32? = process.isRunning ? nil : process.terminationStatus
        if process.isRunning {
            Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        member.process = nil
        members[id] = member
        return status
    }

    public func isRunning(_ id: UInt64) -> Bool { members[id]?.process?.isRunning ?? false }

    public func stopAll() {
        for id in members.keys { kill(id) }
    }

    public func tearDown() {
        stopAll()
        try? FileManager.default.removeItem(atPath: root)
    }

    public func logTail(_ id: UInt64) -> String {
        let text = (try? String(contentsOfFile: "\(root)/n\(id).log", encoding: .utf8)) ?? ""
        return String(text.suffix(3_000))
    }

    // MARK: Client

    /// Sends one line to a node's client port and returns the reply line (nil on connection failure or timeout).
    public func request(_ id: UInt64, _ line: String, timeoutMs: Int64 = 8_000) async -> String? {
        await LineClient.request(port: clientPort(id), line: line, timeoutMs: timeoutMs)
    }

    public func status(_ id: UInt64) async -> [String: String]? {
        guard let reply = await request(id, "STATUS", timeoutMs: 2_000), reply.hasPrefix("STATUS ") else { return nil }
        var fields: [String: String] = [:]
        for pair in reply.dropFirst(7).split(separator: " ") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            fields[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        return fields
    }

    /// The node that a majority of running nodes reports as leader, and that says it leads.
    public func leader() async -> UInt64? {
        for id in members.keys.sorted() where isRunning(id) {
            if let status = await status(id), status["role"] == "leader" { return id }
        }
        return nil
    }

    public func waitForLeader(timeoutMs: Int = 15_000) async -> UInt64? {
        let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
        while ContinuousClock.now < deadline {
            if let leader = await leader() { return leader }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return nil
    }

    public func dump(_ id: UInt64) async -> [String]? {
        guard let reply = await request(id, "DUMP", timeoutMs: 5_000), reply.hasPrefix("LIST") else { return nil }
        let body = reply.dropFirst(4).trimmingCharacters(in: .whitespaces)
        return body.isEmpty ? [] : body.split(separator: ",").map(String.init)
    }
}

/// One request, one reply line, over a fresh TCP connection.
public enum LineClient {
    public static func request(port: Int, line: String, timeoutMs: Int64) async -> String? {
        do {
            return try await withThrowingTaskGroup(of: String?.self) { group in
                group.addTask {
                    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                        .connectTimeout(.milliseconds(1_000))
                        .connect(host: "127.0.0.1", port: port) { channel in
                            channel.eventLoop.makeCompletedFuture {
                                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                            }
                        }
                    return try await channel.executeThenClose { inbound, outbound in
                        try await outbound.write(ByteBuffer(string: line + "\n"))
                        var received = ByteBuffer()
                        for try await var chunk in inbound {
                            received.writeBuffer(&chunk)
                            if let newline = received.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
                                return received.getString(at: received.readerIndex, length: newline - received.readerIndex)
                            }
                        }
                        return nil
                    }
                }
                group.addTask {
                    try await Task.sleep(for: .milliseconds(timeoutMs))
                    return nil
                }
                let first = try await group.next() ?? nil
                group.cancelAll()
                return first
            }
        } catch {
            return nil
        }
    }
}

/// A request/reply conversation over one kept-open connection (for benchmarks, where opening a
/// connection per request would measure TCP set-up instead of the server).
public final class LineSession {
    private var iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private var received = ByteBuffer()

    init(inbound: NIOAsyncChannelInboundStream<ByteBuffer>, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) {
        iterator = inbound.makeAsyncIterator()
        self.outbound = outbound
    }

    /// Sends one line and returns the reply line.
    public func send(_ line: String) async throws -> String {
        try await outbound.write(ByteBuffer(string: line + "\n"))
        while true {
            if let newline = received.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
                let reply = received.readString(length: newline - received.readerIndex) ?? ""
                received.moveReaderIndex(forwardBy: 1)
                return reply
            }
            guard var chunk = try await iterator.next() else { throw LineSessionClosed() }
            received.writeBuffer(&chunk)
        }
    }

    /// Connects to `port` on 127.0.0.1 and runs `body` with the session.
    public static func with<Result: Sendable>(port: Int, _ body: (LineSession) async throws -> Result) async throws -> Result {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            try await body(LineSession(inbound: inbound, outbound: outbound))
        }
    }
}

public struct LineSessionClosed: Error {}
