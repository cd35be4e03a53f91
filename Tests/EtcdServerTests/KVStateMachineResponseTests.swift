import Foundation
import KVStore
import RaftRuntime
import Testing

@testable import EtcdServer

/// Responses of applied commands are kept only where a caller waits for them (the proposing
/// member), and only up to a count and a byte bound (issue 11, item 14).
@Suite("Kept command responses")
struct KVStateMachineResponseTests {
    static func withStateMachine(responsesMax: Int = 65_536, responseBytesMax: Int = 1 << 20, _ body: (KVStateMachine) throws -> Void) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kvsm-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try body(try KVStateMachine(path: directory.appendingPathComponent("kv.sqlite").path, responsesMax: responsesMax, responseBytesMax: responseBytesMax))
    }

    static func put(_ index: UInt64, _ key: String, value: Int = 10, prevKv: Bool = false, awaited: Bool) -> AppliedCommand {
        let request = KVRequest.put(PutRequest(key: Array(key.utf8), value: [UInt8](repeating: 0x76, count: value), prevKv: prevKv))
        return AppliedCommand(index: index, term: 1, data: request.encoded(), awaitedHere: awaited)
    }

    @Test("A replica that did not propose keeps no response; the proposer keeps its own until taken")
    func onlyTheProposerKeeps() throws {
        try Self.withStateMachine { machine in
            _ = try machine.apply((1...100).map { Self.put($0, "k\($0)", awaited: false) })
            #expect(machine.keptResponses.count == 0 && machine.keptResponses.bytes == 0)
            _ = try machine.apply([Self.put(101, "mine", awaited: true), Self.put(102, "theirs", awaited: false)])
            #expect(machine.keptResponses.count == 1)
            #expect(machine.takeResponse(index: 102) == nil)
            guard case .put = machine.takeResponse(index: 101) else {
                Issue.record("no put response for the proposer")
                return
            }
            #expect(machine.keptResponses.count == 0 && machine.keptResponses.bytes == 0)
        }
    }

    @Test("Responses nobody takes are bounded in bytes and in count, oldest dropped first")
    func boundedInBytesAndCount() throws {
        // Each response carries a previous value of 10 KiB: 10 of them pass the 100 KiB bound.
        try Self.withStateMachine(responseBytesMax: 100 << 10) { machine in
            _ = try machine.apply((1...20).map { Self.put($0, "same", value: 10 << 10, awaited: false) })
            _ = try machine.apply((21...40).map { Self.put($0, "same", value: 10 << 10, prevKv: true, awaited: true) })
            let kept = machine.keptResponses
            #expect(kept.bytes <= 100 << 10 && kept.count < 20 && kept.count >= 8, "\(kept)")
            #expect(machine.takeResponse(index: 21) == nil, "the oldest was not dropped")
            #expect(machine.takeResponse(index: 40) != nil, "the newest was dropped")
        }
        try Self.withStateMachine(responsesMax: 5) { machine in
            _ = try machine.apply((1...50).map { Self.put($0, "k\($0)", awaited: true) })
            #expect(machine.keptResponses.count == 5)
            #expect(machine.takeResponse(index: 45) == nil && machine.takeResponse(index: 46) != nil)
        }
    }
}
