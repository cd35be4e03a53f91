import Foundation

/// Real `raftkube store` members on 127.0.0.1 (the etcd-compatible store), for end-to-end tests
/// with etcd's own clients.
public final class StoreCluster: @unchecked Sendable {
    // Mutated only by the test's own task.
    public let root: String
    let binary: String
    let basePort: Int
    public let count: Int
    private var processes: [Int: Process] = [:]
    /// Arguments added to every member's command line.
    public var extraArguments: [String] = []
    /// Peer ports moved by `member update`, by member.
    public var movedPeerPorts: [Int: Int] = [:]
    /// "https" for a cluster serving TLS (members then need certificate options).
    public var scheme = "http"
    /// Arguments added to every etcdctl call (TLS files).
    public var etcdctlArguments: [String] = []
    /// Arguments for one member only (its certificate files), added when it starts.
    public var memberArguments: [Int: [String]] = [:]

    public init(name: String, count: Int = 3, binary: String = ProcessCluster.siblingBinary) throws {
        root = NSTemporaryDirectory() + "raftkube-store-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        // Below Linux's ephemeral range (32768-60999), so that no outgoing connection holds one of them.
        basePort = 10_000 + Int(getpid() % 50) * 200 + PortBlocks.next() * 20
        self.count = count
        self.binary = binary
    }

    public func clientPort(_ member: Int) -> Int { basePort + member * 2 }
    public func peerPort(_ member: Int) -> Int { movedPeerPorts[member] ?? basePort + member * 2 + 1 }
    public var endpoints: String { (1...count).map { endpoint($0) }.joined(separator: ",") }
    /// Member `member`'s client endpoint for etcdctl (with the scheme when TLS).
    public func endpoint(_ member: Int) -> String { scheme == "http" ? "127.0.0.1:\(clientPort(member))" : "\(scheme)://127.0.0.1:\(clientPort(member))" }

    public func start() throws {
        for member in 1...count { try start(member) }
    }

    /// Starts member `member` (1-based). By default it is one of the `count` bootstrap members; a
    /// member added with `etcdctl member add` starts with `members` (every member it should know,
    /// itself included) and `existing: true`.
    public func start(_ member: Int, members: [Int]? = nil, existing: Bool = false, extraArguments: [String] = []) throws {
        let initialCluster = (members ?? Array(1...count)).map { "m\($0)=\(scheme)://127.0.0.1:\(peerPort($0))" }.joined(separator: ",")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = [
            "store", "--name", "m\(member)", "--data-dir", "\(root)/m\(member)",
            "--listen-client-urls", "\(scheme)://127.0.0.1:\(clientPort(member))",
            "--listen-peer-urls", "\(scheme)://127.0.0.1:\(peerPort(member))",
            "--initial-cluster", initialCluster, "--heartbeat-interval", "50",
            "--initial-cluster-state", existing ? "existing" : "new",
        ] + self.extraArguments + (memberArguments[member] ?? []) + extraArguments
        let logPath = "\(root)/m\(member).log"
        if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
        let log = FileHandle(forWritingAtPath: logPath)!
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        processes[member] = process
    }

