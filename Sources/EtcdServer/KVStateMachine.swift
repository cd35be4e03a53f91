import Foundation
import KVStore
import NIOConcurrencyHelpers
import NIOPosix
import RaftRuntime

/// The etcd keyspace as the Raft runtime's state machine: each committed command is an encoded
/// ``KVRequest`` applied to the SQLite-backed ``KVStore``.
///
/// The runtime calls `apply`/`snapshot`/`restore` from its actor; gRPC handlers read (serializable
/// ranges, status) from other tasks. The lock serializes both, which is what makes the
/// `@unchecked Sendable` safe.
public final class KVStateMachine: StateMachine, @unchecked Sendable {
    private let lock = NIOLock()
    private let store: KVStore
    private let path: String
    /// A second connection for reading watch history outside `lock` (opened on first use).
    private let historyLock = NIOLock()
    private var historyReader: KVStore?
    /// Typed responses of applied commands that a caller on this member waits for, by Raft
    /// index, until it picks them up (``takeResponse(index:)``). Other replicas keep none.
    /// Bounded by `responsesMax` and `responseBytesMax`: past either the oldest are dropped
    /// (a caller that gave up never picks its response up), and a caller whose response was
    /// dropped gets an error.
    private var responses: [UInt64: (response: KVResponse, bytes: Int)] = [:]
    private var responseOrder: [UInt64] = []
    private var responseBytes = 0
    let responsesMax: Int
    let responseBytesMax: Int
    /// Called with the events of each applied batch, under no lock, for the watch hub.
    private let onEvents: @Sendable ([WatchEvent], Int64) -> Void
    /// Called with the leases each applied batch granted or removed, under no lock, for the
    /// leader's ``LeaseKeeper`` (which then never scans the lease table to follow them).
    private var onLeases: (@Sendable ([LeaseChange]) -> Void)?
    /// The database's size in bytes after the last change (apply, restore, defragment), read
    /// without `lock` by every write's quota check.
    private let sizeBytes = NIOLockedValueBox<Int64>(0)
    /// Held while a snapshot file is written (``writeSnapshot(toFile:)``) and by ``persist()``,
    /// whose checkpoint waits for every reader: it waits for the copy here, not in SQLite's
    /// busy timeout (which a long copy would outlast, and fail the member).
    private let snapshotCopyLock = NIOLock()

    /// `responsesMax` and `responseBytesMax` bound the responses kept for local callers; the
    /// byte bound is twice the largest range result, so that one always fits.
    public init(path: String, responsesMax: Int = 65_536, responseBytesMax: Int = 2 * KVLimits.default.rangeResultBytesMax,
                onEvents: @escaping @Sendable ([WatchEvent], Int64) -> Void = { _, _ in }) throws {
        precondition(responsesMax > 0 && responseBytesMax > 0)
        self.responsesMax = responsesMax
        self.responseBytesMax = responseBytesMax
        store = try KVStore.open(path: path)
        self.path = path
        Self.removeLeftoverCopies(of: path)
        self.onEvents = onEvents
        try noteSize()
    }

    /// The database's size as of its last change (for the space quota; no lock taken).
    public var databaseSizeBytes: Int64 { sizeBytes.withLockedValue { $0 } }

    /// Records the store's size; call under `lock` (or before the machine is shared).
    private func noteSize() throws {
        let size = try store.databaseSizeBytes()
        sizeBytes.withLockedValue { $0 = size }
    }

