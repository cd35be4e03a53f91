import Raft

/// A deterministic simulation of a Raft cluster: network, disk and clock faults all drawn from
/// one seed, with safety checked after every step and liveness checked once the faults stop.
///
/// One seed is one run: the same seed always produces the same events in the same order.
public final class Simulation {
    enum Event {
        case tick(NodeID)
        case deliver(Message)
        case syncComplete(NodeID, incarnation: UInt64)
        case client
        case fault
        case restart(NodeID)
        case crash(NodeID, incarnation: UInt64)
        case endFaults
        case livenessCheck
    }

    struct IndexTerm: Hashable {
        var index: UInt64
        var term: UInt64
    }

    struct DirectedLink: Hashable {
        var from: NodeID
        var to: NodeID
    }

    public let options: SimulationOptions
    var random: SeededGenerator
    /// Draws for failure hints (`reportPeerDown`), kept apart so that adding them did not change
    /// what every seed's main stream of faults and clients does.
    var hintRandom: SeededGenerator
    var nodes: [NodeID: SimulatedNode] = [:]
    var nodeOrder: [NodeID] = []
    var events = EventQueue<Event>()
    var now: UInt64 = 0
    var result: SimulationResult

    // Faults.
    var blockedLinks: Set<DirectedLink> = []
    var lossRate = 0.0
    var duplicationRate = 0.0
    var inLivenessPhase = false
    /// Entries per append message and messages in flight, drawn per seed: small batches make
    /// followers' match points move one entry at a time, which is where commit rules matter.
    var entriesPerMessage = 4
    var inflightMessages = 8
    /// How often a newly elected leader is crashed within a few milliseconds, drawn per seed.
    var youngLeaderCrashPercent: UInt64 = 20
    var livenessDeadline: UInt64 = 0
    var livenessSucceeded = false

    // What the checkers remember.
    var leaderOfTerm: [UInt64: NodeID] = [:]
    var entryRecord: [IndexTerm: (dataDigest: UInt64, previousTerm: UInt64)] = [:]
    /// `committedTerms[i]` is the term of the entry committed at index `i` (0 where unknown).
    var committedTerms: [UInt64] = [0]
    /// `committedInTerm[i]` is the lowest term in which any node was seen to hold index `i` committed:
    /// an upper bound on the term in which it was really committed.
    var committedInTerm: [UInt64] = [0]
    /// `appliedHashes[i]` is the state hash after applying index `i` (nil where unknown).
    var appliedHashes: [UInt64?] = [0]
    var pendingWrites: [UInt64: NodeID] = [:]
    var acknowledged: [IndexTerm] = []
    var maxAcknowledgedIndex: UInt64 = 0
    var pendingReads: [UInt64: (node: NodeID, requiredIndex: UInt64)] = [:]
    var nextValue: UInt64 = 1
    var nextReadContext: UInt64 = 1
    var livenessProbe: UInt64 = 0
    var livenessProbeIndex: UInt64 = 0
    var touched: [NodeID] = []
    /// Nodes whose removal was applied somewhere; they are shut down after the step.
    var removalsCommitted: [NodeID] = []

    public init(options: SimulationOptions) {
        precondition(options.nodeCount >= 1 && options.nodeCount <= 9, "nodeCount must be 1...9")
        self.options = options
        random = SeededGenerator(seed: options.seed)
        hintRandom = SeededGenerator(seed: options.seed ^ 0x5EED_D0A1_11C0_FFEE)
        result = SimulationResult(seed: options.seed, nodeCount: options.nodeCount)
        entriesPerMessage = [1, 1, 2, 4, 16][Int(random.next() % 5)]
        inflightMessages = [1, 2, 8, 64][Int(random.next() % 4)]
        youngLeaderCrashPercent = [0, 20, 50, 80][Int(random.next() % 4)]
        let voters = (1...UInt64(options.nodeCount)).map { $0 }
        for id in voters {
            let node = SimulatedNode(id: id, bootstrap: Membership(voters: voters))
            nodes[id] = node
            nodeOrder.append(id)
            start(node)
            // Nodes tick out of phase with one another, as real clocks do.
            events.push(.tick(id), at: random.next() % options.tickIntervalMicroseconds)
        }
        lossRate = Double(random.next() % 100) / 1000
        duplicationRate = Double(random.next() % 50) / 1000
        events.push(.client, at: 10_000)
        events.push(.fault, at: options.tickIntervalMicroseconds * 20)
        events.push(.endFaults, at: options.tickIntervalMicroseconds * UInt64(options.faultPhaseTicks))
    }

