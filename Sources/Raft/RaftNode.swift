/// What happened to a proposal that was accepted.
public enum ProposalOutcome: Sendable, Hashable {
    /// Appended to the leader's log at `index` in `term`; it is committed when it shows up in
    /// a `Ready`'s committed entries with the same index and term.
    case appended(index: UInt64, term: UInt64)
    /// Sent to the leader; the shell learns the outcome by watching what is applied.
    case forwarded(to: NodeID)
}

/// A ReadIndex request waiting at the leader for a heartbeat round to confirm leadership.
struct PendingRead {
    var from: NodeID
    var context: UInt64
    var index: UInt64
    var round: UInt64
    var acknowledgements: Set<NodeID>
}

/// One Raft node: the algorithm as a deterministic state machine (etcd-io/raft's `RawNode` shape).
///
/// Inputs are ``tick()``, ``step(_:)``, ``propose(_:)``, ``proposeMembershipChange(_:)``,
/// ``readIndex(context:)``, ``transferLeadership(to:)`` and ``campaign()``. Outputs are collected
/// in a ``Ready`` (see its documentation for the order a shell must follow) and acknowledged with
/// ``advance(_:)``. The node never reads a clock, touches a disk or draws unseeded random numbers.
public final class RaftNode<Storage: LogStorage> {
    public let id: NodeID
    public let configuration: Configuration
    var log: RaftLog<Storage>

    public private(set) var term: UInt64 = 0
    public private(set) var vote: NodeID = noNode
    public private(set) var role: Role = .follower
    public private(set) var leader: NodeID = noNode
    /// The membership in force: the latest one in the log, committed or not (thesis 4.1).
    public private(set) var membership: Membership
    /// Every membership in the log from the snapshot on, ascending by index; never empty.
    var membershipHistory: [(index: UInt64, membership: Membership)]

    var progress: [NodeID: Progress] = [:]
    var votes: [NodeID: Bool] = [:]
    var outbox: [Message] = []
    var outboxAfterPersist: [Message] = []
    var pendingReadStates: [ReadState] = []

    var electionElapsed = 0
    var heartbeatElapsed = 0
    var randomizedElectionTimeout = 0
    var random: SeededGenerator

    /// The voter leadership is being handed to, or ``noNode``.
    public private(set) var leadTransferee: NodeID = noNode
    var pendingReads: [PendingRead] = []
    /// Reads that arrived before the leader committed an entry of its term (it cannot know the commit index yet).
    var readsAwaitingTermCommit: [(from: NodeID, context: UInt64)] = []
    var readRound: UInt64 = 0
    var uncommittedBytes = 0

    var previousSoftState: SoftState
    var previousHardState: HardState
    var readyOutstanding = false
    /// Appends to all followers are due at the next `Ready`.
    var appendBroadcastPending = false
    /// The index of this leader's no-op: entries above it in its term are its own proposals.
    var termStartIndex: UInt64 = 0

    /// Creates a node over `storage`, resuming from what it holds.
    public init(configuration: Configuration, storage: Storage) throws {
        try configuration.validate()
        id = configuration.id
        self.configuration = configuration
        random = SeededGenerator(seed: configuration.randomSeed ^ (configuration.id &* 0x9E37_79B9_7F4A_7C15))
        let (hardState, snapshotMembership) = try storage.initialState()
        log = RaftLog(storage: storage, appliedIndex: 0)
        let base = log.firstIndex - 1
        membershipHistory = [(base, snapshotMembership)]
        membership = snapshotMembership
        previousSoftState = SoftState(leader: noNode, role: .follower)
        previousHardState = hardState
        // Rebuild the membership history from the stored entries above the snapshot.
        var next = log.firstIndex
        let last = log.lastIndex
        while next <= last {
            let batch = try storage.entries(from: next, to: last + 1, maxBytes: 4 << 20)
            recordAppended(batch, replacing: false)
            next = batch.last.map { $0.index + 1 } ?? last + 1
        }
        if hardState != HardState() {
            guard hardState.commit >= log.committed, hardState.commit <= log.lastIndex else {
                throw ConfigurationError(field: "hardState.commit", reason: "\(hardState.commit) is outside the stored log [\(log.committed), \(log.lastIndex)]")
            }
            log.committed = hardState.commit
        }
        term = hardState.term
        vote = hardState.vote
        // The state machine may already hold more than the snapshot (never more than is committed).
        if configuration.appliedIndex > log.applied { log.applied(to: min(configuration.appliedIndex, log.committed)) }
        resetRandomizedElectionTimeout()
    }

