/// The leader's view of one follower's log (thesis 10.2.1; etcd's `tracker.Progress`).
struct Progress {
    enum State: String {
        /// One append at a time until the follower's match point is found.
        case probe
        /// Appends are pipelined optimistically, bounded by ``Inflights``.
        case replicate
        /// A snapshot is on its way; nothing else is sent until it is reported.
        case snapshot
    }

    /// The highest index known to match the leader's log.
    var match: UInt64 = 0
    /// The next index to send. Invariant: `match < next`.
    var next: UInt64
    var state: State = .probe
    /// While in `.snapshot`, the index of the snapshot sent.
    var pendingSnapshot: UInt64 = 0
    /// Heard from since the last check-quorum round.
    var recentActive = false
    /// In `.probe`, an append was sent and no answer has come yet.
    var probeSent = false
    var inflights: Inflights
    var isLearner: Bool

    init(next: UInt64, inflightMessagesMax: Int, inflightBytesMax: Int, isLearner: Bool) {
        self.next = next
        self.inflights = Inflights(countMax: inflightMessagesMax, bytesMax: inflightBytesMax)
        self.isLearner = isLearner
    }

    var isPaused: Bool {
        switch state {
        case .probe: probeSent
        case .replicate: inflights.isFull
        case .snapshot: true
        }
    }

    mutating func becomeProbe() {
        // After a snapshot, resume just after it; otherwise just after the known match.
        if state == .snapshot {
            let snapshotIndex = pendingSnapshot
            reset(to: .probe)
            next = max(match + 1, snapshotIndex + 1)
        } else {
            reset(to: .probe)
            next = match + 1
        }
    }

    mutating func becomeReplicate() {
        reset(to: .replicate)
        next = match + 1
    }

    mutating func becomeSnapshot(index: UInt64) {
        reset(to: .snapshot)
        pendingSnapshot = index
    }

    private mutating func reset(to newState: State) {
        probeSent = false
        pendingSnapshot = 0
        state = newState
        inflights.reset()
    }

    /// Records an acknowledgement up to `index`; false if it was stale.
    mutating func maybeUpdate(_ index: UInt64) -> Bool {
        var updated = false
        if match < index {
            match = index
            updated = true
            probeSent = false
        }
        next = max(next, index + 1)
        return updated
    }

    /// Records that entries up to `lastIndex` were sent.
    mutating func sentEntries(lastIndex: UInt64, count: Int, bytes: Int) {
        switch state {
        case .replicate:
            if count > 0 {
                next = lastIndex + 1
                inflights.add(index: lastIndex, bytes: bytes)
            }
        case .probe:
            probeSent = true
        case .snapshot:
            preconditionFailure("sending entries while a snapshot is pending")
        }
    }

    /// Handles a rejection of the append after `rejected`; `hint` is the follower's guess of
    /// its last matching index. False if the rejection is stale.
    mutating func maybeDecrease(rejected: UInt64, hint: UInt64) -> Bool {
        if state == .replicate {
            // A rejection at or below the match point is old news.
            if rejected <= match { return false }
            next = match + 1
            return true
        }
        // In probe only the answer to the latest probe counts.
        if next - 1 != rejected { return false }
        next = max(min(rejected, hint + 1), match + 1)
        probeSent = false
        return true
    }
}

/// A bounded window of append messages sent and not yet acknowledged.
struct Inflights {
    let countMax: Int
    let bytesMax: Int
    private(set) var indexes: [UInt64] = []
    private var sizes: [Int] = []
    private var head = 0
    private(set) var bytes = 0

    init(countMax: Int, bytesMax: Int) {
        precondition(countMax > 0 && bytesMax > 0)
        self.countMax = countMax
        self.bytesMax = bytesMax
    }

    var count: Int { indexes.count - head }
    var isFull: Bool { count >= countMax || bytes >= bytesMax }

    mutating func add(index: UInt64, bytes added: Int) {
        precondition(!isFull, "in-flight window overflow")
        precondition(count == 0 || indexes[indexes.count - 1] < index, "in-flight indexes out of order")
        indexes.append(index)
        sizes.append(added)
        bytes += added
    }

    /// Frees every message up to and including `index`.
    mutating func free(upTo index: UInt64) {
        while head < indexes.count && indexes[head] <= index {
            bytes -= sizes[head]
            head += 1
        }
        compactIfNeeded()
    }

    mutating func freeFirst() {
        guard head < indexes.count else { return }
        bytes -= sizes[head]
        head += 1
        compactIfNeeded()
    }

    mutating func reset() {
        indexes.removeAll(keepingCapacity: true)
        sizes.removeAll(keepingCapacity: true)
        head = 0
        bytes = 0
    }

    private mutating func compactIfNeeded() {
        if head == indexes.count {
            reset()
        } else if head > 64 && head * 2 > indexes.count {
            indexes.removeFirst(head)
            sizes.removeFirst(head)
            head = 0
        }
    }
}
