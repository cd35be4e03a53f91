import ArgumentParser

/// Test fixtures and the benchmarks built on them, kept out of the product binary: `raft-node`
/// (a Raft member with a trivial state machine, which `ClusterHarness.ProcessCluster` starts,
/// kills and restarts in the runtime tests) and `bench raft-runtime` (three of them with real fsync).
@main
struct TestKit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "raftkube-testkit",
        abstract: "raftkube's test fixtures: a Raft test member, and the runtime benchmark on it.",
        subcommands: [RaftNodeCommand.self, Bench.self])

    struct Bench: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Benchmarks on test members; figures go in docs/benchmarks.md.",
            subcommands: [RaftRuntime.self])
    }
}
