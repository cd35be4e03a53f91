import Foundation
import Testing

@testable import KVStore

@Suite("WAL checkpoints off the apply path")
struct WALCheckpointTests {
    @Test("40 MiB of writes: the checkpointer's thread checkpoints, the WAL stays bounded, nothing is lost across a reopen")
    func checkpointsInTheBackground() throws {
        let test = try TestStore()
        let value = String(repeating: "v", count: 4096)
        for number in 0..<10_000 { try test.put("key\(number % 500)", value + "\(number)") }
        let checkpointer = try #require(test.store.checkpointer)
        // The thread runs when asked; give it a moment after the last commit.
        let deadline = Date().addingTimeInterval(10)
        while checkpointer.checkpointsCompleted == 0, Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        #expect(checkpointer.checkpointsCompleted > 0)
        let walBytes = (try? FileManager.default.attributesOfItem(atPath: test.path + "-wal")[.size] as? Int) ?? 0
        // Without checkpoints the WAL would hold every page written (over 40 MiB).
        #expect(walBytes < 30 << 20, "WAL is \(walBytes) bytes")
        try test.store.checkpoint()
        try test.reopen()
        #expect(test.store.currentRevision == 10_001)
        let last = try test.store.range(RangeRequest(key: Array("key499".utf8)))
        guard case .success(let response) = last else { Issue.record("\(last)"); return }
        #expect(response.kvs.first.map { String(decoding: $0.value, as: UTF8.self) } == value + "9999")
    }
}
