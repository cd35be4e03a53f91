import ClusterHarness
import Foundation
import Glibc
import Logging
import NIOConcurrencyHelpers
import Raft
@testable import RaftRuntime
import Testing

/// A state machine with storage of its own, as the store's SQLite: a running sum of the
/// commands' first bytes, kept in memory and written (with fsync) to `path` by `persist`.
final class DurableSum: StateMachine, @unchecked Sendable {
    private let lock = NIOLock()
    let path: String
    private var sum: UInt64 = 0
    private var index: UInt64 = 0
    private var persistedIndex: UInt64 = 0

    init(path: String) {
        self.path = path
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            let fields = text.split(separator: " ").compactMap { UInt64($0) }
            if fields.count == 2 { (index, sum, persistedIndex) = (fields[0], fields[1], fields[0]) }
        }
    }

    var state: (index: UInt64, sum: UInt64) { lock.withLock { (index, sum) } }

    func apply(_ commands: [AppliedCommand]) throws -> [[UInt8]] {
        lock.withLock {
            commands.map { command in
                guard command.index > index else { return [] }
                sum += UInt64(command.data.first ?? 0)
                index = command.index
                return []
            }
        }
    }

    func snapshot() throws -> [UInt8] { lock.withLock { Array("\(index) \(sum)".utf8) } }

    func restore(_ data: [UInt8], index restoredIndex: UInt64) throws {
        let fields = String(decoding: data, as: UTF8.self).split(separator: " ").compactMap { UInt64($0) }
        guard fields.count == 2 else { throw RuntimeError.rejected("bad sum snapshot") }
        lock.withLock { (index, sum) = (fields[0], fields[1]) }
        _ = try persist()
    }

    func persist() throws -> UInt64? {
        try lock.withLock {
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try handle.truncate(atOffset: 0)
            try handle.write(contentsOf: Data("\(index) \(sum)".utf8))
            try handle.synchronize()
            try handle.close()
            persistedIndex = index
            return index
        }
    }

    var durableAppliedIndex: UInt64 { lock.withLock { persistedIndex } }
}

/// A single-member runtime in this process, for what is easiest to see from inside: snapshots
/// that refer to a durable state machine, and read barriers under load.
@Suite("Runtime in process")
struct InProcessRuntimeTests {
    static let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    static func configuration(_ directory: StorageTestDirectory) throws -> RuntimeConfiguration {
        let address = PeerAddress(host: "127.0.0.1", port: try FreePort.next())
        var configuration = RuntimeConfiguration(id: 1, dataDirectory: directory.sub("raft"), listen: address, peers: [1: address], bootstrap: true)
        configuration.heartbeatIntervalMs = 10
        configuration.snapshotIntervalEntries = 50
        configuration.compactionMarginEntries = 10
        return configuration
    }

    /// Runs a runtime until `body` returns, then stops it and returns its outcome.
    static func withRuntime<Result: Sendable>(
        _ configuration: RuntimeConfiguration, _ stateMachine: any StateMachine,
        _ body: (RaftRuntime) async throws -> Result
    ) async throws -> Result {
        let runtime = RaftRuntime(configuration: configuration, stateMachine: stateMachine, logger: Self.quiet)
        let running = Task { try await runtime.run() }
        defer { running.cancel() }
        for _ in 0..<500 {
            if (try? await runtime.status())?.role == .leader { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        let result = try await body(runtime)
        running.cancel()
        try await running.value
        return result
    }

    @Test("snapshots of a durable state machine hold no copy of it; a restart resumes from its files and the log")
    func heldSnapshotsAndRestart() async throws {
        let directory = StorageTestDirectory()
        defer { directory.remove() }
        _ = FileManager.default.createFile(atPath: directory.sub("sum"), contents: nil)
        let configuration = try Self.configuration(directory)
        try await Self.withRuntime(configuration, DurableSum(path: directory.sub("sum"))) { runtime in
            for value in 1...300 { _ = try await runtime.propose([UInt8(value % 200)]) }
        }
        let expected = (1...300).reduce(UInt64(0)) { $0 + UInt64($1 % 200) }
        // Six snapshots were taken; each file is the snapshot header, peers and an index.
        let snapshots = try FileManager.default.contentsOfDirectory(atPath: directory.sub("raft/snap"))
        #expect(!snapshots.isEmpty)
        for name in snapshots {
            let size = try #require(try FileManager.default.attributesOfItem(atPath: directory.sub("raft/snap/\(name)"))[.size] as? NSNumber)
            #expect(size.intValue < 512, "\(name): \(size)")
        }
        // Restart: the state machine's file holds what it persisted; the log replays the rest.
        let reopened = DurableSum(path: directory.sub("sum"))
        let sum = try await Self.withRuntime(configuration, reopened) { runtime in
            _ = try await runtime.propose([7])
            try await runtime.readBarrier()
            return reopened.state.sum
        }
        #expect(sum == expected + 7)
    }

    @Test("a restart whose state machine lost its files is refused, naming the cause")
    func lostStateMachineRefused() async throws {
        let directory = StorageTestDirectory()
        defer { directory.remove() }
        _ = FileManager.default.createFile(atPath: directory.sub("sum"), contents: nil)
        let configuration = try Self.configuration(directory)
        try await Self.withRuntime(configuration, DurableSum(path: directory.sub("sum"))) { runtime in
            for value in 1...120 { _ = try await runtime.propose([UInt8(value)]) }
        }
        _ = FileManager.default.createFile(atPath: directory.sub("sum"), contents: nil)
        let runtime = RaftRuntime(configuration: configuration, stateMachine: DurableSum(path: directory.sub("sum")), logger: Self.quiet)
        await #expect {
            try await runtime.run()
        } throws: { error in
            "\(error)".contains("the state machine's files were lost or replaced")
        }
    }

    @Test("many concurrent read barriers share ReadIndex rounds and each sees every write before it")
    func concurrentReadBarriers() async throws {
        let directory = StorageTestDirectory()
        defer { directory.remove() }
        _ = FileManager.default.createFile(atPath: directory.sub("sum"), contents: nil)
        let sum = DurableSum(path: directory.sub("sum"))
        let violations = try await Self.withRuntime(try Self.configuration(directory), sum) { runtime in
            try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<64 {
                    group.addTask {
                        var violations = 0
                        for _ in 0..<20 {
                            let written = try await runtime.propose([1])
                            try await runtime.readBarrier()
                            if sum.state.index < written.index { violations += 1 }
                        }
                        return violations
                    }
                }
                return try await group.reduce(0, +)
            }
        }
        #expect(violations == 0)
        #expect(sum.state.sum == 64 * 20)
    }
}