    /// Runs the seed to the end: the fault phase, then the liveness phase. Stops at the first violation.
    public func run() -> SimulationResult {
        let stepsMax = options.faultPhaseTicks * 2_000 + options.livenessTicksMax * 2_000
        while result.violation == nil && !livenessSucceeded, let (time, event) = events.pop() {
            now = time
            result.steps += 1
            touched.removeAll(keepingCapacity: true)
            handle(event)
            if result.violation == nil { checkAfterStep() }
            while let removed = removalsCommitted.popLast() { decommission(removed) }
            if result.steps >= stepsMax {
                violate("bounded run", "more than \(stepsMax) steps without finishing")
            }
        }
        if result.violation == nil && !livenessSucceeded {
            violate("liveness", "the event queue ran dry")
        }
        if result.violation == nil { checkAcknowledgedWritesSurvive() }
        result.committedIndex = UInt64(committedTerms.count - 1)
        return result
    }

    // MARK: Events

    private func handle(_ event: Event) {
        switch event {
        case .tick(let id):
            events.push(.tick(id), at: now + options.tickIntervalMicroseconds)
            guard let node = nodes[id], let raft = node.raft else { return }
            result.ticks += 1
            raft.tick()
            touch(node)
            process(node)
        case .deliver(let message):
            deliver(message)
        case .syncComplete(let id, let incarnation):
            guard let node = nodes[id], node.incarnation == incarnation, let ready = node.readyAwaitingSync else { return }
            node.readyAwaitingSync = nil
            node.durable = node.storage.state
            touch(node)
            complete(ready, on: node)
            process(node)
        case .client:
            guard !inLivenessPhase else { return }
            clientOperation()
            events.push(.client, at: now + 5_000 + random.next() % 60_000)
        case .fault:
            guard !inLivenessPhase else { return }
            injectFault()
            events.push(.fault, at: now + options.tickIntervalMicroseconds * (1 + random.next() % 6))
        case .crash(let id, let incarnation):
            guard !inLivenessPhase, let node = nodes[id], node.incarnation == incarnation, node.isAlive else { return }
            crash(node)
            events.push(.restart(id), at: now + options.tickIntervalMicroseconds * (1 + random.next() % 10))
        case .restart(let id):
            guard let node = nodes[id], !node.isAlive, !node.decommissioned else { return }
            start(node)
            touch(node)
            process(node)
        case .endFaults:
            beginLivenessPhase()
        case .livenessCheck:
            checkLiveness()
        }
    }

    private func touch(_ node: SimulatedNode) {
        touched.append(node.id)
    }

    // MARK: Nodes

    private func makeConfiguration(for node: SimulatedNode) -> Configuration {
        var configuration = Configuration(id: node.id)
        configuration.randomSeed = options.seed &+ node.incarnation &* 7919
        configuration.appliedIndex = node.durable.snapshot.metadata.index
        configuration.messageBytesMax = entriesPerMessage * (options.proposalBytes + Entry.headerBytes)
        configuration.inflightMessagesMax = inflightMessages
        configuration.inflightBytesMax = max(64, entriesPerMessage * inflightMessages) * (options.proposalBytes + Entry.headerBytes)
        configuration.uncommittedBytesMax = 256 * (options.proposalBytes + Entry.headerBytes)
        configuration.entryBytesMax = max(64, options.proposalBytes)
        configuration.learnerPromotionLagMax = 20
        configuration.unsafeTesting = options.unsafeTesting
        return configuration
    }

    private func start(_ node: SimulatedNode) {
        node.storage = MemoryStorage(state: node.durable)
        node.readyAwaitingSync = nil
        node.waitingReads = []
        let snapshot = node.durable.snapshot
        (node.appliedIndex, node.stateHash) = SimulatedNode.decodeSnapshotData(snapshot.data)
        if node.appliedIndex != snapshot.metadata.index { (node.appliedIndex, node.stateHash) = (snapshot.metadata.index, 0) }
        node.commitChecked = snapshot.metadata.index
        do {
            node.raft = try RaftNode(configuration: makeConfiguration(for: node), storage: node.storage)
        } catch {
            violate("restart", "node \(node.id) cannot start from its durable state: \(error)")
        }
    }