    /// Waits, at most `seconds` of wall time, until a write through any member succeeds. On
    /// failure it throws with each member's exit status and the end of its log, so that a CI
    /// run shows why the store did not come up.
    public func waitUntilServing(seconds: Double = 60) throws {
        let deadline = Date().addingTimeInterval(seconds)
        var last = ""
        while Date() < deadline {
            if let result = try? etcdctl(["put", "ready", "yes"], commandTimeout: 3) {
                if result.status == 0 { return }
                last = result.output
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
        throw NotServing(description: "the store did not accept a write in \(Int(seconds)) s; last etcdctl: \(last.suffix(400))\n" + diagnostics())
    }

    /// Each member's process state and the last lines of its log.
    public func diagnostics(lines: Int = 15) -> String {
        Array(Set(processes.keys).union(1...count)).sorted().map { member in
            let state = processes[member].map { $0.isRunning ? "running (pid \($0.processIdentifier))" : "exited with \($0.terminationStatus)" } ?? "not started"
            let log = (try? String(contentsOfFile: "\(root)/m\(member).log", encoding: .utf8)) ?? ""
            return "m\(member): \(state)\n" + log.split(separator: "\n").suffix(lines).joined(separator: "\n")
        }.joined(separator: "\n")
    }

    public struct NotServing: Error, CustomStringConvertible {
        public let description: String
    }

    /// The process id of a running member (to read its memory from /proc).
    public func processIdentifier(_ member: Int) -> Int32? {
        processes[member].flatMap { $0.isRunning ? $0.processIdentifier : nil }
    }

    /// Whether member `member`'s process is running.
    public func isRunning(_ member: Int) -> Bool { processes[member]?.isRunning ?? false }

    public func kill(_ member: Int) {
        guard let process = processes.removeValue(forKey: member) else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    public func tearDown() {
        for member in Array(processes.keys) { kill(member) }
        try? FileManager.default.removeItem(atPath: root)
    }

    /// Starts `etcdctl` in the background for `seconds` (for `watch`); `finish` waits for it to end
    /// and returns its output.
    public func etcdctlInBackground(_ arguments: [String], seconds: Int, endpoints: String? = nil) throws -> () -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        process.arguments = ["\(seconds)", "/usr/bin/etcdctl", "--endpoints=\(endpoints ?? self.endpoints)"] + etcdctlArguments + arguments
        process.environment = ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"]
        let output = try OutputFiles(root: root)
        process.standardOutput = output.stdout
        process.standardError = output.stderr
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return {
            process.waitUntilExit()
            let (stdout, stderr) = output.read()
            return stdout + stderr
        }
    }

    /// Runs `etcdctl` (v3 API) with `arguments` against `endpoints` (all members by default).
    /// `output` is standard output followed by standard error; `stdout` alone is what to parse
    /// (etcdctl logs retries on standard error). Output goes to files, not pipes: a member process
    /// started meanwhile by another thread would inherit a pipe's write end and the read would
    /// never see its end.
    public func etcdctl(_ arguments: [String], endpoints: String? = nil, input: String? = nil, commandTimeout: Int = 10) throws -> (status: Int32, output: String, stdout: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/etcdctl")
        process.arguments = ["--endpoints=\(endpoints ?? self.endpoints)", "--dial-timeout=3s", "--command-timeout=\(commandTimeout)s"] + etcdctlArguments + arguments
        process.environment = ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"]
        let output = try OutputFiles(root: root)
        process.standardOutput = output.stdout
        process.standardError = output.stderr
        if let input {
            let inputFile = "\(output.base).in"
            try input.write(toFile: inputFile, atomically: false, encoding: .utf8)
            process.standardInput = FileHandle(forReadingAtPath: inputFile)
        } else {
            process.standardInput = FileHandle.nullDevice
        }
        try process.run()
        process.waitUntilExit()
        let (stdout, stderr) = output.read()
        return (process.terminationStatus, stdout + stderr, stdout)
    }
}

/// Two temporary files that take a child's standard output and error.
struct OutputFiles {
    let base: String
    let stdout: FileHandle
    let stderr: FileHandle

    init(root: String) throws {
        base = "\(root)/etcdctl-\(UUID().uuidString)"
        for suffix in [".out", ".err"] { _ = FileManager.default.createFile(atPath: base + suffix, contents: nil) }
        guard let out = FileHandle(forWritingAtPath: base + ".out"), let err = FileHandle(forWritingAtPath: base + ".err") else {
            throw CocoaError(.fileWriteUnknown)
        }
        stdout = out
        stderr = err
    }

    func read() -> (String, String) {
        try? stdout.close()
        try? stderr.close()
        let out = (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? ""
        for suffix in [".out", ".err", ".in"] { try? FileManager.default.removeItem(atPath: base + suffix) }
        return (out, err)
    }
}

/// Hands each cluster started by this process its own block of 20 ports (of 10 per process), so
/// that clusters of suites running in parallel never share a port.
enum PortBlocks {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var counter = 0

    static func next() -> Int {
        lock.withLock {
            defer { counter += 1 }
            return counter % 10
        }
    }
}