    // MARK: Derived state

    public var softState: SoftState { SoftState(leader: leader, role: role) }
    public var hardState: HardState { HardState(term: term, vote: vote, commit: log.committed) }
    public var commitIndex: UInt64 { log.committed }
    public var appliedIndex: UInt64 { log.applied }
    public var lastIndex: UInt64 { log.lastIndex }
    public var firstIndex: UInt64 { log.firstIndex }
    /// A snapshot taken from the leader and not yet handed out by ``ready()``.
    public var pendingSnapshot: Snapshot? { log.unstable.snapshot }
    /// Whether this node may campaign: only voters can.
    public var isPromotable: Bool { membership.isVoter(id) }
    /// The index of the membership entry in force.
    public var membershipIndex: UInt64 { membershipHistory[membershipHistory.count - 1].index }

    /// The term of the entry at `index`, or nil when it is compacted or not in the log.
    public func term(at index: UInt64) -> UInt64? { try? log.term(at: index) }

    /// The membership in force at `index` (for the snapshot a shell makes there), or nil when
    /// `index` is older than the history kept.
    public func membership(at index: UInt64) -> Membership? {
        membershipHistory.last { $0.index <= index }?.membership
    }

    // MARK: Inputs

    /// Advances logical time by one tick: heartbeats for a leader, election timeouts for the others.
    public func tick() {
        switch role {
        case .leader: tickLeader()
        case .follower, .preCandidate, .candidate: tickElection()
        }
    }

    /// Starts an election now (with a pre-vote first if configured), as if the timeout had passed.
    public func campaign() {
        guard role != .leader else { return }
        campaign(transfer: false)
    }

    /// Proposes `data` to be appended to the log.
    @discardableResult
    public func propose(_ data: [UInt8]) throws(ProposalError) -> ProposalOutcome {
        if data.count > configuration.entryBytesMax {
            throw .entryTooLarge(bytes: data.count, limit: configuration.entryBytesMax)
        }
        guard role == .leader else {
            if leader == noNode { throw .noLeader }
            if !configuration.forwardProposals { throw .notLeader(leader: leader) }
            send(Message(type: .propose, to: leader, entries: [Entry(term: 0, index: 0, data: data)]))
            return .forwarded(to: leader)
        }
        let index = try appendProposal(kind: .normal, data: data)
        return .appended(index: index, term: term)
    }

    /// Proposes one membership change. Only the leader accepts it, one at a time, and only once it
    /// has committed an entry of its own term.
    @discardableResult
    public func proposeMembershipChange(_ change: MembershipChange) throws(ProposalError) -> ProposalOutcome {
        guard role == .leader else {
            throw leader == noNode ? .noLeader : .notLeader(leader: leader)
        }
        let encoded = change.encoded()
        if encoded.count > configuration.entryBytesMax {
            throw .entryTooLarge(bytes: encoded.count, limit: configuration.entryBytesMax)
        }
        if membershipIndex > log.committed { throw .membershipChangeInProgress(index: membershipIndex) }
        if !log.matchTerm(log.committed, term) { throw .leaderNotReady }
        if case .failure(let reason) = membership.applying(change) { throw .invalidMembershipChange(reason) }
        if change.kind == .promoteLearner, let learner = progress[change.node] {
            let lag = log.lastIndex - min(learner.match, log.lastIndex)
            if lag > configuration.learnerPromotionLagMax { throw .learnerNotCaughtUp(node: change.node, lagEntries: lag) }
        }
        let index = try appendProposal(kind: .membershipChange, data: encoded)
        return .appended(index: index, term: term)
    }

    /// Asks for a linearizable read point. The answer arrives as a ``ReadState`` with the same
    /// `context` in a later ``Ready`` (or never, if leadership is lost: the shell times out).
    public func readIndex(context: UInt64) throws(ProposalError) {
        guard role == .leader else {
            if leader == noNode { throw .noLeader }
            send(Message(type: .readIndex, to: leader, context: context))
            return
        }
        try handleReadIndexRequest(from: id, context: context)
    }

    /// Hands leadership to `target` (thesis 3.10): brings it up to date, then tells it to campaign.
    /// Proposals are refused until the transfer completes or an election timeout passes.
    public func transferLeadership(to target: NodeID) throws(ProposalError) {
        guard role == .leader else {
            if leader == noNode { throw .noLeader }
            send(Message(type: .transferLeadership, to: leader, index: target))
            return
        }
        try startTransfer(to: target)
    }

