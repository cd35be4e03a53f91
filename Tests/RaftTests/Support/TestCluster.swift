@testable import Raft
import Testing

/// A synchronous, deterministic in-memory cluster of ``RaftNode``s for unit tests.
///
/// Every node runs over a ``MemoryStorage``; `stabilize()` follows the `Ready` contract
/// (persist snapshot, entries, hard state; send; apply; advance) and delivers messages until
/// the cluster is quiet. The network drops messages according to `isolate`, `cut`, `drop`
/// and arbitrary filters; every message sent, delivered and dropped is recorded.
final class TestCluster {
    typealias Node = RaftNode<MemoryStorage>

    private(set) var nodes: [NodeID: Node] = [:]
    private(set) var storages: [NodeID: MemoryStorage] = [:]
    private(set) var configurations: [NodeID: Configuration] = [:]
    private(set) var crashed: Set<NodeID> = []

    /// Entries handed out as committed, per node, in order (entries folded into a received snapshot are not listed).
    private(set) var applied: [NodeID: [Entry]] = [:]
    /// The highest index applied per node (a restored snapshot counts).
    private(set) var lastApplied: [NodeID: UInt64] = [:]
    /// Snapshots restored per node.
    private(set) var restoredSnapshots: [NodeID: [SnapshotMetadata]] = [:]
    private(set) var readStates: [NodeID: [ReadState]] = [:]
    private(set) var softStates: [NodeID: [SoftState]] = [:]

    /// Every message handed out by a `Ready`, delivered or not.
    private(set) var sent: [Message] = []
    private(set) var delivered: [Message] = []
    private(set) var dropped: [Message] = []
    private var queue: [Message] = []

    private var isolated: Set<NodeID> = []
    private var cuts: Set<[NodeID]> = []
    private var droppedTypes: Set<MessageType> = []
    private var filters: [(Message) -> Bool] = []

    let seed: UInt64
    private let configure: (inout Configuration) -> Void

    // MARK: Construction

    /// A new cluster of voters `1...voters` (plus `learners`), all bootstrapped with the same membership.
    convenience init(
        voters: Int, learners: [NodeID] = [], seed: UInt64 = 1,
        configure: @escaping (inout Configuration) -> Void = { _ in }
    ) {
        let membership = Membership(voters: (1...UInt64(voters)).map { $0 }, learners: learners)
        var storages: [NodeID: MemoryStorage] = [:]
        for id in membership.members { storages[id] = MemoryStorage(bootstrap: membership) }
        self.init(storages: storages, seed: seed, configure: configure)
    }

    /// A cluster over prepared storages (for example the logs of a figure of the paper).
    init(storages: [NodeID: MemoryStorage], seed: UInt64 = 1, configure: @escaping (inout Configuration) -> Void = { _ in }) {
        self.seed = seed
        self.configure = configure
        for id in storages.keys.sorted() { addNode(id, storage: storages[id]!) }
    }

    static func defaultConfiguration(id: NodeID, seed: UInt64) -> Configuration {
        var configuration = Configuration(id: id)
        configuration.electionTimeoutTicks = 10
        configuration.heartbeatIntervalTicks = 1
        configuration.randomSeed = seed
        return configuration
    }

    /// Starts a node over `storage` (for example a node joining the cluster).
    func addNode(_ id: NodeID, storage: MemoryStorage, configure extra: (inout Configuration) -> Void = { _ in }) {
        var configuration = TestCluster.defaultConfiguration(id: id, seed: seed)
        configure(&configuration)
        extra(&configuration)
        configurations[id] = configuration
        storages[id] = storage
        nodes[id] = try! Node(configuration: configuration, storage: storage)
        if applied[id] == nil { applied[id] = [] }
        if lastApplied[id] == nil { lastApplied[id] = 0 }
        crashed.remove(id)
    }

