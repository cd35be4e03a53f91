import ClusterHarness
import Foundation
import Testing

/// The python-etcd3 client (gRPC, etcd's own protos compiled by its authors) against a 3-member
/// store: see `Python/etcd3_suite.py` for the 29 checks (KV, txn, CAS, leases with expiry,
/// watch, locks, members, status, compaction, snapshot).
@Suite("python-etcd3 against raftkube store", .serialized)
struct PythonClientTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static var python: String {
        ProcessInfo.processInfo.environment["RAFTKUBE_ETCD3_PYTHON"] ?? root + "/.build-python/etcd3/bin/python"
    }

    @Test("python-etcd3's KV, txn, lease, watch, lock, member, status, compaction and snapshot calls all behave as on etcd")
    func etcd3Suite() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.python),
                     "no python-etcd3 virtualenv at \(Self.python): run cluster/python-etcd3 (cluster/test does)")
        let cluster = try StoreCluster(name: "python")
        defer { cluster.tearDown() }
        try cluster.start()
        try cluster.waitUntilServing()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        process.arguments = ["180", Self.python, Self.root + "/Tests/EtcdServerTests/Python/etcd3_suite.py", cluster.endpoints, cluster.root + "/python-snapshot.db"]
        let outputPath = cluster.root + "/python.out"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try output.close()
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        #expect(process.terminationStatus == 0, "python-etcd3 suite failed:\n\(text.suffix(3000))\n\(cluster.diagnostics())")
        #expect(text.contains("OK 29 checks"), "\(text.suffix(500))")
    }
}