    /// The shell's report on a snapshot it was asked to send.
    public func reportSnapshot(to node: NodeID, succeeded: Bool) {
        guard role == .leader, var follower = progress[node], follower.state == .snapshot else { return }
        if !succeeded { follower.pendingSnapshot = 0 }
        follower.becomeProbe()
        // Wait for the follower's next answer before probing again.
        follower.probeSent = true
        progress[node] = follower
    }

    /// The shell could not deliver a message to `node`: stop pipelining to it.
    public func reportUnreachable(_ node: NodeID) {
        guard role == .leader, var follower = progress[node], follower.state == .replicate else { return }
        follower.becomeProbe()
        progress[node] = follower
    }

    /// The shell knows `node`'s process is not running (its peer port refuses connections, which
    /// a live member's never does). A follower of that leader stops waiting out the whole election
    /// timeout: it forgets the leader, so its lease no longer turns candidates away, and campaigns
    /// within a random fraction of the timeout (the first follower to ask wins; the fractions keep
    /// them from splitting the vote). Safety never depends on timing; if the hint is wrong the
    /// pre-vote finds a live leader's other followers in their lease and nothing changes.
    public func reportPeerDown(_ node: NodeID) {
        guard role == .follower, node != id, leader == node else { return }
        leader = noNode
        let remaining = 1 + Int(random.next() % UInt64(max(1, configuration.electionTimeoutTicks / 2)))
        electionElapsed = max(electionElapsed, randomizedElectionTimeout - remaining)
    }

    // MARK: Ready

    /// Whether ``ready()`` would return anything to do.
    public func hasReady() -> Bool {
        if readyOutstanding { return false }
        return (appendBroadcastPending && role == .leader) || softState != previousSoftState || hardState != previousHardState
            || !log.unstable.entries.isEmpty || log.unstable.snapshot != nil
            || !outbox.isEmpty || !outboxAfterPersist.isEmpty || !pendingReadStates.isEmpty
            || log.hasNextCommittedEntries
    }

    /// Collects the work for the shell. Call ``advance(_:)`` with it before asking again.
    public func ready() -> Ready {
        precondition(!readyOutstanding, "ready() called again before advance()")
        flushAppendBroadcast()
        readyOutstanding = true
        let soft = softState
        let hard = hardState
        let entries = log.unstable.entries
        let snapshot = log.unstable.snapshot
        let ready = Ready(
            softState: soft != previousSoftState ? soft : nil,
            hardState: hard != previousHardState ? hard : nil,
            entries: entries,
            snapshot: snapshot,
            mustSync: !entries.isEmpty || snapshot != nil || hard.term != previousHardState.term || hard.vote != previousHardState.vote,
            messages: outbox,
            messagesAfterPersist: outboxAfterPersist,
            committedEntries: log.nextCommittedEntries(maxBytes: configuration.committedBytesPerReadyMax),
            readStates: pendingReadStates
        )
        previousSoftState = soft
        previousHardState = hard
        outbox.removeAll(keepingCapacity: true)
        outboxAfterPersist.removeAll(keepingCapacity: true)
        pendingReadStates.removeAll(keepingCapacity: true)
        return ready
    }

    /// Acknowledges that the shell has persisted, sent and applied `ready`.
    public func advance(_ ready: Ready) {
        precondition(readyOutstanding, "advance() without ready()")
        readyOutstanding = false
        if let snapshot = ready.snapshot {
            log.unstable.stableSnapshot(to: snapshot.metadata.index)
            if snapshot.metadata.index > log.applied { log.applied = snapshot.metadata.index }
        }
        if let last = ready.entries.last {
            log.unstable.stable(to: last.index, term: last.term)
        }
        if let lastApplied = ready.committedEntries.last {
            log.applied(to: lastApplied.index)
            if role == .leader {
                // Only this leader's own proposals were counted (not its no-op nor inherited entries).
                let appliedBytes = ready.committedEntries.reduce(0) { total, entry in
                    entry.term == term && entry.index > termStartIndex ? total + entry.data.count + Entry.headerBytes : total
                }
                uncommittedBytes = max(0, uncommittedBytes - appliedBytes)
            }
        }
        pruneMembershipHistory()
        // The leader counts itself toward a commit only for what it has made durable (thesis 10.2.1).
        if role == .leader, var own = progress[id], own.maybeUpdate(log.lastStableIndex) {
            own.next = max(own.next, log.lastIndex + 1)
            progress[id] = own
            if maybeCommit() { broadcastAppend() }
        }
    }

    // MARK: Stepping messages

