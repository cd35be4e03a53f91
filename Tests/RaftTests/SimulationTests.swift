import Raft
import RaftSimulation
import Testing

/// The seeded cluster simulator, run over a fixed set of seeds on every CI run, and proof that its
/// checkers find a deliberately broken rule within those same seeds.
@Suite("Simulation")
struct SimulationTests {
    /// The CI seed set: 500 seeds of 3-node clusters, 200 of 5, 100 of 7.
    static let seedCounts: [(nodes: Int, seeds: Int)] = [(3, 500), (5, 200), (7, 100)]

    @Test("Fixed seeds pass every safety and liveness check", arguments: [3, 5, 7])
    func fixedSeedsPass(nodes: Int) {
        let seeds = Self.seedCounts.first { $0.nodes == nodes }!.seeds
        var failures: [String] = []
        var writes = 0
        var reads = 0
        var crashes = 0
        var membershipChanges = 0
        var snapshots = 0
        for seed in 1...UInt64(seeds) {
            let result = Simulation.run(seed: seed, options: SimulationOptions(seed: seed, nodeCount: nodes))
            if let violation = result.violation {
                failures.append("seed \(seed): \(violation) (replay: swift run -c release raftsim --seed \(seed) --nodes \(nodes) --trace)")
            }
            writes += result.writesAcknowledged
            reads += result.readsCompleted
            crashes += result.crashes
            membershipChanges += result.membershipChanges
            snapshots += result.snapshotsSent
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        // The runs must have exercised what they claim to: a run without faults proves nothing.
        #expect(writes > seeds * 50)
        #expect(reads > seeds * 10)
        #expect(crashes > seeds)
        #expect(membershipChanges > seeds / 2)
        #expect(snapshots > seeds / 2)
    }

    @Test("One seed replays exactly")
    func seedsAreDeterministic() {
        let first = Simulation.run(seed: 42, options: SimulationOptions(seed: 42, nodeCount: 5))
        let second = Simulation.run(seed: 42, options: SimulationOptions(seed: 42, nodeCount: 5))
        #expect(first.steps == second.steps)
        #expect(first.committedIndex == second.committedIndex)
        #expect(first.writesAcknowledged == second.writesAcknowledged)
        #expect(first.messagesDelivered == second.messagesDelivered)
        let other = Simulation.run(seed: 43, options: SimulationOptions(seed: 43, nodeCount: 5))
        #expect(other.steps != first.steps)
    }

    /// Runs the CI's 3-node seeds with one rule broken and returns the first violation found.
    func firstViolation(breaking rule: (inout UnsafeTestingSwitches) -> Void, nodes: Int = 3) -> (seed: UInt64, violation: Violation)? {
        let seeds = Self.seedCounts.first { $0.nodes == nodes }!.seeds
        for seed in 1...UInt64(seeds) {
            var options = SimulationOptions(seed: seed, nodeCount: nodes)
            rule(&options.unsafeTesting)
            if let violation = Simulation.run(seed: seed, options: options).violation { return (seed, violation) }
        }
        return nil
    }

    @Test("Checker catches votes granted without the election restriction")
    func checkerCatchesSkippedElectionRestriction() throws {
        let found = try #require(firstViolation { $0.skipElectionRestriction = true })
        #expect(["leader completeness", "log matching", "committed entry changed", "state machine safety"].contains(found.violation.rule), "\(found.violation)")
    }

    @Test("Checker catches reads served without confirming leadership")
    func checkerCatchesUnconfirmedReadIndex() throws {
        let found = try #require(firstViolation { $0.skipReadIndexConfirmation = true })
        #expect(found.violation.rule == "linearizable read", "\(found.violation)")
    }
}
