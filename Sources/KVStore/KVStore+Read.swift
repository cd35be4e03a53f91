import Checksums

extension KVStore {
    /// The columns every version query selects, in this order.
    static let versionColumns = "key, revision, sub, tombstone, create_revision, version, value, lease"

    /// One stored row: a version of a key, or the tombstone of its deletion.
    struct StoredVersion {
        var key: [UInt8]
        var revision: Int64
        var sub: Int64
        var tombstone: Bool
        var createRevision: Int64
        var version: Int64
        var value: [UInt8]
        var lease: Int64

        init(_ statement: SQLiteStatement) {
            key = statement.bytes(0)
            revision = statement.int64(1)
            sub = statement.int64(2)
            tombstone = statement.int64(3) != 0
            createRevision = statement.int64(4)
            version = statement.int64(5)
            value = statement.bytes(6)
            lease = statement.int64(7)
        }

        var keyValue: KeyValue {
            KeyValue(key: key, createRevision: createRevision, modRevision: revision, version: version,
                     value: value, lease: lease)
        }

        /// What a watcher sees: a put with the new version, or a delete naming the revision.
        var event: WatchEvent {
            if tombstone {
                return WatchEvent(
                    type: .delete,
                    kv: KeyValue(key: key, createRevision: 0, modRevision: revision, version: 0, value: [], lease: 0),
                    prevKv: nil)
            }
            return WatchEvent(type: .put, kv: keyValue, prevKv: nil)
        }
    }

    /// The revision a read at `requested` (0 = current) sees, or etcd's refusal.
    func readRevision(_ requested: Int64, current: Int64) throws(KVError) -> Int64 {
        if requested <= 0 { return current }
        if requested > current { throw .futureRevision }
        if requested < state.compactRevision { throw .compacted }
        return requested
    }

    /// Calls `body` with each key's version as of `revision`, in key order, skipping keys that
    /// were deleted or not yet created then; stops when `body` returns false. Keys and metadata
    /// come from the index; values are read from their rows only when `withValues`.
    func forEachLive(
        in range: KeyRange, at revision: Int64, withValues: Bool, _ body: (KeyValue) throws -> Bool
    ) throws {
        try forEachLiveVersion(in: range, at: revision) { key, version in
            try body(try keyValue(key, version, withValue: withValues))
        }
    }

    /// ``forEachLive(in:at:withValues:_:)`` with the index's versions, so that the caller reads
    /// only the values it keeps. `body` runs outside the index's lock, a batch of keys at a time.
    func forEachLiveVersion(
        in range: KeyRange, at revision: Int64, _ body: ([UInt8], IndexedVersion) throws -> Bool
    ) throws {
        var after: [UInt8]?
        repeat {
            let batch = try index.live(in: range, at: revision, after: after, entriesMax: 256)
            for entry in batch.entries {
                guard try body(entry.key, entry.version) else { return }
            }
            after = batch.resume
        } while after != nil
    }

    /// The latest version of `key` at or below `revision`, or nil if it did not exist then.
    func liveVersion(of key: [UInt8], at revision: Int64) throws -> KeyValue? {
        guard let version = try index.newest(of: key, atOrBelow: revision), !version.tombstone else { return nil }
        return try keyValue(key, version, withValue: true)
    }

    /// ``liveVersion(of:at:)`` when it may be gone (a watch event's previous version): nil when
    /// compaction has removed it or this reader's view does not hold it.
    func storedLiveVersion(of key: [UInt8], at revision: Int64) throws -> KeyValue? {
        guard let version = try? index.newest(of: key, atOrBelow: revision), !version.tombstone,
              let value = try storedValue(of: key, version)
        else { return nil }
        return version.keyValue(of: key, value: value)
    }

    // MARK: - Range

    /// Serves a range read from local state (the shell provides linearizability).
    public func range(_ request: RangeRequest) throws -> Result<RangeResponse, KVError> {
        do {
            return .success(try range(request, current: state.currentRevision, visibleRevision: state.currentRevision))
        } catch let refusal as KVError {
            return .failure(refusal)
        }
    }