    /// Feeds one message from another node. A message that no correct member could have sent
    /// (see ``Message/rejection(receiver:)``) is dropped without any effect; shells should call
    /// that check first to log what they drop.
    public func step(_ message: Message) {
        guard message.rejection(receiver: id) == nil else { return }
        if message.term > term {
            if message.type == .requestVote || message.type == .requestPreVote {
                let isTransfer = message.context == transferCampaignContext
                let inLease = configuration.checkQuorum && leader != noNode && electionElapsed < configuration.electionTimeoutTicks
                // A follower that hears from a live leader ignores candidates (thesis 4.2.3).
                if !isTransfer && inLease { return }
            }
            switch message.type {
            case .requestPreVote:
                break  // A pre-vote never changes anyone's term.
            case .requestPreVoteResponse where !message.reject:
                break  // Granted pre-votes carry the term we would campaign in.
            case .append, .heartbeat, .snapshot:
                becomeFollower(term: message.term, leader: message.from)
            default:
                becomeFollower(term: message.term, leader: noNode)
            }
        } else if message.term < term {
            if (configuration.checkQuorum || configuration.preVote) && (message.type == .heartbeat || message.type == .append) {
                // Tell a stale leader about the newer term so that it steps down.
                send(Message(type: .appendResponse, to: message.from))
            } else if message.type == .requestPreVote {
                send(Message(type: .requestPreVoteResponse, to: message.from, reject: true))
            }
            return
        }

        switch message.type {
        case .requestVote, .requestPreVote:
            handleVoteRequest(message)
            return
        default:
            break
        }

        switch role {
        case .leader: stepLeader(message)
        case .candidate, .preCandidate: stepCandidate(message)
        case .follower: stepFollower(message)
        }
    }

    private func handleVoteRequest(_ message: Message) {
        let isPreVote = message.type == .requestPreVote
        let responseType: MessageType = isPreVote ? .requestPreVoteResponse : .requestVoteResponse
        let canVote = vote == message.from || (vote == noNode && leader == noNode) || (isPreVote && message.term > term)
        let upToDate = configuration.unsafeTesting.skipElectionRestriction
            || log.isUpToDate(lastIndex: message.index, term: message.logTerm)
        if canVote && upToDate {
            // A granted vote names the term it is for, which for a pre-vote is a future term.
            send(Message(type: responseType, to: message.from, term: message.term))
            if !isPreVote {
                electionElapsed = 0
                vote = message.from
            }
        } else {
            send(Message(type: responseType, to: message.from, reject: true))
        }
    }

    private func stepLeader(_ message: Message) {
        switch message.type {
        case .appendResponse: handleAppendResponse(message)
        case .heartbeatResponse: handleHeartbeatResponse(message)
        case .propose:
            // Forwarded proposals may carry only normal entries: membership changes are validated here.
            for entry in message.entries where entry.kind == .normal && entry.data.count <= configuration.entryBytesMax {
                _ = try? appendProposal(kind: .normal, data: entry.data)
            }
        case .readIndex:
            try? handleReadIndexRequest(from: message.from, context: message.context)
        case .transferLeadership:
            try? startTransfer(to: message.index)
        default:
            break
        }
    }

    private func stepCandidate(_ message: Message) {
        switch message.type {
        case .append:
            becomeFollower(term: message.term, leader: message.from)
            handleAppend(message)
        case .heartbeat:
            becomeFollower(term: message.term, leader: message.from)
            handleHeartbeat(message)
        case .snapshot:
            becomeFollower(term: message.term, leader: message.from)
            handleSnapshot(message)
        case .requestPreVoteResponse where role == .preCandidate:
            // Count only answers to this pre-campaign: granted ones name term + 1.
            let current = message.reject ? message.term == term : message.term == term + 1
            if current { tallyVote(from: message.from, granted: !message.reject) }
        case .requestVoteResponse where role == .candidate:
            tallyVote(from: message.from, granted: !message.reject)
        default:
            break
        }
    }

    private func stepFollower(_ message: Message) {
        switch message.type {
        case .append:
            electionElapsed = 0
            leader = message.from
            handleAppend(message)
        case .heartbeat:
            electionElapsed = 0
            leader = message.from
            handleHeartbeat(message)
        case .snapshot:
            electionElapsed = 0
            leader = message.from
            handleSnapshot(message)
        case .timeoutNow:
            campaign(transfer: true)
        case .readIndexResponse:
            pendingReadStates.append(ReadState(index: message.index, context: message.context))
        default:
            break
        }
    }

    // MARK: Follower side of replication

