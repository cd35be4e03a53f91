import HeapModule

/// The leader's view of when each lease runs out, in the shell's monotonic milliseconds.
///
/// Expiry is not part of the replicated state: only the leader keeps deadlines, renews them on
/// keep-alive, and proposes a ``LeaseExpireRequest`` for those past due, so every replica revokes
/// the same leases at the same log position. A new leader starts every lease afresh from its
/// checkpointed remaining TTL (or the granted TTL), plus an extension, as etcd's `Promote` does:
/// a leader change extends leases and never expires them early. A pure value: time is passed in.
///
/// Deadlines sit in a min-heap beside the table, so that finding the overdue leases costs
/// O(overdue · log n), not a scan of every lease. A renewal pushes a new heap entry and leaves
/// the old one behind (lazy deletion): an entry whose deadline is no longer the lease's is
/// skipped when it reaches the top, and the heap is rebuilt once stale entries outnumber live
/// ones, so it holds at most about twice as many entries as there are leases.
public struct LeaseDeadlines: Sendable {
    public struct Deadline: Sendable, Hashable {
        public var expiresAtMs: Int64
        public var grantedTTL: Int64
    }

    struct Entry: Comparable, Sendable {
        var expiresAtMs: Int64
        var id: Int64
        static func < (left: Entry, right: Entry) -> Bool { (left.expiresAtMs, left.id) < (right.expiresAtMs, right.id) }
    }

    public private(set) var deadlines: [Int64: Deadline] = [:]
    private var queue = Heap<Entry>()

    public init() {}

    /// Heap entries, live and stale (for tests of the bound).
    var queuedEntries: Int { queue.count }

    /// Becoming leader: every lease gets `now + remaining + extension`.
    public mutating func promote(_ leases: [LeaseStatus], nowMs: Int64, extensionMs: Int64) {
        deadlines = [:]
        deadlines.reserveCapacity(leases.count)
        for lease in leases {
            deadlines[lease.id] = Deadline(expiresAtMs: nowMs + lease.remainingTTL * 1000 + extensionMs,
                                           grantedTTL: lease.grantedTTL)
        }
        rebuildQueue()
    }

    /// Losing leadership: forget every deadline (the next leader has its own).
    public mutating func demote() {
        deadlines = [:]
        queue = Heap()
    }

    /// A lease was granted (applied) while leader.
    public mutating func granted(id: Int64, ttlSeconds: Int64, nowMs: Int64) {
        set(id, Deadline(expiresAtMs: nowMs + ttlSeconds * 1000, grantedTTL: ttlSeconds))
    }

    /// A lease was revoked or expired (applied). Its heap entries go stale.
    public mutating func removed(id: Int64) {
        deadlines[id] = nil
    }

    /// A keep-alive: the lease runs for its whole TTL from now. Returns that TTL in seconds, or
    /// nil if the lease is unknown (or already past its deadline, as etcd refuses to renew those).
    public mutating func renew(id: Int64, nowMs: Int64) -> Int64? {
        guard var deadline = deadlines[id], deadline.expiresAtMs > nowMs else { return nil }
        deadline.expiresAtMs = nowMs + deadline.grantedTTL * 1000
        set(id, deadline)
        return deadline.grantedTTL
    }

    /// Whole seconds left, rounded up, for `LeaseTimeToLive`; nil if unknown; 0 once due.
    public func remainingTTL(id: Int64, nowMs: Int64) -> Int64? {
        guard let deadline = deadlines[id] else { return nil }
        let leftMs = deadline.expiresAtMs - nowMs
        return leftMs <= 0 ? 0 : (leftMs + 999) / 1000
    }

    /// Leases past due at `nowMs`, earliest deadline first (ties by ID), at most `limit`: what to
    /// put in the next ``LeaseExpireRequest``. They stay due (and are returned again) until
    /// ``removed(id:)`` says their expiry was applied; stale heap entries met on the way are dropped.
    public mutating func expired(nowMs: Int64, limit: Int) -> [Int64] {
        var due: [Entry] = []
        var seen: Set<Int64> = []
        while due.count < limit, let first = queue.min, first.expiresAtMs <= nowMs {
            queue.removeMin()
            // A lease renewed twice within a millisecond has two identical entries: one counts.
            if deadlines[first.id]?.expiresAtMs == first.expiresAtMs, seen.insert(first.id).inserted { due.append(first) }
        }
        // Still due until their expiry is applied.
        for entry in due { queue.insert(entry) }
        return due.map(\.id)
    }

    private mutating func set(_ id: Int64, _ deadline: Deadline) {
        deadlines[id] = deadline
        queue.insert(Entry(expiresAtMs: deadline.expiresAtMs, id: id))
        if queue.count > 2 * deadlines.count + 1024 { rebuildQueue() }
    }

    private mutating func rebuildQueue() {
        queue = Heap(deadlines.map { Entry(expiresAtMs: $0.value.expiresAtMs, id: $0.key) })
    }
}
