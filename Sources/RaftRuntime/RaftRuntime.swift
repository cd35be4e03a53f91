import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Raft
import ServiceLifecycle

/// A running, durable, networked Raft member: the shell around ``RaftNode``.
///
/// It owns the durable log (``DiskStorage``), the peer transport, the tick timer, and the loop
/// that handles each `Ready` in the order the contract requires: the leader's messages go out
/// first (its fsync overlaps their sending), then the `Ready` is written and fsynced once (all the
/// proposals that arrived meanwhile share that fsync), then the messages that promise durability,
/// then committed entries are applied and waiting callers answered, then `advance`.
///
/// The actor runs on an event loop thread of its own (its executor), which also carries the peer
/// connections. Inputs from other threads (proposals, reads, peer messages) wait in a locked
/// ``Inbox``; the first one in an empty inbox schedules one turn of the loop, which takes all that
/// arrived meanwhile into the next `Ready`. A turn runs to the end without suspending: the
/// fdatasync happens on this thread, as etcd's Raft loop does, so a request crosses no task or
/// thread boundary between its connection and the disk; what arrives during an fsync waits in the
/// inbox (or the peer sockets) and shares the next one. Committed entries are applied on an apply
/// thread, in log order, while the loop goes on (small batches with nothing queued, inline).
public actor RaftRuntime: Service {
    public nonisolated let id: NodeID
    /// Term, leader and role as of the last Ready, readable without entering the actor (whose
    /// turns include fsyncs): for response headers and routing decisions, not for safety.
    public nonisolated let observed = NIOLockedValueBox(Observed())

    public struct Observed: Sendable, Hashable {
        public var term: UInt64 = 0
        public var leader: NodeID = noNode
        public var isLeader = false
    }
    public nonisolated let configuration: RuntimeConfiguration

    /// Whether `node` is this member or a peer the transport knows, i.e. a member of the
    /// cluster as this member last applied it: certificates bound to other members are refused.
    public nonisolated func knowsMember(_ node: NodeID) -> Bool {
        node == id || transport.knowsPeer(node)
    }
    /// The thread this actor runs on, and its peer connections' event loop.
    nonisolated let loop: any EventLoop
    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.executor.asUnownedSerialExecutor() }
    /// Event loops for runtimes, one per runtime (shared round-robin when a process, such as a
    /// test, runs several). Never shut down, like NIO's singletons.
    static let loops = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
    let logger: Logger
    let stateMachine: any StateMachine
    let transport: PeerTransport
    nonisolated let inbox: Inbox
    /// Errors that end the loop, for ``run()`` to throw.
    let failures: AsyncStream<any Error>
    let failureContinuation: AsyncStream<any Error>.Continuation

    var storage: DiskStorage?
    var raft: RaftNode<DiskStorage>?
    var appliedIndex: UInt64 = 0
    /// Replicated peer addresses (carried in snapshots, updated by membership entries).
    var registry: [NodeID: PeerAddress] = [:]
    var stopped = false
    /// Set when the loop failed (see ``fail(_:)``): no more turns.
    var failed = false
    var started = false
    var ticker: RepeatedTask?
    /// Runs the state machine's work (apply, restore, persist) in log order off the loop, so that
    /// a round's fsync overlaps the apply of what earlier rounds committed (etcd's apply loop).
    let applier = NIOThreadPool(numberOfThreads: 1)
    /// Jobs queued on `applier` and not yet answered (apply batches and snapshot syncs).
    var applyJobsInFlight = 0
    /// Request numbers start at a random point each time the process starts: entries a previous
    /// incarnation proposed may still be applied after a restart, and must never be taken for the
    /// answer to a new caller's request.
    var nextRequest = UInt64.random(in: 1...(UInt64.max >> 1))
    var tickCount: UInt64 = 0

    struct Waiter {
        var complete: @Sendable (Result<AppliedResult, any Error>) -> Void
        var deadlineTick: UInt64
        /// Set once the leader assigned the entry a place in its log.
        var index: UInt64 = 0
        var term: UInt64 = 0
    }

    var proposals: [UInt64: Waiter] = [:]
    /// Membership changes, keyed by their log index.
    var membershipChanges: [UInt64: Waiter] = [:]
    typealias ReadWaiter = (complete: @Sendable (Result<Void, any Error>) -> Void, deadlineTick: UInt64)
    /// Reads waiting for their ReadIndex round, by the round's request number. One round is in
    /// flight at a time; reads arriving meanwhile wait in `readQueue` and share the next round
    /// (one heartbeat exchange for all of them, as etcd's read loop does).
    var reads: [UInt64: [ReadWaiter]] = [:]
    var readQueue: [ReadWaiter] = []
    var readRound: (request: UInt64, startTick: UInt64)?
    /// The leader as of the last soft state, to notice when a follower loses it.
    var knownLeader: NodeID = 0
    /// Read indexes granted and waiting for the state machine to reach them.
    var readsAwaitingApply: [ReadState] = []
    var transfers: [(target: NodeID, continuation: CheckedContinuation<Void, any Error>, deadlineTick: UInt64)] = []

    public init(configuration: RuntimeConfiguration, stateMachine: any StateMachine, logger: Logger) {
        id = configuration.id
        self.configuration = configuration
        self.stateMachine = stateMachine
        self.logger = logger
        let loop = Self.loops.next()
        self.loop = loop
        let inbox = Inbox(eventsMax: configuration.inboundQueueMax)
        self.inbox = inbox
        let receiver = configuration.id
        let spool = SnapshotSpool(directory: "\(configuration.dataDirectory)/transfer")
        transport = PeerTransport(id: configuration.id, group: loop, limits: configuration.transport, security: configuration.peerSecurity,
                                  spool: spool, logger: logger) { event in
            // Checked here, before the inbox, so that a message no correct peer sends never
            // reaches Raft (where a snapshot would be made durable before it is restored).
            var event = event
            var message: Message?
            var imageFile: String?
            switch event {
            case .message(let inline): message = inline
            case .snapshot(let streamed, let file): (message, imageFile) = (streamed, file)
            default: break
            }
            if let message {
                switch RaftRuntime.admit(message, imageFile: imageFile, receiver: receiver, stateMachine: stateMachine, spool: spool) {
                case .success(let admitted):
                    event = .message(admitted)
                case .failure(let refusal):
                    logger.warning("dropping invalid peer message", metadata: [
                        "from": "\(message.from)", "type": "\(message.type)", "term": "\(message.term)", "reason": "\(refusal.reason)",
                    ])
                    return
                }
            }
            if !inbox.deliver(event), case .message(let dropped) = event, let file = RuntimeSnapshot.spooledFile(of: dropped) {
                SnapshotSpool.remove(file)
            }
        }
        (failures, failureContinuation) = AsyncStream<any Error>.makeStream()
        inbox.owner = self
    }

    // MARK: Service

    /// Opens the log, starts listening and serves until cancelled or shut down gracefully (or
    /// until the loop fails, whose error it throws).
    public func run() async throws {
        applier.start()
        try start()
        let port = try await transport.listen(host: configuration.listen.host, port: configuration.listen.port)
        logger.info("raft member started", metadata: ["id": "\(id)", "peer-port": "\(port)", "term": "\(raft?.term ?? 0)", "applied": "\(appliedIndex)"])
        let interval = TimeAmount.milliseconds(Int64(configuration.heartbeatIntervalMs))
        ticker = loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            self.assumeIsolated { runtime in
                runtime.tick()
                runtime.turn()
            }
        }
        inbox.wake()
        let failures = self.failures
        do {
            try await cancelWhenGracefulShutdown {
                for await error in failures { throw error }
                throw CancellationError()
            }
        } catch is CancellationError {
            // Graceful shutdown.
        } catch {
            await shutdown()
            throw error
        }
        await shutdown()
    }

    private func shutdown() async {
        guard !stopped else { return }
        stopped = true
        ticker?.cancel()
        ticker = nil
        failAll(RuntimeError.stopped)
        await transport.shutdown()
        // Lets a job in flight finish before the log closes (queued ones are dropped).
        try? await applier.shutdownGracefully()
        storage?.close()
        raft = nil
        storage = nil
    }

    /// Ends the loop after an error it cannot go on from (the disk failed): ``run()`` throws it.
    private func fail(_ error: any Error) {
        guard !stopped, !failed else { return }
        logger.error("raft member failed: \(error)")
        failed = true
        ticker?.cancel()
        ticker = nil
        failAll(error)
        failureContinuation.yield(error)
    }

    private func failAll(_ error: any Error) {
        for submission in inbox.close() { submission.fail(error) }
        for waiter in proposals.values { waiter.complete(.failure(error)) }
        for waiter in membershipChanges.values { waiter.complete(.failure(error)) }
        for read in reads.values.joined() + readQueue { read.complete(.failure(error)) }
        for transfer in transfers { transfer.continuation.resume(throwing: error) }
        proposals = [:]
        membershipChanges = [:]
        reads = [:]
        readQueue = []
        readRound = nil
        readsAwaitingApply = []
        transfers = []
    }
    // MARK: Start-up

    private func start() throws {
        guard !started else { return }
        started = true
        try configuration.validate()
        let bootstrap = configuration.bootstrap ? Membership(voters: Array(configuration.peers.keys)) : Membership()
        let storage = try DiskStorage.open(directory: configuration.dataDirectory, bootstrap: bootstrap)
        self.storage = storage
        registry = configuration.peers
        let snapshot = try storage.snapshot()
        var smIndex = stateMachine.durableAppliedIndex
        if !snapshot.isEmpty {
            let (snapshotRegistry, content) = try RuntimeSnapshot.decode(snapshot.data)
            registry.merge(snapshotRegistry) { _, fromSnapshot in fromSnapshot }
            switch content {
            case .data(let data):
                if smIndex < snapshot.metadata.index {
                    try stateMachine.restore(data, index: snapshot.metadata.index)
                }
            case .storedImage:
                // A snapshot from the leader, made durable before (or while) it was restored.
                if smIndex < snapshot.metadata.index {
                    try stateMachine.restore(file: storage.imagePath(for: snapshot.metadata), index: snapshot.metadata.index)
                }
            case .heldByStateMachine(let durableIndex):
                // The log before the snapshot is gone: the state machine's own storage must hold
                // everything the snapshot promised.
                guard smIndex >= durableIndex else {
                    throw RuntimeError.rejected("the state machine's data is at index \(smIndex), behind the snapshot at \(snapshot.metadata.index) that relies on it (index \(durableIndex)): the state machine's files were lost or replaced")
                }
            case .file:
                throw RuntimeError.rejected("the snapshot at \(snapshot.metadata.index) refers to a file in transit")
            }
            smIndex = max(smIndex, snapshot.metadata.index)
        }
        // Addresses carried by membership entries still in the log.
        let first = storage.firstIndex()
        let last = storage.lastIndex()
        if first <= last {
            for entry in try storage.entries(from: first, to: last + 1, maxBytes: Int.max) where entry.kind == .membershipChange {
                if let change = MembershipChange.decode(entry.data) { learnAddress(change) }
            }
        }
        var core = configuration.raft
        core.id = id
        core.electionTimeoutTicks = configuration.electionTimeoutTicks
        core.heartbeatIntervalTicks = 1
        core.appliedIndex = smIndex
        core.randomSeed = UInt64.random(in: .min ... .max)
        raft = try RaftNode(configuration: core, storage: storage)
        appliedIndex = raft!.appliedIndex
        for (node, address) in registry { transport.setPeer(node, host: address.host, port: address.port) }
    }

    private func learnAddress(_ change: MembershipChange) {
        guard change.kind == .addLearner || change.kind == .addVoter,
              let address = PeerAddress(String(decoding: change.context, as: UTF8.self))
        else { return }
        registry[change.node] = address
        transport.setPeer(change.node, host: address.host, port: address.port)
    }

    // MARK: Inputs

    /// Schedules a turn of the loop for work made inside the actor (membership, transfers).
    private func signal() {
        inbox.wake()
    }

    private func tick() {
        guard let raft else { return }
        tickCount += 1
        raft.tick()
        expireRequests()
    }

    struct Refusal: Error {
        var reason: String
    }

    /// A message from a peer as Raft may take it, or why it must be dropped first: the core's
    /// checks of its meaning (``Message/rejection(receiver:)``), and for a snapshot that its
    /// payload decodes and that the state machine could restore its image
    /// (``StateMachine/validateSnapshot(file:index:)``). A snapshot's image ends up in a file of
    /// `spool` (`imageFile` when it was streamed; written here when it came inline, as a test's
    /// hand-made frame sends it), which the admitted message's data names; a refused one's file
    /// is removed. Callable from any thread (the transport's, concurrently with everything).
    static func admit(_ message: Message, imageFile: String?, receiver: NodeID, stateMachine: any StateMachine,
                      spool: SnapshotSpool) -> Result<Message, Refusal> {
        if let rejection = message.rejection(receiver: receiver) {
            if let imageFile { SnapshotSpool.remove(imageFile) }
            return .failure(Refusal(reason: rejection.description))
        }
        guard let snapshot = message.snapshot else { return .success(message) }
        var path = imageFile
        do {
            let (registry, content) = try RuntimeSnapshot.decode(snapshot.data)
            guard case .data(let inline) = content else { throw Refusal(reason: "snapshot without its state machine data") }
            if imageFile == nil || !inline.isEmpty {
                guard imageFile.map({ (try? FileSystem.fileSize($0)) == 0 }) ?? true else {
                    throw Refusal(reason: "snapshot with its state machine data both inline and streamed")
                }
                let inlinePath = imageFile ?? spool.newPath("in")
                path = inlinePath
                SnapshotSpool.remove(inlinePath)
                try SnapshotImageFile.write(inline, to: inlinePath)
            }
            guard let path else { throw Refusal(reason: "snapshot without an image") }
            // Linear in the snapshot's size, off the Raft loop: snapshots are rare, and one that
            // cannot be restored must be refused before it is made durable.
            try stateMachine.validateSnapshot(file: path, index: snapshot.metadata.index)
            var admitted = message
            admitted.snapshot?.data = RuntimeSnapshot.encode(registry: registry, content: .file(path))
            return .success(admitted)
        } catch {
            if let path { SnapshotSpool.remove(path) }
            return .failure(error as? Refusal ?? Refusal(reason: "snapshot refused: \(error)"))
        }
    }

    private func handle(_ event: TransportEvent) {
        guard let raft else { return }
        switch event {
        case .message(let message):
            let pendingBefore = raft.pendingSnapshot
            step(message, raft: raft)
            // A snapshot's image file stays only while Raft holds the snapshot (until its Ready
            // moves the file beside the log); one Raft ignored, or replaced with a newer one, goes.
            let pendingAfter = raft.pendingSnapshot
            if let file = RuntimeSnapshot.spooledFile(of: message), pendingAfter?.data != message.snapshot?.data {
                SnapshotSpool.remove(file)
            }
            if let pendingBefore, pendingBefore.data != pendingAfter?.data,
               let file = RuntimeSnapshot.spooledFile(of: Message(type: .snapshot, snapshot: pendingBefore)) {
                SnapshotSpool.remove(file)
            }
        case .snapshot(let message, let imageFile):
            // Turned into `.message` by the transport's handler before the inbox.
            logger.warning("dropping a snapshot that was not admitted", metadata: ["from": "\(message.from)"])
            SnapshotSpool.remove(imageFile)
        case .unreachable(let node):
            raft.reportUnreachable(node)
        case .refused(let node):
            raft.reportUnreachable(node)
            raft.reportPeerDown(node)
        case .snapshotStatus(let node, let succeeded):
            raft.reportSnapshot(to: node, succeeded: succeeded)
        }
    }

    private func step(_ message: Message, raft: RaftNode<DiskStorage>) {
        guard message.to == id else { return }
        // A member we know neither from the log nor by address (a removed member, or a
        // stranger) cannot be answered, and must not move our term.
        guard raft.membership.contains(message.from) || registry[message.from] != nil else {
            logger.warning("dropping peer message from an unknown member", metadata: [
                "from": "\(message.from)", "type": "\(message.type)", "term": "\(message.term)",
            ])
            return
        }
        raft.step(message)
    }

    private var deadline: UInt64 {
        tickCount + UInt64(max(1, configuration.requestTimeoutMs / configuration.heartbeatIntervalMs))
    }

    private func checkAccepting() throws {
        guard !stopped, !failed, raft != nil else { throw RuntimeError.stopped }
        let pending = proposals.count + membershipChanges.count + reads.count + readQueue.count + transfers.count
        if pending >= configuration.pendingRequestsMax {
            throw RuntimeError.overloaded(reason: "\(pending) requests pending (limit \(configuration.pendingRequestsMax))")
        }
    }

    /// Replicates `data` and returns once it is applied on this node (forwarded to the leader
    /// when this node follows).
    public nonisolated func propose(_ data: [UInt8]) async throws -> AppliedResult {
        try await withCheckedThrowingContinuation { continuation in
            submitProposal(data) { continuation.resume(with: $0) }
        }
    }

    /// Returns once this node's state machine has applied everything committed before the call
    /// began (ReadIndex, thesis 6.4): a read served after it is linearizable.
    public nonisolated func readBarrier() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            submitRead { continuation.resume(with: $0) }
        }
    }

    /// ``propose(_:)`` from any thread without a task: `completion` runs once, on the runtime's
    /// thread, with the result. Submissions wait in the inbox that the loop takes whole at its
    /// next turn (one wake-up for all that arrived meanwhile).
    public nonisolated func submitProposal(_ data: [UInt8], completion: @escaping @Sendable (Result<AppliedResult, any Error>) -> Void) {
        inbox.submit(.proposal(data, completion))
    }

    /// ``readBarrier()`` from any thread without a task, as ``submitProposal(_:completion:)``.
    public nonisolated func submitRead(completion: @escaping @Sendable (Result<Void, any Error>) -> Void) {
        inbox.submit(.read(completion))
    }

    /// Runs one turn of the loop on the runtime's thread (scheduled by the inbox).
    nonisolated func scheduleTurn() {
        loop.execute {
            self.assumeIsolated { $0.turn() }
        }
    }

    /// Takes the inbox and handles every `Ready` that follows, to the end.
    func turn() {
        guard !stopped, !failed else { return }
        do {
            try processReady()
        } catch {
            fail(error)
        }
    }

    /// Takes every submission and peer event waiting in the inbox.
    private func takeInbox() {
        let (submissions, events) = inbox.take()
        for event in events { handle(event) }
        for submission in submissions {
            switch submission {
            case .proposal(let data, let complete): enqueueProposal(data, complete: complete)
            case .read(let complete): enqueueRead(complete: complete)
            }
        }
    }

    private func enqueueProposal(_ data: [UInt8], complete: @escaping @Sendable (Result<AppliedResult, any Error>) -> Void) {
        let outcome: ProposalOutcome
        let request = nextRequest
        do {
            try checkAccepting()
            guard data.count <= configuration.proposalBytesMax else { throw RuntimeError.tooLarge(bytes: data.count, limit: configuration.proposalBytesMax) }
            nextRequest += 1
            do {
                outcome = try raft!.propose(CommandEnvelope.encode(proposer: id, request: request, payload: data))
            } catch {
                throw RuntimeError(error)
            }
        } catch {
            return complete(.failure(error))
        }
        var waiter = Waiter(complete: complete, deadlineTick: deadline)
        if case .appended(let index, let term) = outcome {
            waiter.index = index
            waiter.term = term
        }
        proposals[request] = waiter
    }

    private func enqueueRead(complete: @escaping @Sendable (Result<Void, any Error>) -> Void) {
        do {
            try checkAccepting()
        } catch {
            return complete(.failure(error))
        }
        readQueue.append((complete, deadline))
        if readRound == nil { startReadRound() }
    }

    /// Asks Raft for one read index on behalf of every queued read.
    private func startReadRound() {
        guard !readQueue.isEmpty, let raft else { return }
        let request = nextRequest
        nextRequest += 1
        do {
            try raft.readIndex(context: request)
        } catch {
            let failure = RuntimeError(error)
            for read in readQueue { read.complete(.failure(failure)) }
            readQueue = []
            return
        }
        reads[request] = readQueue
        readQueue = []
        readRound = (request, tickCount)
    }

    /// Adds `node` (reachable at `address`) as a learner. Leader only.
    public func addLearner(_ node: NodeID, address: PeerAddress) async throws {
        try await changeMembership(MembershipChange(.addLearner, node: node, context: Array(address.description.utf8)))
    }

    /// Adds `node` (reachable at `address`) as a voter at once. Leader only. Prefer a learner
    /// and `promote` for a member with much to catch up.
    public func addVoter(_ node: NodeID, address: PeerAddress) async throws {
        try await changeMembership(MembershipChange(.addVoter, node: node, context: Array(address.description.utf8)))
    }

    /// Points this member's transport at a new address for `node` (a peer that moved). Local:
    /// whoever changes it replicates the change to every member by its own means.
    public func setPeerAddress(_ node: NodeID, address: PeerAddress) {
        guard node != id, registry[node] != address else { return }
        registry[node] = address
        transport.setPeer(node, host: address.host, port: address.port)
    }

    public func promote(_ node: NodeID) async throws {
        try await changeMembership(MembershipChange(.promoteLearner, node: node))
    }

    public func remove(_ node: NodeID) async throws {
        try await changeMembership(MembershipChange(.removeNode, node: node))
    }

    private func changeMembership(_ change: MembershipChange) async throws {
        try checkAccepting()
        let outcome: ProposalOutcome
        do {
            outcome = try raft!.proposeMembershipChange(change)
        } catch {
            throw RuntimeError(error)
        }
        guard case .appended(let index, let term) = outcome else { throw RuntimeError.noLeader }
        learnAddress(change)
        signal()
        let deadline = self.deadline
        _ = try await withCheckedThrowingContinuation { continuation in
            membershipChanges[index] = Waiter(complete: { continuation.resume(with: $0) }, deadlineTick: deadline, index: index, term: term)
        }
    }

    /// Hands leadership to `target` and returns once it leads (or times out).
    public func transferLeadership(to target: NodeID) async throws {
        try checkAccepting()
        do {
            try raft!.transferLeadership(to: target)
        } catch {
            throw RuntimeError(error)
        }
        signal()
        let deadline = self.deadline
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            transfers.append((target, continuation, deadline))
        }
    }

    /// The node's Raft state and, on the leader, every member's replication progress.
    public func status() throws -> Status {
        guard let raft else { throw RuntimeError.stopped }
        var status = raft.status()
        status.appliedIndex = appliedIndex
        return status
    }

    /// Known peer addresses (replicated through membership entries and snapshots).
    public func peerAddresses() -> [NodeID: PeerAddress] { registry }

    private func expireRequests() {
        let now = tickCount
        for (request, waiter) in proposals where waiter.deadlineTick <= now {
            proposals[request] = nil
            waiter.complete(.failure(RuntimeError.timedOut))
        }
        for (index, waiter) in membershipChanges where waiter.deadlineTick <= now {
            membershipChanges[index] = nil
            waiter.complete(.failure(RuntimeError.timedOut))
        }
        for (request, waiters) in reads {
            let expired = waiters.filter { $0.deadlineTick <= now }
            guard !expired.isEmpty else { continue }
            for read in expired { read.complete(.failure(RuntimeError.timedOut)) }
            let left = waiters.filter { $0.deadlineTick > now }
            reads[request] = left.isEmpty ? nil : left
        }
        readQueue.removeAll { read in
            guard read.deadlineTick <= now else { return false }
            read.complete(.failure(RuntimeError.timedOut))
            return true
        }
        // A round whose answer was lost (leader change, dropped message) must not hold back the
        // reads queued behind it: after an election timeout the next round starts anyway.
        if let round = readRound, reads[round.request] == nil || now - round.startTick >= UInt64(configuration.electionTimeoutTicks) {
            restartReadRound()
        }
        transfers.removeAll { transfer in
            guard transfer.deadlineTick <= now else { return false }
            transfer.continuation.resume(throwing: RuntimeError.timedOut)
            return true
        }
    }

    // MARK: The loop

    /// Apply jobs queued before the loop stops taking new `Ready`s (bounds what a follower with a
    /// slow state machine holds in memory).
    static let applyJobsMax = 4
    /// Committed commands applied on the loop itself when no job is queued: shorter than two
    /// thread hops on the path of every sequential write.
    static let inlineApplyCommandsMax = 4

    /// What one `Ready` gives the state machine: a snapshot to restore, then committed entries.
    struct ApplyJob: Sendable {
        var entries: [Entry]
        var commands: [PendingCommand]
        /// Where the state to restore is: `.data` or `.file` (never a reference to itself).
        var restore: (index: UInt64, registry: [NodeID: PeerAddress], state: RuntimeSnapshot.Content)?
    }

    private func processReady() throws {
        var rounds = 0
        while let raft, let storage {
            // Inputs waiting in the inbox (also those that arrived during the last round) share
            // this round's Ready.
            takeInbox()
            guard applyJobsInFlight < Self.applyJobsMax, raft.hasReady() else { break }
            rounds += 1
            if rounds > 1_000 {
                // Let the loop's other work (peer sockets, timers) run; the next turn goes on.
                signal()
                break
            }
            let ready = raft.ready()
            if ready.hardState != nil || ready.softState != nil {
                let now = Observed(term: raft.term, leader: raft.leader, isLeader: raft.role == .leader)
                observed.withLockedValue { $0 = now }
            }
            // The leader's appends go out while it writes to its own disk (thesis 10.2.1).
            send(ready.messages)
            var job = ApplyJob(entries: ready.committedEntries, commands: commands(in: ready.committedEntries))
            // Decoded before it is made durable: a snapshot this member cannot restore must never
            // become its state on disk (it would fail again on every restart).
            if let snapshot = ready.snapshot {
                let (snapshotRegistry, content) = try RuntimeSnapshot.decode(snapshot.data)
                switch content {
                case .file(let path):
                    // The image moves beside the log (no copy); the record refers to it there.
                    let record = Snapshot(metadata: snapshot.metadata, data: RuntimeSnapshot.encode(registry: snapshotRegistry, content: .storedImage))
                    let stored = try storage.applySnapshot(record, image: path) ?? path
                    job.restore = (snapshot.metadata.index, snapshotRegistry, .file(stored))
                case .data:
                    try storage.applySnapshot(snapshot)
                    job.restore = (snapshot.metadata.index, snapshotRegistry, content)
                case .heldByStateMachine, .storedImage:
                    throw RuntimeError.rejected("received a snapshot at \(snapshot.metadata.index) without its state machine data")
                }
            }
            try storage.save(hardState: ready.hardState, entries: ready.entries, sync: ready.mustSync)
            for entry in ready.entries where entry.kind == .membershipChange {
                if let change = MembershipChange.decode(entry.data) { learnAddress(change) }
            }
            transport.send(ready.messagesAfterPersist)
            if applyJobsInFlight == 0 && job.restore == nil && job.commands.count <= Self.inlineApplyCommandsMax {
                let responses = job.commands.isEmpty ? [] : try stateMachine.apply(job.commands.map(\.command))
                applied(job.entries, commands: job.commands, responses: responses)
            } else if !job.entries.isEmpty || job.restore != nil {
                startApply(job)
            }
            readsAwaitingApply += ready.readStates
            answerReads()
            if let soft = ready.softState { leadershipChanged(soft) }
            raft.advance(ready)
            try maybeSnapshot()
        }
    }

    /// Runs `work` on the apply thread after every job queued before it, counted in
    /// `applyJobsInFlight` until `then` gets its result back on the loop.
    private func queueOnApplier<T: Sendable>(_ work: @escaping @Sendable () throws -> T,
                                             then: @escaping @Sendable (isolated RaftRuntime, Result<T, any Error>) -> Void) {
        applyJobsInFlight += 1
        applier.runIfActive(eventLoop: loop, work).whenComplete { result in
            self.assumeIsolated { runtime in
                runtime.applyJobsInFlight -= 1
                then(runtime, result)
            }
        }
    }

    /// Queues `job` on the apply thread; its outcome comes back to the loop in log order.
    private func startApply(_ job: ApplyJob) {
        let stateMachine = self.stateMachine
        queueOnApplier({ () throws -> [[UInt8]] in
            switch job.restore?.state {
            case .data(let data)?: try stateMachine.restore(data, index: job.restore!.index)
            case .file(let path)?: try stateMachine.restore(file: path, index: job.restore!.index)
            default: break
            }
            return job.commands.isEmpty ? [] : try stateMachine.apply(job.commands.map(\.command))
        }, then: { runtime, result in runtime.finishApply(job, result) })
    }

    private func finishApply(_ job: ApplyJob, _ result: Result<[[UInt8]], any Error>) {
        guard !stopped, !failed else { return }
        switch result {
        case .failure(let error):
            fail(error)
        case .success(let responses):
            if let restore = job.restore { restored(index: restore.index, registry: restore.registry) }
            applied(job.entries, commands: job.commands, responses: responses)
            answerReads()
            turn()
        }
    }

    /// Sends `messages`; a snapshot goes with its state machine image: the state written to a
    /// file of the transport's spool on a background thread (or the snapshot's own bytes, for a
    /// state machine without storage), then streamed from there.
    private func send(_ messages: [Message]) {
        guard messages.contains(where: { $0.snapshot != nil }) else {
            transport.send(messages)
            return
        }
        var direct: [Message] = []
        for message in messages {
            guard let snapshot = message.snapshot else {
                direct.append(message)
                continue
            }
            let stateMachine = self.stateMachine
            let transport = self.transport
            let logger = self.logger
            let inbox = self.inbox
            Task {
                let spooled = transport.spool?.newPath("out")
                do {
                    let (header, image) = try await NIOThreadPool.singleton.runIfActive { () throws -> (Message, SnapshotImage) in
                        let (registry, content) = try RuntimeSnapshot.decode(snapshot.data)
                        var header = message
                        header.snapshot?.data = RuntimeSnapshot.encode(registry: registry, content: .data([]))
                        if case .data(let bytes) = content { return (header, .bytes(bytes)) }
                        guard let spooled else { throw RuntimeError.rejected("no spool directory for outgoing snapshots") }
                        try stateMachine.writeSnapshot(toFile: spooled)
                        return (header, .file(spooled))
                    }
                    let bytes: Int
                    switch image {
                    case .bytes(let data): bytes = data.count
                    case .file(let path): bytes = (try? FileSystem.fileSize(path)) ?? -1
                    }
                    logger.info("sending snapshot", metadata: ["to": "\(message.to)", "index": "\(snapshot.metadata.index)", "bytes": "\(bytes)"])
                    transport.sendSnapshot(header, image: image)
                } catch {
                    if let spooled { SnapshotSpool.remove(spooled) }
                    logger.warning("cannot make snapshot data", metadata: ["to": "\(message.to)", "error": "\(error)"])
                    inbox.deliver(.snapshotStatus(message.to, succeeded: false))
                }
            }
        }
        transport.send(direct)
    }

    private func restored(index: UInt64, registry snapshotRegistry: [NodeID: PeerAddress]) {
        for (node, address) in snapshotRegistry {
            registry[node] = address
            transport.setPeer(node, host: address.host, port: address.port)
        }
        appliedIndex = index
        logger.info("restored snapshot", metadata: ["index": "\(index)"])
    }

    /// A committed command for the state machine, with who proposed it.
    struct PendingCommand: Sendable {
        var command: AppliedCommand
        var proposer: NodeID
        var request: UInt64
    }

    private func commands(in entries: [Entry]) -> [PendingCommand] {
        entries.compactMap { entry in
            guard entry.kind == .normal, let envelope = CommandEnvelope.decode(entry.data) else { return nil }
            let awaited = envelope.proposer == id && proposals[envelope.request] != nil
            return PendingCommand(command: AppliedCommand(index: entry.index, term: entry.term, data: envelope.payload, awaitedHere: awaited),
                                  proposer: envelope.proposer, request: envelope.request)
        }
    }

    /// Bookkeeping after the state machine applied `commands` (of `entries`): membership, callers.
    private func applied(_ entries: [Entry], commands: [PendingCommand], responses: [[UInt8]]) {
        guard !entries.isEmpty else { return }
        precondition(responses.count == commands.count, "the state machine returned \(responses.count) responses for \(commands.count) commands")
        for entry in entries where entry.kind == .membershipChange {
            if let change = MembershipChange.decode(entry.data) {
                learnAddress(change)
                if change.kind == .removeNode && change.node != id {
                    registry[change.node] = nil
                    transport.removePeer(change.node)
                }
            }
            if let waiter = membershipChanges.removeValue(forKey: entry.index) {
                if waiter.term == entry.term {
                    waiter.complete(.success(AppliedResult(index: entry.index, term: entry.term, response: [])))
                } else {
                    waiter.complete(.failure(RuntimeError.proposalDropped))
                }
            }
        }
        for (position, pending) in commands.enumerated() where pending.proposer == id {
            if let waiter = proposals.removeValue(forKey: pending.request) {
                waiter.complete(.success(AppliedResult(index: pending.command.index, term: pending.command.term, response: responses[position])))
            }
        }
        appliedIndex = max(appliedIndex, entries[entries.count - 1].index)
        // A proposal whose index was taken by another leader's entry will never apply.
        for (request, waiter) in proposals where waiter.index != 0 && waiter.index <= appliedIndex {
            proposals[request] = nil
            waiter.complete(.failure(RuntimeError.proposalDropped))
        }
    }

    private func answerReads() {
        guard !readsAwaitingApply.isEmpty else { return }
        var waiting: [ReadState] = []
        for read in readsAwaitingApply {
            if readRound?.request == read.context {
                // Granted: the reads queued behind this round may start the next one.
                readRound = nil
                startReadRound()
            }
            if read.index > appliedIndex {
                waiting.append(read)
            } else if let waiters = reads.removeValue(forKey: read.context) {
                for waiter in waiters { waiter.complete(.success(())) }
            }
        }
        readsAwaitingApply = waiting
    }

    private func leadershipChanged(_ soft: SoftState) {
        logger.info("leadership", metadata: ["leader": "\(soft.leader)", "role": "\(soft.role.rawValue)", "term": "\(raft?.term ?? 0)"])
        transfers.removeAll { transfer in
            guard soft.leader == transfer.target else { return false }
            transfer.continuation.resume()
            return true
        }
        // Requests this node forwarded to a leader it has lost (not in its own log) may never be
        // answered: say so now rather than at their deadline, so that clients retry at once.
        // (Proposals made while leading are in the log: their index settles them.)
        if knownLeader != 0, knownLeader != id, soft.leader != knownLeader {
            for (request, waiter) in proposals where waiter.index == 0 {
                proposals[request] = nil
                waiter.complete(.failure(RuntimeError.leaderLost))
            }
        }
        knownLeader = soft.leader
        // Reads granted by a former leader stay valid; a round not yet granted may never be:
        // its reads ask the new leader instead of waiting for it.
        if readRound != nil { restartReadRound() }
    }

    /// Abandons the round in flight (its answer may never come) and asks again for its reads and
    /// the queued ones together. An index granted later still serves them: it is at least the
    /// commit index when they arrived.
    private func restartReadRound() {
        if let round = readRound, let waiting = reads.removeValue(forKey: round.request) {
            readQueue = waiting + readQueue
        }
        readRound = nil
        startReadRound()
    }

    /// Takes a snapshot every `snapshotIntervalEntries` applied entries and compacts the log
    /// behind it. A state machine with its own durable storage is synced, not copied: the
    /// snapshot records only that it holds the state (and the peers' addresses). The sync runs
    /// on the apply thread when no apply is queued (so the state is exactly `appliedIndex`), and
    /// counts as a queued job meanwhile (nothing is applied on the loop, and no other snapshot
    /// starts, during it).
    private func maybeSnapshot() throws {
        guard applyJobsInFlight == 0, let raft, let storage else { return }
        let snapshotIndex = try storage.snapshot().metadata.index
        let index = appliedIndex
        guard index >= snapshotIndex + configuration.snapshotIntervalEntries,
              let membership = raft.membership(at: index)
        else { return }
        let stateMachine = self.stateMachine
        queueOnApplier({ () throws -> RuntimeSnapshot.Content in
            if let durable = try stateMachine.persist() { return .heldByStateMachine(durableIndex: durable) }
            return .data(try stateMachine.snapshot())
        }, then: { runtime, result in runtime.finishSnapshot(index: index, membership: membership, result) })
    }

    private func finishSnapshot(index: UInt64, membership: Membership, _ result: Result<RuntimeSnapshot.Content, any Error>) {
        guard !stopped, !failed, let storage else { return }
        do {
            try storage.createSnapshot(index: index, membership: membership, data: RuntimeSnapshot.encode(registry: registry, content: result.get()))
            if index > configuration.compactionMarginEntries {
                let compactTo = index - configuration.compactionMarginEntries
                if compactTo >= storage.firstIndex() { try storage.compact(upTo: compactTo) }
            }
            logger.debug("snapshot", metadata: ["index": "\(index)"])
        } catch {
            fail(error)
            return
        }
        turn()
    }
}