    /// A range read. `current` bounds the revisions a request may name; `visibleRevision` is what
    /// revision 0 means (inside a txn, it includes the txn's own writes so far).
    func range(_ request: RangeRequest, current: Int64, visibleRevision: Int64) throws -> RangeResponse {
        guard !request.key.isEmpty else { throw KVError.emptyKey }
        let revision = try request.revision <= 0 ? visibleRevision : readRevision(request.revision, current: current)
        let filtered = request.minModRevision != 0 || request.maxModRevision != 0
            || request.minCreateRevision != 0 || request.maxCreateRevision != 0
        var limit = Int(clamping: max(request.limit, 0))
        if limits.rangeKeysMax > 0 {
            limit = limit == 0 ? limits.rangeKeysMax : min(limit, limits.rangeKeysMax)
        }
        // As etcd: with sorting or filters everything is fetched and cut afterwards; otherwise
        // one key past the limit is enough to know whether there are more.
        // A client may ask for `limit` = Int64.max: `limit + 1` must not overflow.
        let fetchMax = (request.sortOrder != .none || filtered || limit == 0 || limit == Int.max) ? Int.max : limit + 1

        var kvs: [KeyValue] = []
        var count: Int64 = 0
        var gatheredBytes = 0
        var tooLarge = false
        let withValues = !request.keysOnly && !request.countOnly
        try forEachLiveVersion(in: KeyRange(key: request.key, rangeEnd: request.rangeEnd), at: revision) { key, version in
            count += 1
            if !request.countOnly && kvs.count < fetchMax {
                let keyValue = try self.keyValue(key, version, withValue: withValues)
                gatheredBytes += keyValue.approximateBytes
                // Stop gathering (and reading values) at the cap: the range fails whatever follows.
                guard gatheredBytes <= limits.rangeResultBytesMax else {
                    tooLarge = true
                    return false
                }
                kvs.append(keyValue)
            }
            return true
        }
        if tooLarge { throw KVError.responseTooLarge }
        if request.maxModRevision != 0 { kvs.removeAll { $0.modRevision > request.maxModRevision } }
        if request.minModRevision != 0 { kvs.removeAll { $0.modRevision < request.minModRevision } }
        if request.minCreateRevision != 0 { kvs.removeAll { $0.createRevision < request.minCreateRevision } }
        if request.maxCreateRevision != 0 { kvs.removeAll { $0.createRevision > request.maxCreateRevision } }

        // etcd sorts ascending by default when the target is not the key, and never re-sorts
        // keys ascending, since they come in that order.
        var order = request.sortOrder
        if request.sortTarget != .key && order == .none {
            order = .ascend
        } else if request.sortTarget == .key && order == .ascend {
            order = .none
        }
        if order != .none {
            kvs.sort { first, second in
                let ascending = KVStore.precedes(first, second, by: request.sortTarget)
                return order == .ascend ? ascending : KVStore.precedes(second, first, by: request.sortTarget)
            }
        }
        var more = false
        if limit > 0 && kvs.count > limit {
            kvs.removeSubrange(limit...)
            more = true
        }
        return RangeResponse(header: ResponseHeader(revision: visibleRevision), kvs: kvs, more: more, count: count)
    }

    /// A total order for sorting: by the target, then by key, so ties never depend on the sort.
    static func precedes(_ first: KeyValue, _ second: KeyValue, by target: RangeRequest.SortTarget) -> Bool {
        func compare<T: Comparable>(_ a: T, _ b: T) -> Bool? { a == b ? nil : a < b }
        let decided: Bool?
        switch target {
        case .key: decided = nil
        case .version: decided = compare(first.version, second.version)
        case .create: decided = compare(first.createRevision, second.createRevision)
        case .mod: decided = compare(first.modRevision, second.modRevision)
        case .value:
            decided = first.value == second.value ? nil : first.value.lexicographicallyPrecedes(second.value)
        }
        return decided ?? first.key.lexicographicallyPrecedes(second.key)
    }

    // MARK: - Watch history

    /// The events of revisions `from` and later on keys in `[key, rangeEnd)` (etcd's range
    /// rules), oldest first, each with its previous version when that is still stored. At most
    /// `eventsMax` events (default ``KVLimits/watchReplayEventsMax``), but never part of a
    /// revision: continue from the last event's revision + 1. Revision 0 means "from now": none.
    public func events(from revision: Int64, key: [UInt8], rangeEnd: [UInt8], eventsMax: Int? = nil)
        throws -> Result<[WatchEvent], KVError>
    {
        try history(from: revision, key: key, rangeEnd: rangeEnd, eventsMax: eventsMax ?? limits.watchReplayEventsMax).map(\.events)
    }

