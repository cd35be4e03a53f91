import KVStore
import Raft
import RaftRuntime
import ServiceLifecycle

/// The leader's lease clock: deadlines in monotonic milliseconds, renewed by keep-alives, and a
/// loop that proposes the expiry of leases past due, so every replica revokes them at the same
/// log position. Followers keep no deadlines; a member that becomes leader starts every lease
/// afresh from its remaining TTL plus an election timeout (leases are extended, never cut short).
public actor LeaseKeeper: Service {
    let member: StoreMember
    let checkIntervalMs: Int64
    let extensionMs: Int64
    var deadlines = LeaseDeadlines()
    var leading = false
    let started = ContinuousClock.now

    public init(member: StoreMember, checkIntervalMs: Int64 = 250, extensionMs: Int64 = 1_000) {
        self.member = member
        self.checkIntervalMs = checkIntervalMs
        self.extensionMs = extensionMs
    }

    var nowMs: Int64 {
        let elapsed = ContinuousClock.now - started
        return elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
    }

    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    try await Task.sleep(for: .milliseconds(self.checkIntervalMs))
                    try? await self.check()
                }
            }
        } catch is CancellationError {
        }
    }

    /// Follows leadership and the granted leases, then proposes the expiry of overdue ones.
    func check() async throws {
        let status = try await member.runtime.status()
        let isLeader = status.role == .leader
        let leases = try member.stateMachine.read { try $0.leases() }
        if isLeader && !leading {
            deadlines.promote(leases, nowMs: nowMs, extensionMs: extensionMs)
        } else if !isLeader && leading {
            deadlines.demote()
        }
        leading = isLeader
        guard isLeader else { return }
        let known = Set(leases.map(\.id))
        for lease in leases where deadlines.deadlines[lease.id] == nil {
            deadlines.granted(id: lease.id, ttlSeconds: lease.grantedTTL, nowMs: nowMs)
        }
        for id in deadlines.deadlines.keys where !known.contains(id) { deadlines.removed(id: id) }
        let overdue = deadlines.expired(nowMs: nowMs, limit: 1_000)
        guard !overdue.isEmpty else { return }
        _ = try await member.write(.leaseExpire(LeaseExpireRequest(ids: overdue)))
    }

    /// A keep-alive: the TTL now granted, nil if the lease is unknown or overdue, or an error
    /// when this member does not lead (only the leader keeps time for leases).
    func renew(_ id: Int64) async throws -> Int64? {
        try await check()
        guard leading else { throw StoreMember.status(.notLeader(leader: noNode)) }
        return deadlines.renew(id: id, nowMs: nowMs)
    }

    /// Seconds left on the leader's clock, or nil (then the replicated checkpoint answers).
    func remaining(_ id: Int64) -> Int64? {
        leading ? deadlines.remainingTTL(id: id, nowMs: nowMs) : nil
    }

    func granted(_ id: Int64, ttl: Int64) {
        if leading { deadlines.granted(id: id, ttlSeconds: ttl, nowMs: nowMs) }
    }
}
