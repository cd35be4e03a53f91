import KVStore
import NIOConcurrencyHelpers
import Raft
import RaftRuntime
import ServiceLifecycle
import Store

/// The leader's lease clock: deadlines in monotonic milliseconds, renewed by keep-alives, and a
/// loop that proposes the expiry of leases past due, so every replica revokes them at the same
/// log position. Followers keep no deadlines; a member that becomes leader starts every lease
/// afresh from its remaining TTL plus an election timeout (leases are extended, never cut short).
///
/// The lease table is read once, when this member becomes leader; after that grants and removals
/// arrive from the state machine as they are applied (``LeaseChange``), so a keep-alive costs a
/// lock and a heap insert, and a check costs the overdue leases, never a scan of them all.
public final class LeaseKeeper: Service, @unchecked Sendable {
    let member: StoreMember
    let checkIntervalMs: Int64
    let extensionMs: Int64
    let started = ContinuousClock.now
    // Guarded by `lock`.
    private let lock = NIOLock()
    private var deadlines = LeaseDeadlines()
    private var leading = false

    public init(member: StoreMember, checkIntervalMs: Int64 = 250, extensionMs: Int64 = 1_000) {
        self.member = member
        self.checkIntervalMs = checkIntervalMs
        self.extensionMs = extensionMs
        member.stateMachine.observeLeases { [weak self] changes in self?.applied(changes) }
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

    /// Follows leadership, then proposes the expiry of overdue leases.
    func check() async throws {
        let overdue = try lock.withLock { () throws -> [Int64] in
            guard try follow() else { return [] }
            return deadlines.expired(nowMs: nowMs, limit: member.stateMachine.read { $0.limits.leaseIDsPerRequestMax })
        }
        guard !overdue.isEmpty else { return }
        _ = try await member.write(.leaseExpire(LeaseExpireRequest(ids: overdue)))
    }

    /// Under `lock`: starts every lease's clock when this member has become leader (one read of
    /// the lease table), forgets them all when it has stopped. Whether it leads.
    private func follow() throws -> Bool {
        let isLeader = member.runtime.observed.withLockedValue { $0.isLeader }
        if isLeader && !leading {
            let leases = try member.stateMachine.read { try $0.leases() }
            deadlines.promote(leases, nowMs: nowMs, extensionMs: extensionMs)
        } else if !isLeader && leading {
            deadlines.demote()
        }
        leading = isLeader
        return isLeader
    }

    /// Grants and removals as the state machine applied them. Only a leader keeps deadlines; one
    /// that has not taken over yet reads the table when it does, which includes these.
    func applied(_ changes: [LeaseChange]) {
        lock.withLock {
            guard leading else { return }
            let now = nowMs
            for change in changes {
                switch change {
                case .granted(let id, let ttl): deadlines.granted(id: id, ttlSeconds: ttl, nowMs: now)
                case .removed(let id): deadlines.removed(id: id)
                }
            }
        }
    }

    /// A keep-alive: the TTL now granted, nil if the lease is unknown or overdue, or an error
    /// when this member does not lead (only the leader keeps time for leases).
    func renew(_ id: Int64) throws(StoreError) -> Int64? {
        do {
            return try lock.withLock {
                guard try follow() else { throw StoreError.noLeader }
                return deadlines.renew(id: id, nowMs: nowMs)
            }
        } catch {
            throw StoreError.from(error)
        }
    }

    /// Seconds left on the leader's clock, or nil (then the replicated checkpoint answers).
    func remaining(_ id: Int64) -> Int64? {
        lock.withLock { leading ? deadlines.remainingTTL(id: id, nowMs: nowMs) : nil }
    }

    /// Leases whose deadline this member keeps (0 on followers), for tests and status.
    var tracked: Int { lock.withLock { deadlines.deadlines.count } }
}