    /// A storage holding entries with the given terms at indexes 1, 2, ... and the given hard state,
    /// for a cluster whose membership is `membership` from the start (recorded in the metadata of an
    /// index-0 snapshot, so that the figures of the paper keep their indexes).
    static func storage(membership: Membership, terms: [UInt64], hardState: HardState = HardState()) -> MemoryStorage {
        var state = MemoryStorage().state
        state.snapshot.metadata.membership = membership
        state.hardState = hardState
        let storage = MemoryStorage(state: state)
        storage.append(terms.enumerated().map { Entry(term: $0.element, index: UInt64($0.offset + 1)) })
        return storage
    }

    subscript(_ id: NodeID) -> Node { nodes[id]! }

    var ids: [NodeID] { nodes.keys.sorted() }
    var liveIDs: [NodeID] { ids.filter { !crashed.contains($0) } }

    /// The live nodes that believe they are leader.
    var leaders: [NodeID] { liveIDs.filter { nodes[$0]!.role == .leader } }

    // MARK: Network faults

    func isolate(_ id: NodeID) { isolated.insert(id) }
    func cut(_ a: NodeID, _ b: NodeID) { cuts.insert([min(a, b), max(a, b)]) }
    func drop(_ type: MessageType) { droppedTypes.insert(type) }
    /// Drops every message for which `predicate` is true (until `heal()`).
    func drop(where predicate: @escaping (Message) -> Bool) { filters.append(predicate) }
    func heal() {
        isolated = []
        cuts = []
        droppedTypes = []
        filters = []
    }

    private func isDropped(_ message: Message) -> Bool {
        if crashed.contains(message.to) || nodes[message.to] == nil { return true }
        if isolated.contains(message.from) || isolated.contains(message.to) { return true }
        if cuts.contains([min(message.from, message.to), max(message.from, message.to)]) { return true }
        if droppedTypes.contains(message.type) { return true }
        return filters.contains { $0(message) }
    }

    // MARK: Crashes

    func crash(_ id: NodeID) {
        crashed.insert(id)
        queue.removeAll { $0.to == id || $0.from == id }
    }

    /// Rebuilds the node from a copy of what its storage holds, as after a process restart.
    func restart(_ id: NodeID) {
        let storage = MemoryStorage(state: storages[id]!.state)
        let applied = lastApplied[id] ?? 0
        addNode(id, storage: storage) { $0.appliedIndex = applied }
    }

    // MARK: Driving

    /// Handles the `Ready` of every live node that has one; returns whether any had one.
    @discardableResult
    func processReadies(sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        var any = false
        for id in liveIDs {
            let node = nodes[id]!
            guard node.hasReady() else { continue }
            any = true
            let ready = node.ready()
            let storage = storages[id]!
            if let snapshot = ready.snapshot { storage.applySnapshot(snapshot) }
            storage.append(ready.entries)
            if let hardState = ready.hardState {
                if hardState.commit > storage.lastIndex() {
                    Issue.record("node \(id): hard state commit \(hardState.commit) beyond persisted last index \(storage.lastIndex())", sourceLocation: sourceLocation)
                }
                storage.setHardState(hardState)
            }
            for message in ready.allMessages {
                if message.from != id { Issue.record("node \(id) sent a message from \(message.from)", sourceLocation: sourceLocation) }
            }
            sent += ready.allMessages
            queue += ready.allMessages
            if let soft = ready.softState { softStates[id, default: []].append(soft) }
            if let snapshot = ready.snapshot {
                restoredSnapshots[id, default: []].append(snapshot.metadata)
                lastApplied[id] = max(lastApplied[id] ?? 0, snapshot.metadata.index)
            }
            for entry in ready.committedEntries {
                let expected = (lastApplied[id] ?? 0) + 1
                if entry.index != expected {
                    Issue.record("node \(id) applied index \(entry.index), expected \(expected)", sourceLocation: sourceLocation)
                }
                if (try? storage.term(at: entry.index)) != entry.term {
                    Issue.record("node \(id) applied entry \(entry.index)/\(entry.term) that is not persisted", sourceLocation: sourceLocation)
                }
                lastApplied[id] = entry.index
                applied[id, default: []].append(entry)
            }
            readStates[id, default: []] += ready.readStates
            node.advance(ready)
        }
        return any
    }