/// How a proposal travels in an entry: who proposed it, under which request number, and the
/// caller's bytes. The proposer's runtime answers its caller when the entry is applied.
enum CommandEnvelope {
    static let marker: UInt8 = 0xC1

    static func encode(proposer: NodeID, request: UInt64, payload: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = [marker]
        bytes.reserveCapacity(17 + payload.count)
        for value in [proposer, request] {
            for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
        }
        bytes += payload
        return bytes
    }

    static func decode(_ bytes: [UInt8]) -> (proposer: NodeID, request: UInt64, payload: [UInt8])? {
        guard bytes.count >= 17, bytes[0] == marker else { return nil }
        func read(_ offset: Int) -> UInt64 {
            (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << UInt64($1 * 8) }
        }
        return (read(1), read(9), Array(bytes[17...]))
    }
}

/// A Raft snapshot's payload: the replicated peer addresses, then where the state machine's
/// state is: its bytes; or, for a state machine with durable storage of its own, the index that
/// storage was synced at (the state itself is written out when a follower needs it); or a file.
///
/// Layout: `u32 count | flags` (bit 31: held by the state machine, bit 30: a file of this
/// member's spool, bit 29: the image stored beside the snapshot), then per peer `u64 id`,
/// `u16 length`, the address text; then the data, a `u64` durable index, or the file's path.
/// Only `data` (empty: the image follows in the snapshot stream) crosses the wire.
enum RuntimeSnapshot {
    struct DecodingError: Error, CustomStringConvertible {
        var description: String { "malformed runtime snapshot" }
    }

