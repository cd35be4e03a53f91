/// The leader's view of when each lease runs out, in the shell's monotonic milliseconds.
///
/// Expiry is not part of the replicated state: only the leader keeps deadlines, renews them on
/// keep-alive, and proposes a ``LeaseExpireRequest`` for those past due, so every replica revokes
/// the same leases at the same log position. A new leader starts every lease afresh from its
/// checkpointed remaining TTL (or the granted TTL), plus an extension, as etcd's `Promote` does:
/// a leader change extends leases and never expires them early. A pure value: time is passed in.
public struct LeaseDeadlines: Sendable, Hashable {
    public struct Deadline: Sendable, Hashable {
        public var expiresAtMs: Int64
        public var grantedTTL: Int64
    }

    public private(set) var deadlines: [Int64: Deadline] = [:]

    public init() {}

    /// Becoming leader: every lease gets `now + remaining + extension`.
    public mutating func promote(_ leases: [LeaseStatus], nowMs: Int64, extensionMs: Int64) {
        deadlines = [:]
        for lease in leases {
            deadlines[lease.id] = Deadline(expiresAtMs: nowMs + lease.remainingTTL * 1000 + extensionMs,
                                           grantedTTL: lease.grantedTTL)
        }
    }

    /// Losing leadership: forget every deadline (the next leader has its own).
    public mutating func demote() {
        deadlines = [:]
    }

    /// A lease was granted (applied) while leader.
    public mutating func granted(id: Int64, ttlSeconds: Int64, nowMs: Int64) {
        deadlines[id] = Deadline(expiresAtMs: nowMs + ttlSeconds * 1000, grantedTTL: ttlSeconds)
    }

    /// A lease was revoked or expired (applied).
    public mutating func removed(id: Int64) {
        deadlines[id] = nil
    }

    /// A keep-alive: the lease runs for its whole TTL from now. Returns that TTL in seconds, or
    /// nil if the lease is unknown (or already past its deadline, as etcd refuses to renew those).
    public mutating func renew(id: Int64, nowMs: Int64) -> Int64? {
        guard var deadline = deadlines[id], deadline.expiresAtMs > nowMs else { return nil }
        deadline.expiresAtMs = nowMs + deadline.grantedTTL * 1000
        deadlines[id] = deadline
        return deadline.grantedTTL
    }

    /// Whole seconds left, rounded up, for `LeaseTimeToLive`; nil if unknown; 0 once due.
    public func remainingTTL(id: Int64, nowMs: Int64) -> Int64? {
        guard let deadline = deadlines[id] else { return nil }
        let leftMs = deadline.expiresAtMs - nowMs
        return leftMs <= 0 ? 0 : (leftMs + 999) / 1000
    }

    /// Leases past due at `nowMs`, earliest deadline first (ties by ID), at most `limit`: what to
    /// put in the next ``LeaseExpireRequest``.
    public func expired(nowMs: Int64, limit: Int) -> [Int64] {
        deadlines.filter { $0.value.expiresAtMs <= nowMs }
            .sorted { ($0.value.expiresAtMs, $0.key) < ($1.value.expiresAtMs, $1.key) }
            .prefix(max(limit, 0))
            .map(\.key)
    }
}