    private func handleAppend(_ message: Message) {
        if message.index < log.committed {
            send(Message(type: .appendResponse, to: message.from, index: log.committed))
            return
        }
        if log.matchTerm(message.index, message.logTerm) {
            let lastNewIndex = message.index + UInt64(message.entries.count)
            let conflict = log.findConflict(message.entries)
            if conflict != 0 {
                precondition(conflict > log.committed, "node \(id): entry \(conflict) conflicts with committed \(log.committed)")
                let appended = Array(message.entries[Int(conflict - (message.index + 1))...])
                log.append(appended)
                recordAppended(appended, replacing: true)
            }
            log.commit(to: min(message.commit, lastNewIndex))
            send(Message(type: .appendResponse, to: message.from, index: lastNewIndex))
        } else {
            // Fast back-off: name the last index whose term is at most the leader's prevLogTerm.
            let hint = log.findConflictByTerm(index: min(message.index, log.lastIndex), term: message.logTerm)
            send(Message(type: .appendResponse, to: message.from, logTerm: hint.term, index: message.index, reject: true, rejectHint: hint.index))
        }
    }

    private func handleHeartbeat(_ message: Message) {
        log.commit(to: min(message.commit, log.lastIndex))
        send(Message(type: .heartbeatResponse, to: message.from, context: message.context))
    }

    private func handleSnapshot(_ message: Message) {
        guard let snapshot = message.snapshot else { return }
        let metadata = snapshot.metadata
        if metadata.index <= log.committed {
            send(Message(type: .appendResponse, to: message.from, index: log.committed))
            return
        }
        if log.matchTerm(metadata.index, metadata.term) {
            // We already hold the snapshot's entries: just fast-forward the commit index.
            log.commit(to: metadata.index)
            send(Message(type: .appendResponse, to: message.from, index: log.committed))
            return
        }
        log.restore(snapshot)
        membershipHistory = [(metadata.index, metadata.membership)]
        setMembership(metadata.membership)
        send(Message(type: .appendResponse, to: message.from, index: log.lastIndex))
    }

    // MARK: Leader side of replication

    private func appendProposal(kind: EntryKind, data: [UInt8]) throws(ProposalError) -> UInt64 {
        precondition(role == .leader)
        if leadTransferee != noNode { throw .leadershipTransferInProgress(to: leadTransferee) }
        let size = data.count + Entry.headerBytes
        if uncommittedBytes > 0 && uncommittedBytes + size > configuration.uncommittedBytesMax {
            throw .uncommittedBytesExceeded(limit: configuration.uncommittedBytesMax)
        }
        uncommittedBytes += size
        let index = log.lastIndex + 1
        appendAsLeader([Entry(term: term, index: index, kind: kind, data: data)])
        return index
    }

    private func appendAsLeader(_ entries: [Entry]) {
        log.append(entries)
        recordAppended(entries, replacing: true)
        broadcastAppend()
    }

    /// Asks for appends to every follower. They are built when the shell next collects a `Ready`,
    /// so that all the proposals made in between travel in one message per follower (batching).
    func broadcastAppend() {
        appendBroadcastPending = true
    }

    private func flushAppendBroadcast() {
        guard appendBroadcastPending else { return }
        appendBroadcastPending = false
        guard role == .leader else { return }
        for node in membership.members where node != id {
            // The first message goes even when empty: it carries the commit index.
            guard sendAppend(to: node, sendIfEmpty: true) else { continue }
            var sends = 1
            while sends < configuration.inflightMessagesMax && sendAppend(to: node, sendIfEmpty: false) { sends += 1 }
        }
    }

    /// Sends the next entries (or the snapshot) to `node`; false if nothing was sent.
    @discardableResult
    private func sendAppend(to node: NodeID, sendIfEmpty: Bool) -> Bool {
        guard var follower = progress[node], !follower.isPaused else { return false }
        let previousIndex = follower.next - 1
        guard let previousTerm = try? log.term(at: previousIndex),
              let entries = try? log.entries(from: follower.next, maxBytes: configuration.messageBytesMax)
        else {
            return sendSnapshot(to: node)
        }
        if entries.isEmpty && !sendIfEmpty { return false }
        send(Message(type: .append, to: node, logTerm: previousTerm, index: previousIndex, entries: entries, commit: log.committed))
        follower.sentEntries(lastIndex: entries.last?.index ?? previousIndex, count: entries.count, bytes: entries.reduce(0) { $0 + $1.byteCount })
        progress[node] = follower
        return true
    }

