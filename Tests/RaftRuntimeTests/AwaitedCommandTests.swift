import Foundation
import NIOConcurrencyHelpers
import Raft
import Testing

@testable import RaftRuntime

/// Which applied commands a caller waits for: only those proposed on this member by a caller
/// still waiting; the same commands replayed from the log after a restart are awaited by nobody,
/// so a state machine keeps no response for them.
@Suite("Awaited commands")
struct AwaitedCommandTests {
    /// Records each applied command's index and whether it was awaited here.
    final class Recorder: StateMachine, @unchecked Sendable {
        private let lock = NIOLock()
        private var applied: [(index: UInt64, awaited: Bool)] = []

        var records: [(index: UInt64, awaited: Bool)] { lock.withLock { applied } }

        func apply(_ commands: [AppliedCommand]) throws -> [[UInt8]] {
            lock.withLock {
                applied += commands.map { ($0.index, $0.awaitedHere) }
                return commands.map { _ in [] }
            }
        }

        func snapshot() throws -> [UInt8] { [] }
        func restore(_ data: [UInt8], index: UInt64) throws {}
        var durableAppliedIndex: UInt64 { 0 }
    }

    @Test("Proposals are awaited on the member that made them; their replay after a restart is not")
    func proposedHereThenReplayed() async throws {
        let directory = StorageTestDirectory()
        defer { directory.remove() }
        let configuration = try InProcessRuntimeTests.configuration(directory)
        let first = Recorder()
        try await InProcessRuntimeTests.withRuntime(configuration, first) { runtime in
            for value in 1...5 { _ = try await runtime.propose([UInt8(value)]) }
        }
        #expect(first.records.count == 5 && first.records.allSatisfy(\.awaited), "\(first.records)")

        let replayed = Recorder()
        try await InProcessRuntimeTests.withRuntime(configuration, replayed) { runtime in
            _ = try await runtime.propose([9])
        }
        let records = replayed.records
        #expect(records.count == 6, "\(records)")
        #expect(records.dropLast().allSatisfy { !$0.awaited }, "replayed commands were marked awaited: \(records)")
        #expect(records.last?.awaited == true)
    }
}