    public func apply(_ commands: [AppliedCommand]) throws -> [[UInt8]] {
        var batch: [(index: UInt64, request: KVRequest)] = []
        batch.reserveCapacity(commands.count)
        // A snapshot sent by the leader holds its database as of sending, which may be past the
        // snapshot's index: the commands in between are already in it (etcd's consistent index).
        let held = lock.withLock { store.appliedIndex }
        let fresh = commands.filter { $0.index > held }
        // Responses travel by `takeResponse`; the runtime gets one empty answer per command.
        let answers = [[UInt8]](repeating: [], count: commands.count)
        guard !fresh.isEmpty else { return answers }
        for command in fresh {
            // A command that does not decode was refused before proposing; keep every replica in
            // step by applying it as a no-op read of nothing.
            let request = (try? KVRequest.decode(command.data)) ?? .range(RangeRequest(key: [0]))
            batch.append((command.index, request))
        }
        let (events, revision, leases, observer) = try lock.withLock { () throws -> ([WatchEvent], Int64, [LeaseChange], (@Sendable ([LeaseChange]) -> Void)?) in
            let results = try store.apply(batch)
            try noteSize()
            let leases = self.onLeases == nil ? [] : LeaseChange.changes(batch.map(\.request), results)
            for (position, command) in fresh.enumerated() where command.awaitedHere {
                let bytes = results[position].approximateBytes
                responses[command.index] = (results[position], bytes)
                responseOrder.append(command.index)
                responseBytes += bytes
            }
            // Oldest first; entries already taken are skipped (and cost nothing).
            var dropped = 0
            while dropped < responseOrder.count && (responseOrder.count - dropped > responsesMax || responseBytes > responseBytesMax) {
                if let kept = responses.removeValue(forKey: responseOrder[dropped]) { responseBytes -= kept.bytes }
                dropped += 1
            }
            if dropped > 0 { responseOrder.removeFirst(dropped) }
            if responseOrder.count > 2 * responses.count + 1024 {
                // Taken responses leave their index behind: keep the order list small.
                responseOrder.removeAll { responses[$0] == nil }
            }
            assert(responseBytes >= 0 && responses.count <= responsesMax)
            return (store.lastAppliedEvents, store.currentRevision, leases, self.onLeases)
        }
        if !events.isEmpty { onEvents(events, revision) }
        if !leases.isEmpty { observer?(leases) }
        return answers
    }

    /// Registers the one observer of applied lease grants and removals.
    public func observeLeases(_ observer: @escaping @Sendable ([LeaseChange]) -> Void) {
        lock.withLock { onLeases = observer }
    }

    public func persist() throws -> UInt64? {
        try snapshotCopyLock.withLock {
            try lock.withLock {
                try store.checkpoint()
                return store.appliedIndex
            }
        }
    }

    /// The typed response of the command applied at `index`, once.
    public func takeResponse(index: UInt64) -> KVResponse? {
        lock.withLock {
            guard let kept = responses.removeValue(forKey: index) else { return nil }
            responseBytes -= kept.bytes
            return kept.response
        }
    }

    /// Responses kept for local callers and their approximate bytes (for tests of the bounds).
    public var keptResponses: (count: Int, bytes: Int) {
        lock.withLock { (responses.count, responseBytes) }
    }

    public func snapshot() throws -> [UInt8] {
        try lock.withLock { try store.snapshotData() }
    }

    public func restore(_ data: [UInt8], index: UInt64) throws {
        try lock.withLock {
            try store.restore(from: data, appliedIndexMin: index)
            try noteSize()
        }
    }

    /// A copy of the database for a follower, through a connection of its own: applies go on
    /// meanwhile (see ``KVStore/writeSnapshot(ofDatabaseAt:toFile:)``).
    public func writeSnapshot(toFile target: String) throws {
        try snapshotCopyLock.withLock { try KVStore.writeSnapshot(ofDatabaseAt: path, toFile: target) }
    }

    public func validateSnapshot(file: String, index: UInt64) throws {
        try KVStore.validateSnapshot(file: file, appliedIndexMin: index)
    }

    public func restore(file: String, index: UInt64) throws {
        try lock.withLock {
            try store.restore(fromFile: file, appliedIndexMin: index)
            try noteSize()
        }
    }

