import ArgumentParser
import ClusterHarness
import Foundation
import Glibc

extension TestKit.Bench {
    /// Three `raft-node` processes on loopback with real fsync: committed proposals per second and
    /// commit latency at several concurrencies, beside the disk's raw fdatasync rate.
    struct RaftRuntime: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "raft-runtime",
            abstract: "Commit throughput and latency of a 3-process cluster with real fsync.")

        @Option(help: "Comma-separated numbers of concurrent proposers.")
        var proposers: String = "1,16,256"

        @Option(help: "Seconds per measurement.")
        var seconds: Int = 5

        @Option(help: "Bytes per proposal.")
        var bytes: Int = 256

        func validate() throws {
            guard seconds > 0, bytes > 0, bytes < 1 << 20 else { throw ValidationError("--seconds and --bytes must be positive (bytes < 1 MiB)") }
            guard !concurrencies.isEmpty else { throw ValidationError("--proposers must list positive integers") }
        }

        var concurrencies: [Int] { proposers.split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 } }

        func run() async throws {
            let binary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
            let cluster = try ProcessCluster(name: "bench", binary: binary, heartbeatMs: 100)
            defer { cluster.tearDown() }
            let fsyncPerSecond = try Self.measureFdatasync(directory: cluster.root, seconds: 2)
            let fsyncMs = 1_000 / fsyncPerSecond
            print("raw fdatasync (4 KiB appends, \(cluster.root)): \(Int(fsyncPerSecond))/s, \(Self.format(fsyncMs)) ms each")
            try cluster.bootstrap([1, 2, 3])
            guard let leader = await cluster.waitForLeader() else { throw ValidationError("no leader elected") }
            let port = cluster.clientPort(leader)
            let rttMs = try await LineSession.with(port: port) { session -> Double in
                for _ in 0..<200 { _ = try await session.send("PING") }
                let started = ContinuousClock.now
                for _ in 0..<2_000 { _ = try await session.send("PING") }
                return Self.milliseconds(ContinuousClock.now - started) / 2_000
            }
            print("loopback request round trip (PING on the client port): \(Self.format(rttMs)) ms")
            let payload = String(repeating: "x", count: max(1, bytes - 12))
            for proposerCount in concurrencies {
                let deadline = ContinuousClock.now + .seconds(seconds)
                let started = ContinuousClock.now
                let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
                    for proposer in 0..<proposerCount {
                        group.addTask {
                            try await LineSession.with(port: port) { session in
                                var measured: [Double] = []
                                var sequence = 0
                                while ContinuousClock.now < deadline {
                                    let sent = ContinuousClock.now
                                    let reply = try await session.send("PUT \(proposer)-\(sequence)-\(payload)")
                                    sequence += 1
                                    if reply.hasPrefix("OK") { measured.append(Self.milliseconds(ContinuousClock.now - sent)) }
                                }
                                return measured
                            }
                        }
                    }
                    var all: [Double] = []
                    for try await part in group { all += part }
                    return all.sorted()
                }
                let elapsed = Self.milliseconds(ContinuousClock.now - started) / 1_000
                let throughput = Double(latencies.count) / elapsed
                let p50 = Self.percentile(latencies, 0.50)
                let p99 = Self.percentile(latencies, 0.99)
                var line = "proposers=\(proposerCount) committed=\(latencies.count) per-second=\(Int(throughput)) p50-ms=\(Self.format(p50)) p99-ms=\(Self.format(p99))"
                line += " throughput/fsync-rate=\(Self.format(throughput / fsyncPerSecond))"
                if proposerCount == 1 { line += " p50/(fsync+rtt)=\(Self.format(p50 / (fsyncMs + rttMs)))" }
                print(line)
            }
        }

        static func measureFdatasync(directory: String, seconds: Double) throws -> Double {
            let path = directory + "/fsync-probe"
            let descriptor = open(path, O_CREAT | O_WRONLY | O_APPEND, 0o644)
            guard descriptor >= 0 else { throw ValidationError("cannot open \(path): errno \(errno)") }
            defer {
                close(descriptor)
                unlink(path)
            }
            let block = [UInt8](repeating: 0x5A, count: 4096)
            var count = 0
            let started = ContinuousClock.now
            let limit = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
            while ContinuousClock.now < limit {
                let written = block.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
                guard written == block.count, fdatasync(descriptor) == 0 else { throw ValidationError("write/fdatasync failed: errno \(errno)") }
                count += 1
            }
            return Double(count) / (milliseconds(ContinuousClock.now - started) / 1_000)
        }

        static func milliseconds(_ duration: Duration) -> Double {
            Double(duration.components.seconds) * 1_000 + Double(duration.components.attoseconds) / 1e15
        }

        static func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            return sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))]
        }

        static func format(_ value: Double) -> String {
            String((value * 100).rounded() / 100)
        }
    }
}