    /// ``events(from:key:rangeEnd:eventsMax:)`` bounded also by `bytesMax` (the events'
    /// ``WatchEvent/approximateBytes``; whole revisions, so one large revision may exceed it),
    /// and whether every event up to the store's revision is in the answer (`complete`) or a
    /// bound cut it short.
    public func history(from revision: Int64, key: [UInt8], rangeEnd: [UInt8], eventsMax: Int, bytesMax: Int = .max)
        throws -> Result<(events: [WatchEvent], complete: Bool), KVError>
    {
        if revision > 0 && revision < state.compactRevision { return .failure(.compacted) }
        guard revision > 0, revision <= state.currentRevision else { return .success(([], true)) }
        let range = KeyRange(key: key, rangeEnd: rangeEnd)
        let maximum = max(eventsMax, 1)
        var events: [WatchEvent] = []
        var bytes = 0
        var complete = true
        do {
            let statement = try database.statement("""
                SELECT \(KVStore.versionColumns) FROM kv
                WHERE revision >= ?3 AND \(range.sqlCondition)
                ORDER BY revision, sub
                """)
            defer { statement.reset() }
            try range.bind(to: statement)
            try statement.bind(3, revision)
            while try statement.step() {
                let row = StoredVersion(statement)
                // A deletion at the compact revision is gone once compaction has removed it;
                // skipped before that too, so that every replica answers alike.
                if isCompactedAway(revision: row.revision, tombstone: row.tombstone, newerAtCompaction: false) { continue }
                if events.count >= maximum || bytes >= bytesMax, let last = events.last, last.kv.modRevision != row.revision {
                    complete = false
                    break
                }
                let event = row.event
                bytes += event.approximateBytes
                events.append(event)
            }
        }
        for position in events.indices {
            let kv = events[position].kv
            events[position].prevKv = try storedLiveVersion(of: kv.key, at: kv.modRevision - 1)
        }
        return .success((events, complete))
    }

    // MARK: - Hash

    /// etcd's `HashKV`: a CRC-32C (Castagnoli) over the compact revision and then every stored
    /// row at or below `revision` (0 = current) that compaction keeps, in key order, newest
    /// first within a key: key,
    /// revision, sub-revision, tombstone flag, create revision, version, lease and value, each
    /// length-prefixed or as 8 big-endian bytes. Replicas that applied the same requests agree.
    public func hashKV(revision requested: Int64) throws -> Result<HashKVResponse, KVError> {
        let revision: Int64
        do {
            revision = try readRevision(requested, current: state.currentRevision)
        } catch {
            return .failure(error)
        }
        var crc = CRC32C.Running()
        crc.update(state.compactRevision)
        // Rows compaction has yet to remove on this replica are skipped: replicas remove them
        // at their own pace (``compactStep(revisionsMax:)``) and must hash alike.
        var after: [UInt8]?
        repeat {
            let batch = index.keys(after: after, keysMax: 256)
            for entry in batch.entries {
                var newerAtCompaction = false
                for version in entry.versions.reversed() where version.revision <= revision {
                    defer { if version.revision <= state.compactRevision { newerAtCompaction = true } }
                    if isCompactedAway(revision: version.revision, tombstone: version.tombstone,
                                       newerAtCompaction: newerAtCompaction) { continue }
                    let value = try keyValue(entry.key, version, withValue: true).value
                    crc.update(Int64(entry.key.count))
                    crc.update(entry.key)
                    for number in [version.revision, version.sub, version.tombstone ? 1 : 0, version.createRevision,
                                   version.version, version.lease] {
                        crc.update(number)
                    }
                    crc.update(Int64(value.count))
                    crc.update(value)
                }
            }
            after = batch.resume
        } while after != nil
        return .success(HashKVResponse(header: ResponseHeader(revision: state.currentRevision), hash: crc.value,
                                       compactRevision: state.compactRevision))
    }

    /// A CRC-32C over everything replicated, beyond what `HashKV` covers: the revision, the
    /// compact revision, all rows, all leases with their checkpoints and all lease attachments.
    /// For tests and consistency checks between replicas.
    public func stateDigest() throws -> UInt32 {
        guard case .success(let kv) = try hashKV(revision: 0) else {
            preconditionFailure("the current revision is always readable")
        }
        var crc = CRC32C.Running()
        crc.update(Int64(kv.hash))
        crc.update(state.currentRevision)
        let leases = try database.statement("SELECT id, ttl, remaining_ttl FROM leases ORDER BY id")
        defer { leases.reset() }
        while try leases.step() {
            crc.update(leases.int64(0))
            crc.update(leases.int64(1))
            crc.update(leases.int64(2))
        }
        let attachments = try database.statement("SELECT lease, key FROM lease_keys ORDER BY lease, key")
        defer { attachments.reset() }
        while try attachments.step() {
            crc.update(attachments.int64(0))
            let key = attachments.bytes(1)
            crc.update(Int64(key.count))
            crc.update(key)
        }
        return crc.value
    }

