import Raft

/// Measures the Raft core alone: a 3-node cluster in one thread, storage in memory, messages
/// handed over directly, no I/O. What is left is the cost of the algorithm and its bookkeeping.
public struct CoreBenchmark {
    public struct Result: Sendable {
        public var entries: Int
        public var proposalsPerRound: Int
        public var seconds: Double
        public var entriesPerSecond: Double { Double(entries) / seconds }
        public var messages: Int
    }

    public var nodeCount = 3
    public var proposalBytes = 256
    public var proposalsPerRound = 64
    public var entries = 200_000

    public init() {}

    public func run() throws -> Result {
        let voters = (1...UInt64(nodeCount)).map { $0 }
        var storages: [NodeID: MemoryStorage] = [:]
        var nodes: [NodeID: RaftNode<MemoryStorage>] = [:]
        for id in voters {
            let storage = MemoryStorage(bootstrap: Membership(voters: voters))
            var configuration = Configuration(id: id)
            configuration.randomSeed = id
            storages[id] = storage
            nodes[id] = try RaftNode(configuration: configuration, storage: storage)
        }
        var applied: [NodeID: UInt64] = [:]
        var inbox: [Message] = []
        var messages = 0

        func pump() {
            var quiet = false
            while !quiet {
                quiet = true
                for id in voters {
                    let node = nodes[id]!
                    while node.hasReady() {
                        quiet = false
                        let ready = node.ready()
                        let storage = storages[id]!
                        if let snapshot = ready.snapshot { storage.applySnapshot(snapshot) }
                        storage.append(ready.entries)
                        if let hardState = ready.hardState { storage.setHardState(hardState) }
                        inbox += ready.messages
                        inbox += ready.messagesAfterPersist
                        if let last = ready.committedEntries.last { applied[id] = last.index }
                        node.advance(ready)
                    }
                }
                if !inbox.isEmpty {
                    quiet = false
                    let delivering = inbox
                    inbox.removeAll(keepingCapacity: true)
                    messages += delivering.count
                    for message in delivering { nodes[message.to]?.step(message) }
                }
            }
        }

        func compact() throws {
            for id in voters {
                let storage = storages[id]!
                let index = applied[id] ?? 0
                guard index > storage.firstIndex() + 20_000 else { continue }
                try storage.createSnapshot(index: index, membership: nodes[id]!.membership(at: index)!, data: [])
                try storage.compact(upTo: index - 1_000)
            }
        }

        let leader = nodes[1]!
        leader.campaign()
        pump()
        precondition(leader.role == .leader, "node 1 did not win the benchmark's election")
        let payload = [UInt8](repeating: 0xAB, count: proposalBytes)
        let target = leader.lastIndex + UInt64(entries)
        let started = ContinuousClock.now
        messages = 0
        while applied[1, default: 0] < target {
            let remaining = Int(target - leader.lastIndex)
            for _ in 0..<min(proposalsPerRound, remaining) {
                try leader.propose(payload)
            }
            pump()
            try compact()
        }
        let elapsed = ContinuousClock.now - started
        let seconds = elapsed.inSeconds
        for id in voters { precondition(applied[id] == target, "node \(id) applied \(applied[id] ?? 0), expected \(target)") }
        return Result(entries: entries, proposalsPerRound: proposalsPerRound, seconds: seconds, messages: messages)
    }
}

extension Duration {
    /// The duration in seconds, as a floating-point number (for rates in benchmark reports).
    public var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
