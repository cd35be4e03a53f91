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

    public init(name: String, count: Int = 3, binary: String = ProcessCluster.siblingBinary) throws {
        root = NSTemporaryDirectory() + "raftkube-store-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        basePort = 30_000 + Int(getpid() % 200) * 100 + Int.random(in: 0..<5) * 20
        self.count = count
        self.binary = binary
    }

    public func clientPort(_ member: Int) -> Int { basePort + member * 2 }
    public func peerPort(_ member: Int) -> Int { basePort + member * 2 + 1 }
    public var endpoints: String { (1...count).map { "127.0.0.1:\(clientPort($0))" }.joined(separator: ",") }

    public func start() throws {
        for member in 1...count { try start(member) }
    }

    public func start(_ member: Int) throws {
        let initialCluster = (1...count).map { "m\($0)=http://127.0.0.1:\(peerPort($0))" }.joined(separator: ",")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = [
            "store", "--name", "m\(member)", "--data-dir", "\(root)/m\(member)",
            "--listen-client-urls", "http://127.0.0.1:\(clientPort(member))",
            "--listen-peer-urls", "http://127.0.0.1:\(peerPort(member))",
            "--initial-cluster", initialCluster, "--heartbeat-interval", "50",
        ]
        let logPath = "\(root)/m\(member).log"
        if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
        let log = FileHandle(forWritingAtPath: logPath)!
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        processes[member] = process
    }

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
        process.arguments = ["\(seconds)", "/usr/bin/etcdctl", "--endpoints=\(endpoints ?? self.endpoints)"] + arguments
        process.environment = ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return {
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return String(decoding: data, as: UTF8.self)
        }
    }

    /// Runs `etcdctl` (v3 API) with `arguments` against `endpoints` (all members by default);
    /// returns its exit status and combined output.
    /// `output` is standard output followed by standard error; `stdout` alone is what to parse
    /// (etcdctl logs retries on standard error).
    public func etcdctl(_ arguments: [String], endpoints: String? = nil, input: String? = nil) throws -> (status: Int32, output: String, stdout: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/etcdctl")
        process.arguments = ["--endpoints=\(endpoints ?? self.endpoints)", "--dial-timeout=3s", "--command-timeout=10s"] + arguments
        process.environment = ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"]
        let pipe = Pipe()
        let errors = Pipe()
        process.standardOutput = pipe
        process.standardError = errors
        if let input {
            let inputPipe = Pipe()
            process.standardInput = inputPipe
            try process.run()
            inputPipe.fileHandleForWriting.write(Data(input.utf8))
            try inputPipe.fileHandleForWriting.close()
        } else {
            process.standardInput = FileHandle.nullDevice
            try process.run()
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        let errorData = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let stdout = String(decoding: data, as: UTF8.self)
        return (process.terminationStatus, stdout + String(decoding: errorData, as: UTF8.self), stdout)
    }
}