    enum Content: Sendable, Hashable {
        case data([UInt8])
        case heldByStateMachine(durableIndex: UInt64)
        /// A snapshot received from a peer, on its way to Raft: its image is this file.
        case file(String)
        /// A snapshot record whose image is ``DiskStorage/imagePath(for:)``.
        case storedImage
    }

    static let heldFlag: UInt32 = 1 << 31
    static let fileFlag: UInt32 = 1 << 30
    static let storedImageFlag: UInt32 = 1 << 29
    static let flags = heldFlag | fileFlag | storedImageFlag

    /// The spool file a snapshot message from a peer refers to, if it does.
    static func spooledFile(of message: Message) -> String? {
        guard let data = message.snapshot?.data, let (_, content) = try? decode(data), case .file(let path) = content else { return nil }
        return path
    }

    static func encode(registry: [NodeID: PeerAddress], content: Content) -> [UInt8] {
        var buffer = ByteBuffer()
        var header = UInt32(registry.count)
        switch content {
        case .data: break
        case .heldByStateMachine: header |= heldFlag
        case .file: header |= fileFlag
        case .storedImage: header |= storedImageFlag
        }
        buffer.writeInteger(header, endianness: .little)
        for (node, address) in registry.sorted(by: { $0.key < $1.key }) {
            buffer.writeInteger(node, endianness: .little)
            let text = Array(address.description.utf8)
            buffer.writeInteger(UInt16(text.count), endianness: .little)
            buffer.writeBytes(text)
        }
        var bytes = Array(buffer.readableBytesView)
        switch content {
        case .data(let data):
            bytes += data
        case .heldByStateMachine(let durableIndex):
            for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: durableIndex >> UInt64(shift))) }
        case .file(let path):
            bytes += Array(path.utf8)
        case .storedImage:
            break
        }
        return bytes
    }

    static func decode(_ bytes: [UInt8]) throws -> (registry: [NodeID: PeerAddress], content: Content) {
        var buffer = ByteBuffer(bytes: bytes)
        guard let header = buffer.readInteger(endianness: .little, as: UInt32.self) else { throw DecodingError() }
        let count = header & ~flags
        let flag = header & flags
        guard count <= 4096, flag.nonzeroBitCount <= 1 else { throw DecodingError() }
        var registry: [NodeID: PeerAddress] = [:]
        for _ in 0..<count {
            guard let node = buffer.readInteger(endianness: .little, as: UInt64.self),
                  let length = buffer.readInteger(endianness: .little, as: UInt16.self),
                  let text = buffer.readString(length: Int(length)),
                  let address = PeerAddress(text)
            else { throw DecodingError() }
            registry[node] = address
        }
        switch flag {
        case 0: return (registry, .data(Array(buffer.readableBytesView)))
        case fileFlag:
            guard buffer.readableBytes > 0, let path = buffer.readString(length: buffer.readableBytes) else { throw DecodingError() }
            return (registry, .file(path))
        case storedImageFlag:
            guard buffer.readableBytes == 0 else { throw DecodingError() }
            return (registry, .storedImage)
        default: break
        }
        guard let durableIndex = buffer.readInteger(endianness: .little, as: UInt64.self), buffer.readableBytes == 0 else { throw DecodingError() }
        return (registry, .heldByStateMachine(durableIndex: durableIndex))
    }
}
