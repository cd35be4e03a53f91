import Foundation
import Testing

@testable import KVStore

/// The lease cap (part of the replicated state, so every replica refuses alike) and the leader's
/// deadline heap.
@Suite struct LeaseBoundsTests {
    @Test("Grants past leasesMax are refused with RESOURCE_EXHAUSTED on every replica alike; revokes and expiries make room; the count survives a reopen and a snapshot")
    func leaseCap() throws {
        let limits = KVLimits(leasesMax: 3)
        let replicas = [try TestStore(limits: limits), try TestStore(limits: limits)]
        var answers: [[KVResponse]] = [[], []]
        for (position, replica) in replicas.enumerated() {
            for id in 1...4 { answers[position].append(try replica.apply(.leaseGrant(LeaseGrantRequest(ttl: 60, id: Int64(id))))) }
        }
        #expect(answers[0] == answers[1], "replicas answer alike")
        #expect(answers[0].last == .error(.tooManyLeases))
        #expect(KVError.tooManyLeases.grpcCode == .resourceExhausted)
        let store = replicas[0]
        #expect(try store.store.leases().count == 3)
        try store.apply(.leaseRevoke(LeaseRevokeRequest(id: 1)))
        #expect(try store.apply(.leaseGrant(LeaseGrantRequest(ttl: 60, id: 5))) != .error(.tooManyLeases))
        try store.apply(.leaseExpire(LeaseExpireRequest(ids: [2, 3])))
        for id in [6, 7] as [Int64] { try store.apply(.leaseGrant(LeaseGrantRequest(ttl: 60, id: id))) }
        #expect(try store.apply(.leaseGrant(LeaseGrantRequest(ttl: 60, id: 8))) == .error(.tooManyLeases))
        store.store.close()
        store.store = try KVStore.open(path: store.path, limits: limits)
        #expect(try store.apply(.leaseGrant(LeaseGrantRequest(ttl: 60, id: 9))) == .error(.tooManyLeases), "counted again at open")
        let copy = try TestStore(limits: limits)
        try copy.store.restore(from: try store.store.snapshotData())
        copy.index = store.index
        #expect(try copy.apply(.leaseGrant(LeaseGrantRequest(ttl: 60, id: 10))) == .error(.tooManyLeases), "counted again at restore")
    }

    @Test("Deadlines come out earliest first from the heap; renewals leave stale entries that are skipped and bounded")
    func deadlineHeap() {
        var deadlines = LeaseDeadlines()
        for id in 1...5_000 as ClosedRange<Int64> { deadlines.granted(id: id, ttlSeconds: 10 + id % 7, nowMs: 0) }
        // Renew every lease many times: entries stay bounded by about twice the leases.
        for round in 1...20 as ClosedRange<Int64> {
            for id in 1...5_000 as ClosedRange<Int64> { _ = deadlines.renew(id: id, nowMs: round) }
        }
        #expect(deadlines.queuedEntries <= 2 * 5_000 + 1_024)
        // Every lease was renewed at 20 ms: due at 20 + TTL seconds; none before.
        #expect(deadlines.expired(nowMs: 10_019, limit: 10_000).isEmpty)
        let due = deadlines.expired(nowMs: 10_020, limit: 10_000)
        #expect(due == (1...5_000).filter { $0 % 7 == 0 }, "TTL 10 s leases, by ID")
        #expect(deadlines.expired(nowMs: 10_020, limit: 3) == [7, 14, 21], "still due until removed; limit respected")
        for id in due { deadlines.removed(id: id) }
        #expect(deadlines.expired(nowMs: 10_020, limit: 10_000).isEmpty)
        // Renewed twice in one millisecond: one entry counts.
        _ = deadlines.renew(id: 1, nowMs: 30)
        _ = deadlines.renew(id: 1, nowMs: 30)
        let later = deadlines.expired(nowMs: 1_000_000, limit: 10_000)
        #expect(later.count == Set(later).count && later.count == 5_000 - due.count)
        #expect(later.contains(1))
        // A leader change starts again from the table; a lost leadership forgets all.
        deadlines.demote()
        #expect(deadlines.expired(nowMs: .max, limit: 10).isEmpty && deadlines.queuedEntries == 0)
    }
}
