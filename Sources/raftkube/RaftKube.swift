import ArgumentParser
import Raft
import RaftSimulation

/// The raftkube command line: the node's life (`init`, `join`, `start`, `leave`), the cluster's
/// client commands (`get`, `describe`, `apply`, `create`, `delete`, `scale`, `auth can-i`), the
/// cluster's administration, the store member, the benchmarks.
@main
struct RaftKube: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "raftkube",
        abstract: "A Kubernetes-style container orchestrator built on its own Raft.",
        subcommands: [InitCommand.self, JoinCommand.self, StartCommand.self, LeaveCommand.self,
                      GetCommand.self, DescribeCommand.self, ApplyCommand.self, CreateCommand.self, DeleteCommand.self, ScaleCommand.self, AuthCommand.self,
                      ClusterCommand.self, TokenCommand.self, CertsCommand.self, StoreCommand.self, Bench.self])
}

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rerunnable benchmarks; figures go in docs/benchmarks.md.",
        subcommands: [RaftCore.self, RaftSimulator.self, Put.self, Range.self, Txn.self, Watch.self, Idle.self])
}

extension Bench {
    struct RaftCore: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "raft-core",
            abstract: "Entries committed per second through the Raft core alone (in memory, no I/O).")

        @Option(help: "Entries to commit per measurement.")
        var entries: Int = 200_000

        @Option(help: "Bytes per proposal.")
        var bytes: Int = 256

        @Option(help: "Comma-separated proposals per round (1 means no batching).")
        var batches: String = "1,16,64,256"

        @Option(help: "Nodes in the cluster.")
        var nodes: Int = 3

        func validate() throws {
            guard entries > 0, bytes >= 0, (1...9).contains(nodes) else { throw ValidationError("--entries must be positive, --nodes 1...9") }
            guard batchSizes.count > 0 else { throw ValidationError("--batches must list positive integers") }
        }

        var batchSizes: [Int] {
            batches.split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 }
        }

        func run() throws {
            print("nodes=\(nodes) bytes=\(bytes) entries=\(entries)")
            for batch in batchSizes {
                var benchmark = CoreBenchmark()
                benchmark.nodeCount = nodes
                benchmark.proposalBytes = bytes
                benchmark.entries = entries
                benchmark.proposalsPerRound = batch
                let result = try benchmark.run()
                print("proposals-per-round=\(batch) entries-per-second=\(Int(result.entriesPerSecond)) messages=\(result.messages) seconds=\((result.seconds * 1000).rounded() / 1000)")
            }
        }
    }

    struct RaftSimulator: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "raft-sim",
            abstract: "Simulated ticks and steps per second of the deterministic cluster simulator.")

        @Option(help: "Seeds to run.")
        var seeds: Int = 200

        @Option(help: "Nodes per cluster.")
        var nodes: Int = 3

        func run() throws {
            var ticks = 0
            var steps = 0
            var violations = 0
            let started = ContinuousClock.now
            for seed in 1...UInt64(max(1, seeds)) {
                let result = Simulation.run(seed: seed, options: SimulationOptions(seed: seed, nodeCount: nodes))
                ticks += result.ticks
                steps += result.steps
                if result.violation != nil { violations += 1 }
            }
            let elapsed = ContinuousClock.now - started
            let seconds = elapsed.inSeconds
            print("seeds=\(seeds) nodes=\(nodes) ticks=\(ticks) steps=\(steps) seconds=\((seconds * 100).rounded() / 100) ticks-per-second=\(Int(Double(ticks) / seconds)) steps-per-second=\(Int(Double(steps) / seconds)) seeds-per-second=\((Double(seeds) / seconds * 10).rounded() / 10) violations=\(violations)")
            if violations > 0 { throw ExitCode(1) }
        }
    }
}