    private func sendSnapshot(to node: NodeID) -> Bool {
        guard var follower = progress[node], follower.recentActive else { return false }
        guard let snapshot = try? log.snapshot(), !snapshot.isEmpty else { return false }
        follower.becomeSnapshot(index: snapshot.metadata.index)
        progress[node] = follower
        send(Message(type: .snapshot, to: node, snapshot: snapshot))
        return true
    }

    private func sendHeartbeat(to node: NodeID) {
        // Never tell a follower to commit beyond what it is known to hold.
        let commit = min(progress[node]?.match ?? 0, log.committed)
        send(Message(type: .heartbeat, to: node, commit: commit, context: readRound))
    }

    private func broadcastHeartbeat() {
        for node in membership.members where node != id {
            sendHeartbeat(to: node)
        }
    }

    private func handleAppendResponse(_ message: Message) {
        guard var follower = progress[message.from] else { return }
        follower.recentActive = true
        if message.reject {
            var probe = message.rejectHint
            if message.logTerm > 0 {
                probe = log.findConflictByTerm(index: message.rejectHint, term: message.logTerm).index
            }
            if follower.maybeDecrease(rejected: message.index, hint: probe) {
                if follower.state == .replicate { follower.becomeProbe() }
                progress[message.from] = follower
                sendAppend(to: message.from, sendIfEmpty: true)
            } else {
                progress[message.from] = follower
            }
            return
        }
        // No correct follower acknowledges entries this leader does not have: such an answer is
        // ignored, since a match beyond the log would let the commit index pass the last index.
        guard message.index <= log.lastIndex else { return }
        let wasPaused = follower.isPaused
        guard follower.maybeUpdate(message.index) else {
            progress[message.from] = follower
            return
        }
        switch follower.state {
        case .probe:
            follower.becomeReplicate()
        case .snapshot:
            if follower.match >= follower.pendingSnapshot {
                follower.becomeProbe()
                follower.becomeReplicate()
            }
        case .replicate:
            follower.inflights.free(upTo: message.index)
        }
        progress[message.from] = follower
        if maybeCommit() {
            broadcastAppend()
        } else if wasPaused {
            sendAppend(to: message.from, sendIfEmpty: true)
        }
        // Fill the in-flight window.
        var sends = 0
        while sends < configuration.inflightMessagesMax && sendAppend(to: message.from, sendIfEmpty: false) { sends += 1 }
        if message.from == leadTransferee, progress[message.from]?.match == log.lastIndex {
            send(Message(type: .timeoutNow, to: message.from))
        }
    }

    private func handleHeartbeatResponse(_ message: Message) {
        guard var follower = progress[message.from] else { return }
        follower.recentActive = true
        follower.probeSent = false
        // A lost append leaves the window full; free a slot so that replication resumes.
        if follower.state == .replicate && follower.inflights.isFull { follower.inflights.freeFirst() }
        progress[message.from] = follower
        if follower.match < log.lastIndex { sendAppend(to: message.from, sendIfEmpty: true) }
        if message.context != 0 { acknowledgeReads(from: message.from, round: message.context) }
    }

    /// Advances the commit index to the highest index stored on a quorum of voters, counting only
    /// entries of the current term (paper 5.4.2, Figure 8). Returns whether it moved.
    func maybeCommit() -> Bool {
        let voters = membership.voters
        guard !voters.isEmpty else { return false }
        var matches = voters.map { progress[$0]?.match ?? 0 }
        matches.sort(by: >)
        let quorumIndex = matches[membership.quorum - 1]
        let requireCurrentTerm = !configuration.unsafeTesting.commitPreviousTermEntriesByCounting
        guard log.maybeCommit(index: quorumIndex, term: term, requireCurrentTerm: requireCurrentTerm) else { return false }
        commitAdvanced()
        return true
    }

    private func commitAdvanced() {
        if !readsAwaitingTermCommit.isEmpty && log.matchTerm(log.committed, term) {
            let waiting = readsAwaitingTermCommit
            readsAwaitingTermCommit = []
            for read in waiting { try? handleReadIndexRequest(from: read.from, context: read.context) }
        }
        // A leader that removed itself steps down once its removal is committed (thesis 4.2.2).
        if !membership.isVoter(id) && membershipIndex <= log.committed {
            becomeFollower(term: term, leader: noNode)
        }
    }

    // MARK: Reads

