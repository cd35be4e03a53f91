import ClusterHarness
import Foundation
import Testing

/// Compaction in real member processes: the apply only moves the compact revision, each
/// member's `Compactor` removes the freed rows afterwards, `--physical` waits for it, and the
/// members' hashes agree whatever each one's progress.
@Suite("Compaction in the background", .serialized)
struct CompactionTests {
    /// `dbSizeInUse` of the member at `port`, from `endpoint status -w json`.
    static func sizeInUse(_ cluster: StoreCluster, port: Int) throws -> Int {
        let json = try cluster.etcdctl(["endpoint", "status", "-w", "json"], endpoints: "127.0.0.1:\(port)").stdout
        let entries = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]])
        let status = try #require(entries.first?["Status"] as? [String: Any])
        return try #require((status["dbSizeInUse"] as? NSNumber)?.intValue, "no dbSizeInUse in \(json)")
    }

    @Test("compact --physical answers once the member has removed the freed rows; the space is in use no more; hashes agree; writes go on")
    func physicalCompactionFreesTheHistory() async throws {
        let cluster = try StoreCluster(name: "compaction")
        defer { cluster.tearDown() }
        try cluster.start()
        try cluster.waitUntilServing()
        // 4 MB of history: 2,000 versions of 40 keys, 2 KiB each.
        let value = Data(String(repeating: "h", count: 2_048).utf8)
        try await SnapshotCatchUpTests.put(port: cluster.clientPort(1), count: 2_000, callers: 8, value: value) { "history/\($0 % 40)" }
        let before = try Self.sizeInUse(cluster, port: cluster.clientPort(1))
        #expect(before > 4_000_000, "only \(before) bytes in use after 4 MB of puts")

        let fields = try cluster.etcdctl(["get", "history/0", "-w", "fields"]).stdout
        let revision = try #require(fields.split(separator: "\n").first { $0.contains("\"Revision\"") }
            .flatMap { Int($0.split(separator: ":").last!.trimmingCharacters(in: .whitespaces)) })
        let compact = try cluster.etcdctl(["compact", "\(revision)", "--physical"], commandTimeout: 60)
        #expect(compact.status == 0 && compact.stdout.contains("compacted revision \(revision)"), "\(compact.output)")
        // Answered after the rows went: 40 versions are left of 2,000 (free pages stay in the file).
        let after = try Self.sizeInUse(cluster, port: cluster.clientPort(1))
        #expect(after < before / 4, "in use: \(before) bytes before, \(after) after a physical compaction")

        // Every member answers alike, whatever its own progress; reads below fail, at it work.
        let hashes = try SnapshotCatchUpTests.hashes(cluster)
        #expect(hashes.count == 3 && Set(hashes).count == 1, "hashkv: \(hashes)")
        let below = try cluster.etcdctl(["get", "history/1", "--rev=\(revision - 1)"])
        #expect(below.status != 0 && below.output.contains("required revision has been compacted"))
        for member in 1...3 {
            let at = try cluster.etcdctl(["get", "history/0", "--rev=\(revision)", "--print-value-only", "--consistency=s"],
                                         endpoints: "127.0.0.1:\(cluster.clientPort(member))")
            #expect(at.status == 0 && at.stdout.hasPrefix("hhhh"), "member \(member) at the compact revision: \(at.output.prefix(200))")
        }
        #expect(try cluster.etcdctl(["put", "history/0", "new"]).status == 0)
        // Eventually every member has removed the rows (each steps on its own).
        for member in 2...3 {
            var size = before
            let removed = try eventually { size = try Self.sizeInUse(cluster, port: cluster.clientPort(member)); return size < before / 4 }
            #expect(removed, "member \(member) still uses \(size) of \(before) bytes 30 s after the compaction")
        }
    }
}
