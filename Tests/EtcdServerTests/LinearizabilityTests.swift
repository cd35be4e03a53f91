import ClusterHarness
import Foundation
import Linearizability
import Testing

/// A Jepsen-style test: concurrent clients get, put and compare-and-set a few keys through
/// etcdctl while members are SIGKILLed and restarted; the recorded history must be linearizable.
@Suite("Linearizability under member kills", .serialized)
struct StoreLinearizabilityTests {
    final class Recorder: @unchecked Sendable {
        // Guarded by `lock`.
        private let lock = NSLock()
        private var history = KeyValueHistory()
        private(set) var counts: [String: Int] = [:]
        let origin = DispatchTime.now().uptimeNanoseconds

        var now: UInt64 { DispatchTime.now().uptimeNanoseconds - origin }

        func record(key: String, _ operation: Linearizability.Operation<RegisterInput, RegisterOutput>, kind: String) {
            lock.withLock {
                history.record(key: key, operation)
                counts[kind, default: 0] += 1
            }
        }

        func snapshot() -> (KeyValueHistory, [String: Int]) { lock.withLock { (history, counts) } }
    }

    /// The hex member ID of some follower, from `endpoint status`.
    static func follower(_ cluster: StoreCluster) -> String? {
        guard let status = try? cluster.etcdctl(["endpoint", "status"], commandTimeout: 3) else { return nil }
        return status.stdout.split(separator: "\n").map { $0.components(separatedBy: ", ") }.first { $0.count > 4 && $0[4] == "false" }?[1]
    }

    @Test("get/put/compare-and-set histories stay linearizable while members are killed and the leader is moved")
    func linearizableUnderKills() throws {
        let cluster = try StoreCluster(name: "jepsen")
        defer { cluster.tearDown() }
        try cluster.start()
        try cluster.waitUntilServing()
        let recorder = Recorder()
        let keys = ["k0", "k1", "k2"]
        let deadline = Date().addingTimeInterval(20)
        let group = DispatchGroup()
        for client in 0..<4 {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                var sequence = 0
                var lastSeen: [String: String] = [:]
                while Date() < deadline {
                    sequence += 1
                    // Each run of get, put, compare-and-set works on one key, so the CAS knows a recent value.
                    let key = keys[(client + sequence / 3) % keys.count]
                    let call = recorder.now
                    switch sequence % 3 {
                    case 0:
                        guard let result = try? cluster.etcdctl(["get", key, "--print-value-only"]), result.status == 0 else { continue }
                        let value = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                        let seen: String? = value.isEmpty ? nil : value
                        if let seen { lastSeen[key] = seen }
                        recorder.record(key: key, Linearizability.Operation(client: client, input: .get, output: .value(seen), callTime: call, returnTime: recorder.now), kind: "get")
                    case 1:
                        let value = "c\(client)-\(sequence)"
                        let result = try? cluster.etcdctl(["put", key, value])
                        let ok = result?.status == 0 && result?.stdout.contains("OK") == true
                        // The next compare-and-set on this key expects what was just written.
                        if ok { lastSeen[key] = value }
                        recorder.record(key: key, Linearizability.Operation(client: client, input: .put(value), output: ok ? .ok : nil, callTime: call, returnTime: ok ? recorder.now : nil), kind: ok ? "put" : "put?")
                    default:
                        guard let expected = lastSeen[key] else { continue }
                        let value = "x\(client)-\(sequence)"
                        let result = try? cluster.etcdctl(["txn"], input: "value(\"\(key)\") = \"\(expected)\"\n\nput \(key) \(value)\n\n\n")
                        let output: RegisterOutput?
                        if result?.status == 0 && result?.stdout.hasPrefix("SUCCESS") == true {
                            output = .ok
                            lastSeen[key] = value
                        } else if result?.status == 0 && result?.stdout.hasPrefix("FAILURE") == true {
                            output = .failed
                        } else {
                            output = nil
                        }
                        recorder.record(key: key, Linearizability.Operation(client: client, input: .compareAndSet(expected: expected, new: value), output: output, callTime: call, returnTime: output == nil ? nil : recorder.now), kind: output == nil ? "cas?" : "cas")
                    }
                }
            }
        }
        // The nemesis: every 3 s, either kill a member (back 1.5 s later) or move the leadership.
        var kills = 0
        var moves = 0
        while Date() < deadline.addingTimeInterval(-4) {
            Thread.sleep(forTimeInterval: 3)
            if (kills + moves) % 3 == 2, let target = Self.follower(cluster) {
                if (try? cluster.etcdctl(["move-leader", target], commandTimeout: 3))?.output.contains("Leadership transferred") == true { moves += 1 }
                continue
            }
            let victim = 1 + kills % 3
            cluster.kill(victim)
            kills += 1
            Thread.sleep(forTimeInterval: 1.5)
            try cluster.start(victim)
        }
        group.wait()
        let (history, counts) = recorder.snapshot()
        #expect(kills >= 3 && moves >= 1, "kills=\(kills) moves=\(moves)")
        #expect((counts["get"] ?? 0) > 30 && (counts["put"] ?? 0) > 30 && (counts["cas"] ?? 0) > 10, "too few operations: \(counts)")
        let verdict = history.check()
        if verdict.result != .linearizable, let key = verdict.key {
            let lines = history.operations[key, default: []].sorted { $0.callTime < $1.callTime }.map { operation in
                "\(operation.callTime / 1_000_000)ms..\(operation.returnTime.map { "\($0 / 1_000_000)ms" } ?? "?") c\(operation.client) \(operation.input) -> \(operation.output.map { "\($0)" } ?? "unknown")"
            }
            try? lines.joined(separator: "\n").write(toFile: NSTemporaryDirectory() + "raftkube-nonlinearizable-\(key).txt", atomically: true, encoding: .utf8)
        }
        #expect(verdict.result == .linearizable, "key \(verdict.key ?? "?") is not linearizable; operations: \(counts)")
        print("linearizability: kills=\(kills) leader-moves=\(moves) operations=\(counts) verdict=\(verdict.result)")
    }
}