    private func handleReadIndexRequest(from requester: NodeID, context: UInt64) throws(ProposalError) {
        if pendingReads.count + readsAwaitingTermCommit.count >= configuration.pendingReadsMax {
            throw .tooManyPendingReads(limit: configuration.pendingReadsMax)
        }
        // Until an entry of this term is committed, the leader's commit index may be stale (thesis 6.4).
        guard log.matchTerm(log.committed, term) else {
            readsAwaitingTermCommit.append((requester, context))
            return
        }
        if membership.voters == [id] || configuration.unsafeTesting.skipReadIndexConfirmation {
            releaseRead(from: requester, context: context, index: log.committed)
            return
        }
        readRound += 1
        pendingReads.append(PendingRead(from: requester, context: context, index: log.committed, round: readRound, acknowledgements: [id]))
        broadcastHeartbeat()
    }

    private func acknowledgeReads(from node: NodeID, round: UInt64) {
        guard membership.isVoter(node) else { return }
        var confirmedThrough = -1
        for position in pendingReads.indices where pendingReads[position].round <= round {
            pendingReads[position].acknowledgements.insert(node)
            let voters = pendingReads[position].acknowledgements.filter { membership.isVoter($0) }.count
            if voters >= membership.quorum { confirmedThrough = position }
        }
        guard confirmedThrough >= 0 else { return }
        // A confirmed round confirms every earlier one as well.
        let confirmed = pendingReads[0...confirmedThrough]
        pendingReads.removeFirst(confirmedThrough + 1)
        for read in confirmed { releaseRead(from: read.from, context: read.context, index: read.index) }
    }

    private func releaseRead(from requester: NodeID, context: UInt64, index: UInt64) {
        if requester == id {
            pendingReadStates.append(ReadState(index: index, context: context))
        } else {
            send(Message(type: .readIndexResponse, to: requester, index: index, context: context))
        }
    }

    // MARK: Leadership transfer

    private func startTransfer(to target: NodeID) throws(ProposalError) {
        guard target != id, membership.isVoter(target), progress[target] != nil else { throw .invalidTransferTarget(target) }
        if leadTransferee == target { return }
        leadTransferee = target
        // The transfer must finish within one election timeout or it is abandoned.
        electionElapsed = 0
        if progress[target]?.match == log.lastIndex {
            send(Message(type: .timeoutNow, to: target))
        } else {
            sendAppend(to: target, sendIfEmpty: true)
        }
    }

    // MARK: Timers and elections

    private func tickLeader() {
        heartbeatElapsed += 1
        electionElapsed += 1
        if electionElapsed >= configuration.electionTimeoutTicks {
            electionElapsed = 0
            if configuration.checkQuorum && !quorumRecentlyActive() {
                becomeFollower(term: term, leader: noNode)
                return
            }
            leadTransferee = noNode
        }
        if heartbeatElapsed >= configuration.heartbeatIntervalTicks {
            heartbeatElapsed = 0
            broadcastHeartbeat()
        }
    }

    private func quorumRecentlyActive() -> Bool {
        var active = 0
        for node in membership.voters {
            if node == id || progress[node]?.recentActive == true { active += 1 }
        }
        for node in membership.members where node != id {
            progress[node]?.recentActive = false
        }
        return active >= membership.quorum
    }

    private func tickElection() {
        electionElapsed += 1
        if isPromotable && electionElapsed >= randomizedElectionTimeout {
            electionElapsed = 0
            campaign(transfer: false)
        }
    }

    private func campaign(transfer: Bool) {
        guard isPromotable else { return }
        if configuration.preVote && !transfer {
            becomePreCandidate()
            requestVotes(.requestPreVote, term: term + 1, transfer: false)
        } else {
            becomeCandidate()
            requestVotes(.requestVote, term: term, transfer: transfer)
        }
    }

    private func requestVotes(_ type: MessageType, term requestTerm: UInt64, transfer: Bool) {
        if tallyVote(from: id, granted: true) { return }
        for node in membership.voters where node != id {
            send(Message(
                type: type, to: node, term: requestTerm, logTerm: log.lastTerm, index: log.lastIndex,
                context: transfer ? transferCampaignContext : 0))
        }
    }

    /// Records a vote and acts on a decided election. Returns whether the election was decided.
    @discardableResult
    private func tallyVote(from node: NodeID, granted: Bool) -> Bool {
        guard membership.isVoter(node), votes[node] == nil else { return false }
        votes[node] = granted
        let granting = membership.voters.filter { votes[$0] == true }.count
        let rejecting = membership.voters.filter { votes[$0] == false }.count
        if granting >= membership.quorum {
            if role == .preCandidate {
                becomeCandidate()
                requestVotes(.requestVote, term: term, transfer: false)
            } else {
                becomeLeader()
            }
            return true
        }
        if rejecting >= membership.quorum {
            becomeFollower(term: term, leader: noNode)
            return true
        }
        return false
    }