    private func crash(_ node: SimulatedNode) {
        guard node.isAlive else { return }
        node.raft = nil
        node.incarnation += 1
        node.readyAwaitingSync = nil
        node.waitingReads = []
        result.crashes += 1
        for (write, owner) in pendingWrites where owner == node.id { pendingWrites[write] = nil }
        for (context, read) in pendingReads where read.node == node.id { pendingReads[context] = nil }
        trace("crash n\(node.id)")
        // A real transport sees the crashed process's port refuse connections; tell some of the
        // survivors, as their reconnects would. Now and then one is told about a live node
        // instead (a wrong hint must cost at most an election, never safety).
        for other in aliveNodes() where hintRandom.next() % 2 == 0 {
            let wrong = hintRandom.next() % 8 == 0
            let down = wrong ? nodeOrder[Int(hintRandom.next() % UInt64(nodeOrder.count))] : node.id
            other.raft?.reportPeerDown(down)
            touch(other)
        }
    }

    /// Hands out `Ready`s until the node has nothing left or is waiting on its disk.
    func process(_ node: SimulatedNode) {
        var rounds = 0
        while result.violation == nil, let raft = node.raft, node.readyAwaitingSync == nil, raft.hasReady() {
            rounds += 1
            if rounds > 1_000 {
                violate("bounded ready loop", "node \(node.id) produced more than 1000 Ready in one step")
                return
            }
            let ready = raft.ready()
            // The leader's replication may go out before its own write is durable (thesis 10.2.1).
            for message in ready.messages { transmit(message) }
            if let snapshot = ready.snapshot { node.storage.applySnapshot(snapshot) }
            if !ready.entries.isEmpty {
                checkLogMatching(node: node, entries: ready.entries)
                node.storage.append(ready.entries)
            }
            if let hardState = ready.hardState { node.storage.setHardState(hardState) }
            if ready.mustSync {
                node.readyAwaitingSync = ready
                // fsync takes a while, sometimes much longer.
                let latency = random.next() % 100 < 5 ? 5_000 + random.next() % 30_000 : 100 + random.next() % 1_500
                events.push(.syncComplete(node.id, incarnation: node.incarnation), at: now + latency)
                return
            }
            complete(ready, on: node)
        }
    }

    /// The rest of a `Ready` once it is durable: send, apply, serve reads, advance.
    private func complete(_ ready: Ready, on node: SimulatedNode) {
        guard let raft = node.raft else { return }
        for message in ready.messagesAfterPersist { transmit(message) }
        if let snapshot = ready.snapshot { restoreStateMachine(node, from: snapshot) }
        for entry in ready.committedEntries {
            apply(entry, on: node)
            if result.violation != nil { return }
        }
        node.waitingReads += ready.readStates
        serveReads(on: node)
        raft.advance(ready)
        maybeSnapshot(node)
    }

    private func restoreStateMachine(_ node: SimulatedNode, from snapshot: Snapshot) {
        let (index, hash) = SimulatedNode.decodeSnapshotData(snapshot.data)
        guard index == snapshot.metadata.index else {
            violate("snapshot", "node \(node.id) got a snapshot whose data is for \(index), metadata \(snapshot.metadata.index)")
            return
        }
        if index < UInt64(appliedHashes.count), let recorded = appliedHashes[Int(index)], recorded != hash {
            violate("state machine safety", "snapshot at \(index) restored on node \(node.id) differs from the applied history")
            return
        }
        node.appliedIndex = index
        node.stateHash = hash
    }

    private func apply(_ entry: Entry, on node: SimulatedNode) {
        guard entry.index == node.appliedIndex + 1 else {
            violate("apply order", "node \(node.id) applied \(entry.index) after \(node.appliedIndex)")
            return
        }
        let hash = chainHash(node.stateHash, entry)
        let position = Int(entry.index)
        while appliedHashes.count <= position { appliedHashes.append(nil) }
        if let recorded = appliedHashes[position] {
            if recorded != hash {
                violate("state machine safety", "node \(node.id) applied a different entry at \(entry.index) (term \(entry.term)) than another node")
                return
            }
        } else {
            appliedHashes[position] = hash
        }
        node.appliedIndex = entry.index
        node.stateHash = hash
        // Whatever is applied was committed, even if the log is compacted before the step's checks run.
        recordCommitted(index: entry.index, term: entry.term, on: node, observedInTerm: node.raft?.term ?? entry.term)
        if entry.kind == .membershipChange, let change = MembershipChange.decode(entry.data), change.kind == .removeNode {
            removalsCommitted.append(change.node)
        }
        if entry.kind == .normal && entry.data.count >= 8 {
            let value = (0..<8).reduce(UInt64(0)) { $0 | UInt64(entry.data[$1]) << UInt64($1 * 8) }
            if pendingWrites[value] == node.id {
                pendingWrites[value] = nil
                acknowledged.append(IndexTerm(index: entry.index, term: entry.term))
                maxAcknowledgedIndex = max(maxAcknowledgedIndex, entry.index)
                result.writesAcknowledged += 1
                if value == livenessProbe { livenessProbeIndex = entry.index }
            }
        }
    }