    /// A snapshot from a peer must be a store image this member can take (see
    /// ``KVStore/validateSnapshot(_:appliedIndexMin:)``); checked before Raft accepts it.
    public func validateSnapshot(_ data: [UInt8], index: UInt64) throws {
        try KVStore.validateSnapshot(data, appliedIndexMin: index)
    }

    /// Writes a consistent copy of the database to a new file beside it (on a thread of NIO's
    /// pool: applies go on meanwhile), runs `body` with its path, and removes it: for `snapshot
    /// save`, which then streams it without holding it in memory.
    public func withDatabaseCopy<Result: Sendable>(_ body: (String) async throws -> Result) async throws -> Result {
        let copy = "\(path)\(Self.copySuffix)\(String(UInt64.random(in: 1...UInt64.max), radix: 16))"
        defer { try? FileManager.default.removeItem(atPath: copy) }
        try await NIOThreadPool.singleton.runIfActive { try self.writeSnapshot(toFile: copy) }
        return try await body(copy)
    }

    /// Names of database copies in progress: `kv.sqlite.copy-<random>`.
    static let copySuffix = ".copy-"

    /// Removes copies a crash left behind (none is in use before the machine exists).
    private static func removeLeftoverCopies(of path: String) {
        let url = URL(fileURLWithPath: path)
        let prefix = url.lastPathComponent + copySuffix
        let directory = url.deletingLastPathComponent().path
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix(prefix) {
            try? FileManager.default.removeItem(atPath: "\(directory)/\(name)")
        }
    }

    /// Removes the next window of compacted rows (``KVStore/compactStep(rowsMax:)``) under the
    /// lock that applies take, so each step holds them up only for its window; returns whether
    /// rows are left.
    public func compactStep() throws -> Bool {
        try lock.withLock { try store.compactStep() }
    }

    /// The revision up to which compaction has removed its rows on this member.
    public var physicalCompactRevision: Int64 {
        lock.withLock { store.physicalCompactRevision }
    }

    /// Rewrites the database file compactly, after removing what compaction has left to remove
    /// (so that `compact` then `defrag` frees the space, as with etcd).
    public func defragment() throws {
        try lock.withLock {
            try store.finishCompaction()
            try store.vacuum()
            try noteSize()
        }
    }

    public var durableAppliedIndex: UInt64 {
        lock.withLock { store.appliedIndex }
    }

    /// Runs `body` on a second connection to the database, in one read transaction, without the
    /// lock that applies take: for bulk reads of watch history, which then hold up no write.
    /// What it sees is a committed state, possibly a little behind the writer's.
    public func readHistory<Result>(_ body: (KVStore) throws -> Result) throws -> Result {
        try historyLock.withLock {
            if historyReader == nil { historyReader = try KVStore.openReader(path: path, sharing: store) }
            return try historyReader!.readConsistently(body)
        }
    }

    /// Runs `body` with the store under the lock (local reads).
    public func read<Result>(_ body: (KVStore) throws -> Result) rethrows -> Result {
        try lock.withLock { try body(store) }
    }
}

/// A lease that an applied command granted or removed (revoked or expired).
public enum LeaseChange: Sendable, Hashable {
    case granted(id: Int64, ttlSeconds: Int64)
    case removed(id: Int64)

    /// The lease changes of applied `requests`, given their `responses` (refusals change nothing).
    static func changes(_ requests: [KVRequest], _ responses: [KVResponse]) -> [LeaseChange] {
        var changes: [LeaseChange] = []
        for (request, response) in zip(requests, responses) {
            switch (request, response) {
            case (_, .leaseGrant(let granted)): changes.append(.granted(id: granted.id, ttlSeconds: granted.ttl))
            case (.leaseRevoke(let revoke), .leaseRevoke): changes.append(.removed(id: revoke.id))
            case (_, .leaseExpire(let expired)): changes += expired.revoked.map { .removed(id: $0) }
            default: break
            }
        }
        return changes
    }
}