    private func resetRandomizedElectionTimeout() {
        let timeout = configuration.electionTimeoutTicks
        randomizedElectionTimeout = timeout + Int(random.next() % UInt64(timeout))
    }

    private func reset(term newTerm: UInt64) {
        if term != newTerm {
            term = newTerm
            vote = noNode
        }
        leader = noNode
        electionElapsed = 0
        heartbeatElapsed = 0
        resetRandomizedElectionTimeout()
        leadTransferee = noNode
        votes = [:]
        progress = [:]
        pendingReads = []
        readsAwaitingTermCommit = []
        uncommittedBytes = 0
        appendBroadcastPending = false
    }

    func becomeFollower(term newTerm: UInt64, leader newLeader: NodeID) {
        reset(term: newTerm)
        role = .follower
        leader = newLeader
    }

    private func becomePreCandidate() {
        precondition(role != .leader, "a leader cannot become a pre-candidate")
        // Neither term nor vote changes: that is the point of a pre-vote.
        votes = [:]
        leader = noNode
        role = .preCandidate
    }

    private func becomeCandidate() {
        precondition(role != .leader, "a leader cannot become a candidate")
        reset(term: term + 1)
        vote = id
        role = .candidate
    }

    private func becomeLeader() {
        precondition(role == .candidate, "only a candidate can become leader")
        reset(term: term)
        role = .leader
        leader = id
        rebuildProgress()
        // A new leader commits an empty entry of its term to learn the commit index (paper 8).
        let noOp = Entry(term: term, index: log.lastIndex + 1)
        termStartIndex = noOp.index
        appendAsLeader([noOp])
    }

    private func rebuildProgress() {
        for node in membership.members where progress[node] == nil {
            var follower = Progress(
                next: log.lastIndex + 1, inflightMessagesMax: configuration.inflightMessagesMax,
                inflightBytesMax: configuration.inflightBytesMax, isLearner: membership.isLearner(node))
            if node == id {
                follower.match = log.lastStableIndex
                follower.recentActive = true
                follower.state = .replicate
            }
            progress[node] = follower
        }
        for node in progress.keys where !membership.contains(node) {
            progress[node] = nil
        }
        for node in membership.members { progress[node]?.isLearner = membership.isLearner(node) }
    }

    // MARK: Membership

    /// Updates the membership history for entries just appended at `entries[0].index` and later.
    private func recordAppended(_ entries: [Entry], replacing: Bool) {
        guard let first = entries.first else { return }
        if replacing {
            // Entries from `first.index` on were replaced: memberships they carried are gone (thesis 4.1).
            while membershipHistory.count > 1 && membershipHistory[membershipHistory.count - 1].index >= first.index {
                membershipHistory.removeLast()
            }
        }
        var current = membershipHistory[membershipHistory.count - 1].membership
        for entry in entries where entry.kind == .membershipChange {
            guard let change = MembershipChange.decode(entry.data), case .success(let next) = current.applying(change) else { continue }
            current = next
            membershipHistory.append((entry.index, next))
        }
        if current != membership { setMembership(current) }
    }

    private func setMembership(_ newMembership: Membership) {
        membership = newMembership
        if role == .leader {
            rebuildProgress()
            if leadTransferee != noNode && !newMembership.isVoter(leadTransferee) { leadTransferee = noNode }
        }
        if (role == .candidate || role == .preCandidate) && !newMembership.isVoter(id) {
            becomeFollower(term: term, leader: noNode)
        }
    }

    private func pruneMembershipHistory() {
        let base = log.firstIndex - 1
        while membershipHistory.count > 1 && membershipHistory[1].index <= base {
            membershipHistory.removeFirst()
        }
    }

    // MARK: Sending

    private func send(_ message: Message) {
        var message = message
        message.from = id
        // Responses and requests of other terms set their term explicitly; everything else carries ours.
        if message.term == 0 { message.term = term }
        let independentOfDurability: Bool
        switch message.type {
        case .append, .heartbeat, .snapshot, .timeoutNow, .readIndexResponse:
            independentOfDurability = role == .leader
        case .propose, .readIndex, .transferLeadership:
            independentOfDurability = true
        default:
            independentOfDurability = false
        }
        if independentOfDurability {
            outbox.append(message)
        } else {
            outboxAfterPersist.append(message)
        }
    }
}