    private func serveReads(on node: SimulatedNode) {
        guard !node.waitingReads.isEmpty else { return }
        var stillWaiting: [ReadState] = []
        for read in node.waitingReads {
            guard node.appliedIndex >= read.index else {
                stillWaiting.append(read)
                continue
            }
            guard let request = pendingReads[read.context], request.node == node.id else { continue }
            pendingReads[read.context] = nil
            // The read returns the state at the node's applied index: it must include every write
            // acknowledged before the read began.
            if node.appliedIndex < request.requiredIndex {
                violate("linearizable read", "read \(read.context) on node \(node.id) returned the state at \(node.appliedIndex), but a write at \(request.requiredIndex) was acknowledged before it began")
                return
            }
            result.readsCompleted += 1
        }
        node.waitingReads = stillWaiting
    }

    private func maybeSnapshot(_ node: SimulatedNode) {
        guard let raft = node.raft else { return }
        let snapshotIndex = node.storage.state.snapshot.metadata.index
        guard node.appliedIndex >= snapshotIndex + options.snapshotIntervalEntries,
              let membership = raft.membership(at: node.appliedIndex)
        else { return }
        do {
            try node.storage.createSnapshot(index: node.appliedIndex, membership: membership, data: node.snapshotData())
            let compactTo = node.appliedIndex - options.compactionMarginEntries
            if compactTo >= node.storage.firstIndex() { try node.storage.compact(upTo: compactTo) }
            // The snapshot file is fsynced before the log is truncated.
            node.durable = node.storage.state
        } catch {
            violate("snapshot", "node \(node.id) could not snapshot at \(node.appliedIndex): \(error)")
        }
    }

    // MARK: Network

    private func transmit(_ message: Message) {
        guard nodes[message.to] != nil else { return }
        if message.type == .snapshot { result.snapshotsSent += 1 }
        if blockedLinks.contains(DirectedLink(from: message.from, to: message.to)) || Double(random.next() % 10_000) / 10_000 < lossRate {
            dropped(message)
            return
        }
        events.push(.deliver(message), at: now + networkLatency())
        if Double(random.next() % 10_000) / 10_000 < duplicationRate {
            events.push(.deliver(message), at: now + networkLatency())
        }
    }

    private func networkLatency() -> UInt64 {
        // Mostly a LAN round trip; now and then a long stall, which also reorders messages.
        random.next() % 100 < 4 ? 20_000 + random.next() % 300_000 : 200 + random.next() % 2_000
    }

    private func dropped(_ message: Message) {
        result.messagesDropped += 1
        guard let sender = nodes[message.from], let raft = sender.raft else { return }
        // A transport learns that a stream broke; tell the core as a real one would.
        if message.type == .snapshot {
            raft.reportSnapshot(to: message.to, succeeded: false)
        } else if random.next() % 4 == 0 {
            raft.reportUnreachable(message.to)
        }
    }

    private func deliver(_ message: Message) {
        guard let receiver = nodes[message.to], let raft = receiver.raft,
              !blockedLinks.contains(DirectedLink(from: message.from, to: message.to))
        else {
            dropped(message)
            if let sender = nodes[message.from], sender.isAlive { touch(sender); process(sender) }
            return
        }
        result.messagesDelivered += 1
        raft.step(message)
        touch(receiver)
        process(receiver)
        if message.type == .snapshot, let sender = nodes[message.from], let senderRaft = sender.raft {
            senderRaft.reportSnapshot(to: message.to, succeeded: true)
            touch(sender)
            process(sender)
        }
    }

    // MARK: Clients

