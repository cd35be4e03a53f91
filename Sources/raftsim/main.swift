import ArgumentParser
import Raft
import RaftSimulation

/// Runs the deterministic Raft simulator over many seeds; exits non-zero on any violation.
@main
struct RaftSim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "raftsim",
        abstract: "Run seeded Raft cluster simulations under network, disk and clock faults.")

    @Option(help: "How many seeds to run, starting at --first-seed.")
    var seeds: Int = 100

    @Option(help: "The first seed of the range.")
    var firstSeed: UInt64 = 1

    @Option(help: "Run only this seed (and print its trace with --trace).")
    var seed: UInt64?

    @Option(help: "Initial voters per cluster (3, 5 or 7).")
    var nodes: Int = 3

    @Option(help: "Ticks of the fault phase.")
    var faultTicks: Int = 300

    @Flag(help: "Print every traced event of a single seed.")
    var trace = false

    @Option(help: "Break one rule on purpose: figure8, election-restriction or read-index.")
    var breakRule: String?

    mutating func validate() throws {
        guard [1, 3, 5, 7].contains(nodes) || (1...9).contains(nodes) else { throw ValidationError("--nodes must be between 1 and 9") }
        guard seeds > 0 else { throw ValidationError("--seeds must be positive") }
        guard faultTicks >= 20 else { throw ValidationError("--fault-ticks must be at least 20") }
        if let breakRule, !["figure8", "election-restriction", "read-index"].contains(breakRule) {
            throw ValidationError("--break-rule must be figure8, election-restriction or read-index")
        }
    }

    func run() throws {
        var options = SimulationOptions(seed: 0, nodeCount: nodes)
        options.faultPhaseTicks = faultTicks
        options.trace = trace
        switch breakRule {
        case "figure8": options.unsafeTesting.commitPreviousTermEntriesByCounting = true
        case "election-restriction": options.unsafeTesting.skipElectionRestriction = true
        case "read-index": options.unsafeTesting.skipReadIndexConfirmation = true
        default: break
        }
        let seedList: [UInt64] = seed.map { [$0] } ?? (0..<UInt64(seeds)).map { firstSeed &+ $0 }
        var totals = SimulationResult(seed: 0, nodeCount: nodes)
        var violations = 0
        let started = ContinuousClock.now
        for current in seedList {
            let result = Simulation.run(seed: current, options: options)
            for line in result.traceLines { print(line) }
            totals.steps += result.steps
            totals.ticks += result.ticks
            totals.writesAcknowledged += result.writesAcknowledged
            totals.readsCompleted += result.readsCompleted
            totals.crashes += result.crashes
            totals.membershipChanges += result.membershipChanges
            totals.leaderElections += result.leaderElections
            totals.snapshotsSent += result.snapshotsSent
            if let violation = result.violation {
                violations += 1
                print("VIOLATION seed=\(current) nodes=\(nodes): \(violation)")
                var replay = "swift run -c release raftsim --seed \(current) --nodes \(nodes)"
                if faultTicks != 300 { replay += " --fault-ticks \(faultTicks)" }
                if let breakRule { replay += " --break-rule \(breakRule)" }
                print("replay: \(replay) --trace")
            }
        }
        let elapsed = ContinuousClock.now - started
        let seconds = elapsed.inSeconds
        print("seeds=\(seedList.count) nodes=\(nodes) steps=\(totals.steps) ticks=\(totals.ticks) writes=\(totals.writesAcknowledged) reads=\(totals.readsCompleted) crashes=\(totals.crashes) membership-changes=\(totals.membershipChanges) elections=\(totals.leaderElections) snapshots-sent=\(totals.snapshotsSent) seconds=\((seconds * 100).rounded() / 100) violations=\(violations)")
        if violations > 0 { throw ExitCode(1) }
    }
}