    // MARK: - Members

    /// The published attributes of every member, by ID. URLs are stored space-separated (a URL
    /// has no spaces).
    public func members() throws -> [MemberAttributes] {
        let statement = try database.statement("SELECT id, name, peer_urls, client_urls FROM members ORDER BY id")
        defer { statement.reset() }
        var members: [MemberAttributes] = []
        while try statement.step() {
            func urls(_ column: Int32) -> [String] {
                String(decoding: statement.bytes(column), as: UTF8.self).split(separator: " ").map(String.init)
            }
            members.append(MemberAttributes(
                id: UInt64(bitPattern: statement.int64(0)), name: String(decoding: statement.bytes(1), as: UTF8.self),
                peerURLs: urls(2), clientURLs: urls(3)))
        }
        return members
    }

    func saveMember(_ member: MemberAttributes) throws {
        let id = Int64(bitPattern: member.id)
        if member.removed {
            let statement = try database.statement("DELETE FROM members WHERE id = ?1")
            try statement.bind(1, id)
            try statement.run()
            return
        }
        // Fields left empty keep what is recorded: a member's publish of its name and client
        // URLs keeps the peer URLs its adder recorded, and the other way round.
        let statement = try database.statement("""
            INSERT INTO members (id, name, peer_urls, client_urls) VALUES (?1, ?2, ?3, ?4)
            ON CONFLICT (id) DO UPDATE SET
                name = CASE WHEN excluded.name = '' THEN name ELSE excluded.name END,
                peer_urls = CASE WHEN excluded.peer_urls = '' THEN peer_urls ELSE excluded.peer_urls END,
                client_urls = CASE WHEN excluded.client_urls = '' THEN client_urls ELSE excluded.client_urls END
            """)
        try statement.bind(1, id)
        try statement.bind(2, member.name)
        try statement.bind(3, member.peerURLs.joined(separator: " "))
        try statement.bind(4, member.clientURLs.joined(separator: " "))
        try statement.run()
    }

    // MARK: - Leases

    func leaseStatus(_ id: Int64) throws -> LeaseStatus? {
        let statement = try database.statement("SELECT id, ttl, remaining_ttl FROM leases WHERE id = ?1")
        defer { statement.reset() }
        try statement.bind(1, id)
        guard try statement.step() else { return nil }
        return LeaseStatus(statement)
    }

    func leaseKeys(_ id: Int64) throws -> [[UInt8]] {
        let statement = try database.statement("SELECT key FROM lease_keys WHERE lease = ?1 ORDER BY key")
        defer { statement.reset() }
        try statement.bind(1, id)
        var keys: [[UInt8]] = []
        while try statement.step() {
            keys.append(statement.bytes(0))
        }
        return keys
    }

    /// Every granted lease, by ID, as etcd's `LeaseLeases` (and for a new leader to start its
    /// ``LeaseDeadlines`` from).
    public func leases() throws -> [LeaseStatus] {
        let statement = try database.statement("SELECT id, ttl, remaining_ttl FROM leases ORDER BY id")
        defer { statement.reset() }
        var leases: [LeaseStatus] = []
        while try statement.step() {
            leases.append(LeaseStatus(statement))
        }
        return leases
    }

    /// etcd's `LeaseTimeToLive` as far as the replicated state knows it (see
    /// ``LeaseTimeToLiveResponse/ttl``).
    public func leaseTimeToLive(id: Int64, keys: Bool) throws -> Result<LeaseTimeToLiveResponse, KVError> {
        guard let lease = try leaseStatus(id) else { return .failure(.leaseNotFound) }
        return .success(LeaseTimeToLiveResponse(
            header: ResponseHeader(revision: state.currentRevision), id: id, ttl: lease.remainingTTL,
            grantedTTL: lease.grantedTTL, keys: keys ? try leaseKeys(id) : []))
    }
}

extension LeaseStatus {
    init(_ statement: SQLiteStatement) {
        let granted = statement.int64(1)
        let remaining = statement.int64(2)
        self.init(id: statement.int64(0), grantedTTL: granted, remainingTTL: remaining > 0 ? remaining : granted)
    }
}