    private func currentLeader() -> SimulatedNode? {
        var best: SimulatedNode?
        for id in nodeOrder {
            guard let node = nodes[id], let raft = node.raft, raft.role == .leader else { continue }
            if best == nil || raft.term > best!.raft!.term { best = node }
        }
        return best
    }

    private func aliveNodes() -> [SimulatedNode] {
        nodeOrder.compactMap { nodes[$0] }.filter { $0.isAlive }
    }

    private func chooseClientNode() -> SimulatedNode? {
        if random.next() % 10 < 6, let leader = currentLeader() { return leader }
        let alive = aliveNodes()
        return alive.isEmpty ? nil : alive[Int(random.next() % UInt64(alive.count))]
    }

    private func proposalBytes(for value: UInt64) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(max(8, options.proposalBytes))
        for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
        while bytes.count < options.proposalBytes { bytes.append(UInt8(truncatingIfNeeded: value &+ UInt64(bytes.count))) }
        return bytes
    }

    @discardableResult
    private func write(on node: SimulatedNode) -> UInt64? {
        guard let raft = node.raft else { return nil }
        let value = nextValue
        nextValue += 1
        do {
            try raft.propose(proposalBytes(for: value))
            pendingWrites[value] = node.id
            trace("propose \(value) on n\(node.id)")
        } catch {
            return nil
        }
        touch(node)
        process(node)
        return value
    }

    private func clientOperation() {
        guard let node = chooseClientNode(), let raft = node.raft else { return }
        if random.next() % 4 == 0 {
            let context = nextReadContext
            nextReadContext += 1
            do {
                try raft.readIndex(context: context)
                pendingReads[context] = (node.id, maxAcknowledgedIndex)
            } catch {
                return
            }
            touch(node)
            process(node)
        } else {
            write(on: node)
        }
    }

    // MARK: Faults

    private func injectFault() {
        let alive = aliveNodes()
        let choice = random.next() % 20
        switch choice {
        case 0..<4:
            // Crash a node, the leader half of the time, and bring it back later.
            let victim = random.next() % 2 == 0 ? currentLeader() : (alive.isEmpty ? nil : alive[Int(random.next() % UInt64(alive.count))])
            if let victim, alive.count > 1 {
                crash(victim)
                events.push(.restart(victim.id), at: now + options.tickIntervalMicroseconds * (2 + random.next() % 30))
            }
        case 4..<7:
            // A symmetric partition into two sides.
            blockedLinks = []
            let members = nodeOrder.filter { nodes[$0]?.decommissioned == false }
            var side: [NodeID: Bool] = [:]
            for id in members { side[id] = random.next() % 2 == 0 }
            for from in members { for to in members where side[from] != side[to] { blockedLinks.insert(DirectedLink(from: from, to: to)) } }
            trace("partition \(members.filter { side[$0] == true }) | \(members.filter { side[$0] == false })")
        case 7..<9:
            // Asymmetric: some links fail in one direction only.
            let members = nodeOrder
            for _ in 0..<(1 + random.next() % 3) {
                let from = members[Int(random.next() % UInt64(members.count))]
                let to = members[Int(random.next() % UInt64(members.count))]
                if from != to { blockedLinks.insert(DirectedLink(from: from, to: to)) }
            }
        case 9..<12:
            blockedLinks = []
            trace("heal")
        case 12:
            lossRate = Double(random.next() % 300) / 1000
            duplicationRate = Double(random.next() % 100) / 1000
        case 13..<15:
            addLearner()
        case 15:
            promoteLearner()
        case 16:
            removeMember()
        case 17..<19:
            transferLeadership()
        default:
            break
        }
    }

    private func addLearner() {
        guard let leader = currentLeader(), let raft = leader.raft, nodeOrder.count < options.nodeCount + 2 else { return }
        let newID = (nodeOrder.max() ?? 0) + 1
        do {
            try raft.proposeMembershipChange(MembershipChange(.addLearner, node: newID))
        } catch {
            return
        }
        let node = SimulatedNode(id: newID, bootstrap: Membership())
        nodes[newID] = node
        nodeOrder.append(newID)
        start(node)
        events.push(.tick(newID), at: now + random.next() % options.tickIntervalMicroseconds)
        result.membershipChanges += 1
        trace("add learner n\(newID)")
        touch(leader)
        process(leader)
    }

    private func promoteLearner() {
        guard let leader = currentLeader(), let raft = leader.raft, let learner = raft.membership.learners.first else { return }
        guard (try? raft.proposeMembershipChange(MembershipChange(.promoteLearner, node: learner))) != nil else { return }
        result.membershipChanges += 1
        trace("promote n\(learner)")
        touch(leader)
        process(leader)
    }

    private func removeMember() {
        guard let leader = currentLeader(), let raft = leader.raft else { return }
        let voters = raft.membership.voters
        let candidates = raft.membership.learners + (voters.count > max(3, options.nodeCount) ? voters : [])
        guard !candidates.isEmpty else { return }
        let target = candidates[Int(random.next() % UInt64(candidates.count))]
        guard (try? raft.proposeMembershipChange(MembershipChange(.removeNode, node: target))) != nil else { return }
        result.membershipChanges += 1
        trace("remove n\(target)")
        touch(leader)
        process(leader)
    }

    private func transferLeadership() {
        guard let leader = currentLeader(), let raft = leader.raft else { return }
        let others = raft.membership.voters.filter { $0 != leader.id }
        guard !others.isEmpty else { return }
        let target = others[Int(random.next() % UInt64(others.count))]
        guard (try? raft.transferLeadership(to: target)) != nil else { return }
        trace("transfer n\(leader.id) -> n\(target)")
        touch(leader)
        process(leader)
    }

    /// Shuts down a node once its removal is committed, as an operator would.
    private func decommission(_ id: NodeID) {
        guard let node = nodes[id], !node.decommissioned else { return }
        crash(node)
        node.decommissioned = true
        trace("decommission n\(id)")
    }

    // MARK: Liveness

    private func beginLivenessPhase() {
        inLivenessPhase = true
        blockedLinks = []
        lossRate = 0
        duplicationRate = 0
        for id in nodeOrder {
            guard let node = nodes[id], !node.isAlive, !node.decommissioned else { continue }
            start(node)
            touch(node)
            process(node)
        }
        livenessDeadline = now + options.tickIntervalMicroseconds * UInt64(options.livenessTicksMax)
        events.push(.livenessCheck, at: now + options.tickIntervalMicroseconds)
        trace("liveness phase")
    }

    private func checkLiveness() {
        if let leader = currentLeader(), let raft = leader.raft {
            if livenessProbeIndex != 0 {
                let members = raft.membership.members.compactMap { nodes[$0] }.filter { !$0.decommissioned }
                let target = max(livenessProbeIndex, maxAcknowledgedIndex)
                if members.allSatisfy({ $0.isAlive && $0.appliedIndex >= target }) {
                    livenessSucceeded = true
                    return
                }
            } else if livenessProbe == 0 || pendingWrites[livenessProbe] == nil {
                if let value = write(on: leader) { livenessProbe = value }
            }
        }
        if now >= livenessDeadline {
            let states = nodeOrder.compactMap { nodes[$0] }.map { node in
                "n\(node.id)\(node.decommissioned ? "(gone)" : "") role=\(node.raft.map { "\($0.role)" } ?? "down") term=\(node.raft?.term ?? 0) commit=\(node.raft?.commitIndex ?? 0) applied=\(node.appliedIndex) members=\(node.raft.map { "\($0.membership)" } ?? "")"
            }
            violate("liveness", "no leader committed a new entry on every member within \(options.livenessTicksMax) ticks after the faults stopped: \(states.joined(separator: "; "))")
            return
        }
        events.push(.livenessCheck, at: now + options.tickIntervalMicroseconds)
    }

    // MARK: Checks

    private func checkAfterStep() {
        for id in touched {
            guard let node = nodes[id], let raft = node.raft else { continue }
            // Election safety: at most one leader per term.
            if raft.role == .leader {
                if let existing = leaderOfTerm[raft.term], existing != id {
                    violate("election safety", "nodes \(existing) and \(id) are both leader in term \(raft.term)")
                    return
                }
                if leaderOfTerm[raft.term] == nil {
                    result.leaderElections += 1
                    // Leaders that die young, before their own entries spread, are what paper
                    // Figure 8 is about: crash some new leaders within a few milliseconds.
                    if !inLivenessPhase && random.next() % 100 < youngLeaderCrashPercent {
                        events.push(.crash(id, incarnation: node.incarnation), at: now + random.next() % 20_000)
                    }
                }
                leaderOfTerm[raft.term] = id
            }
            recordCommitted(node, raft)
            if result.violation != nil { return }
            if raft.role == .leader && node.leaderCheckedTerm != raft.term {
                node.leaderCheckedTerm = raft.term
                checkLeaderCompleteness(node, raft)
                if result.violation != nil { return }
            }
        }
    }

    private func recordCommitted(_ node: SimulatedNode, _ raft: RaftNode<MemoryStorage>) {
        let commit = raft.commitIndex
        guard commit > node.commitChecked else { return }
        for index in (node.commitChecked + 1)...commit {
            guard let term = raft.term(at: index) else { continue }
            recordCommitted(index: index, term: term, on: node, observedInTerm: raft.term)
            if result.violation != nil { return }
        }
        node.commitChecked = commit
    }

    private func recordCommitted(index: UInt64, term: UInt64, on node: SimulatedNode, observedInTerm: UInt64) {
        let position = Int(index)
        while committedTerms.count <= position { committedTerms.append(0) }
        while committedInTerm.count <= position { committedInTerm.append(UInt64.max) }
        committedInTerm[position] = min(committedInTerm[position], observedInTerm)
        if committedTerms[position] == 0 {
            committedTerms[position] = term
        } else if committedTerms[position] != term {
            violate("committed entry changed", "node \(node.id) has term \(term) committed at \(index), another node committed term \(committedTerms[position])")
        }
    }

    private func checkLeaderCompleteness(_ node: SimulatedNode, _ raft: RaftNode<MemoryStorage>) {
        let firstHeld = raft.firstIndex - 1
        for position in committedTerms.indices.dropFirst() where UInt64(position) >= firstHeld {
            let expected = committedTerms[position]
            // Leader completeness binds leaders of terms after the one the entry was committed in.
            guard expected != 0, committedInTerm[position] < raft.term else { continue }
            let actual = raft.term(at: UInt64(position))
            if actual != expected {
                violate("leader completeness", "node \(node.id) leads term \(raft.term) but holds \(actual.map { "term \($0)" } ?? "nothing") at \(position), where term \(expected) was committed")
                return
            }
        }
    }

    private func checkLogMatching(node: SimulatedNode, entries: [Entry]) {
        var previousTerm: UInt64? = try? node.storage.term(at: entries[0].index - 1)
        if entries[0].index - 1 > node.storage.lastIndex() { previousTerm = nil }
        for entry in entries {
            let key = IndexTerm(index: entry.index, term: entry.term)
            let entryDigest = digest(entry.data) ^ UInt64(entry.kind.rawValue)
            if let recorded = entryRecord[key] {
                if recorded.dataDigest != entryDigest {
                    violate("log matching", "node \(node.id) holds a different entry at index \(entry.index) term \(entry.term)")
                    return
                }
                if let previousTerm, recorded.previousTerm != previousTerm {
                    violate("log matching", "node \(node.id) has term \(previousTerm) before (\(entry.index), \(entry.term)), another node has \(recorded.previousTerm)")
                    return
                }
            } else if let previousTerm {
                entryRecord[key] = (entryDigest, previousTerm)
            }
            previousTerm = entry.term
        }
    }

    private func checkAcknowledgedWritesSurvive() {
        let membership = currentLeader()?.raft?.membership ?? Membership()
        let members = membership.members.compactMap { nodes[$0] }
        for write in acknowledged {
            let position = Int(write.index)
            guard position < committedTerms.count, committedTerms[position] == write.term else {
                violate("acknowledged write lost", "write acknowledged at \(write.index) term \(write.term) is not in the committed log")
                return
            }
            for node in members where node.appliedIndex < write.index {
                violate("acknowledged write lost", "node \(node.id) applied only \(node.appliedIndex), below acknowledged write \(write.index)")
                return
            }
        }
    }

    func violate(_ rule: String, _ detail: String) {
        guard result.violation == nil else { return }
        result.violation = Violation(step: result.steps, rule: rule, detail: detail)
    }

    private func trace(_ line: @autoclosure () -> String) {
        guard options.trace else { return }
        result.traceLines.append("t=\(now / 1000)ms \(line())")
    }
}

extension Simulation {
    /// Runs one seed with `options` (its seed replaced) and returns the result.
    public static func run(seed: UInt64, options base: SimulationOptions) -> SimulationResult {
        var options = base
        options.seed = seed
        return Simulation(options: options).run()
    }
}