    /// Delivers (or drops) every queued message once; returns whether there were any.
    @discardableResult
    func deliverPending() -> Bool {
        guard !queue.isEmpty else { return false }
        let batch = queue
        queue = []
        for message in batch {
            if isDropped(message) {
                dropped.append(message)
            } else {
                delivered.append(message)
                nodes[message.to]!.step(message)
            }
        }
        return true
    }

    /// Runs readies and deliveries until nothing is left to do.
    func stabilize(limit: Int = 10_000, sourceLocation: SourceLocation = #_sourceLocation) {
        for _ in 0..<limit {
            let handled = processReadies(sourceLocation: sourceLocation)
            let deliveredAny = deliverPending()
            if !handled && !deliveredAny { return }
        }
        Issue.record("cluster did not stabilize within \(limit) rounds", sourceLocation: sourceLocation)
    }

    /// Ticks one node `times` times, stabilizing after each tick.
    func tick(_ id: NodeID, times: Int = 1, stabilizing: Bool = true) {
        for _ in 0..<times {
            nodes[id]!.tick()
            if stabilizing { stabilize() }
        }
    }

    /// Ticks every live node once per round, stabilizing after each round.
    func tickAll(times: Int = 1) {
        for _ in 0..<times {
            for id in liveIDs { nodes[id]!.tick() }
            stabilize()
        }
    }

    /// Ticks every live node until `condition` holds; false if it never does within `maxTicks`.
    @discardableResult
    func tickAll(until condition: () -> Bool, maxTicks: Int = 500) -> Bool {
        for _ in 0..<maxTicks {
            if condition() { return true }
            tickAll()
        }
        return condition()
    }

    /// Makes `id` campaign and stabilizes.
    func elect(_ id: NodeID) {
        nodes[id]!.campaign()
        stabilize()
    }

    /// Proposes `data` at `id`, which must accept it, and stabilizes.
    @discardableResult
    func propose(_ id: NodeID, _ data: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> ProposalOutcome? {
        do {
            let outcome = try nodes[id]!.propose(data)
            stabilize(sourceLocation: sourceLocation)
            return outcome
        } catch {
            Issue.record("proposal at node \(id) refused: \(error)", sourceLocation: sourceLocation)
            return nil
        }
    }

    // MARK: Inspection

    /// The terms of the node's log from index 1 to its last index (0 where compacted).
    func logTerms(_ id: NodeID) -> [UInt64] {
        let node = nodes[id]!
        guard node.lastIndex > 0 else { return [] }
        return (1...node.lastIndex).map { node.term(at: $0) ?? 0 }
    }

    /// The terms of the node's persisted log from index 1.
    func storedTerms(_ id: NodeID) -> [UInt64] {
        let storage = storages[id]!
        guard storage.lastIndex() > 0 else { return [] }
        return (1...storage.lastIndex()).map { (try? storage.term(at: $0)) ?? 0 }
    }

    func sent(_ type: MessageType, from: NodeID? = nil, to: NodeID? = nil) -> [Message] {
        sent.filter { $0.type == type && (from == nil || $0.from == from) && (to == nil || $0.to == to) }
    }

    func delivered(_ type: MessageType, from: NodeID? = nil, to: NodeID? = nil) -> [Message] {
        delivered.filter { $0.type == type && (from == nil || $0.from == from) && (to == nil || $0.to == to) }
    }

    func appliedData(_ id: NodeID) -> [[UInt8]] {
        (applied[id] ?? []).filter { $0.kind == .normal && !$0.data.isEmpty }.map(\.data)
    }

    func clearRecords() {
        sent = []
        delivered = []
        dropped = []
    }
}
