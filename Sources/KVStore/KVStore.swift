import CSQLite

/// Failures of the store itself, as opposed to requests etcd would refuse (``KVError``).
public enum KVStoreError: Error, Sendable, Hashable, CustomStringConvertible {
    /// `apply` was given an index at or below the one already applied: the caller replays wrongly.
    case indexNotIncreasing(index: UInt64, appliedIndex: UInt64)
    case invalidSnapshot(String)
    /// The database's own meta values break an invariant (an edited or foreign file).
    case invalidState(String)
    case unsupportedSchema(Int64)

    public var description: String {
        switch self {
        case .indexNotIncreasing(let index, let appliedIndex):
            "entry index \(index) is not above the applied index \(appliedIndex)"
        case .invalidSnapshot(let reason): "invalid snapshot: \(reason)"
        case .invalidState(let reason): "invalid store state: \(reason)"
        case .unsupportedSchema(let version): "unsupported store schema version \(version)"
        }
    }
}

/// The replicated state machine: an etcd v3 MVCC keyspace kept in SQLite, with its keys indexed
/// in memory (``KeyIndex``): rows are appended in revision order, and reads find their keys and
/// versions in the index and fetch only the values they return.
///
/// Every write request increments the store revision by exactly one (a txn's writes share it,
/// ordered by sub-revision); a request that writes nothing leaves it alone. All versions of a key
/// are kept until compacted, so reads at older revisions work. `apply` is deterministic: the same
/// requests in the same order give every replica the same rows, the same responses and the same
/// ``hashKV(revision:)``. No clock and no randomness are read here: lease expiry arrives as a
/// ``LeaseExpireRequest`` decided by the leader.
///
/// Durability: each `apply` batch is one SQLite transaction that also records the last Raft index
/// applied. The database runs in WAL mode with `synchronous=NORMAL`, so a power cut may lose the
/// last batches but never tears one; the Raft log, which is fsynced, replays from
/// ``appliedIndex`` + 1.
///
/// Not `Sendable`: one actor owns a store and calls it one method at a time.
public final class KVStore {
    /// The revision, compact revision and applied index, mirrored from the `meta` table.
    struct State: Hashable {
        /// Invariant: `compactRevision <= currentRevision`, and `currentRevision >= 1`.
        var currentRevision: Int64 = 1
        var compactRevision: Int64 = 0
        var appliedIndex: UInt64 = 0
        /// Rows of the `leases` table (counted at load, kept by grant and revoke), for
        /// ``KVLimits/leasesMax``.
        var leaseCount = 0
        /// Raised alarms, kept in the meta table as `alarm/TYPE/MEMBER` rows.
        var alarms: Set<AlarmMember> = []
        /// The (revision, sub-revision) of the last row ``compactStep(rowsMax:)`` has passed; at
        /// most (`compactRevision`, `Int64.max`), which means that nothing is left to remove.
        /// Local to this replica: it moves with this replica's steps, and nothing a client reads
        /// depends on it.
        var physicalCompactRevision: Int64 = 0
        var physicalCompactSub: Int64 = .max
        /// The rowid the next `kv` row gets: rows are appended, never inserted by key.
        var nextRowID: Int64 = 1
    }

    /// 3: `kv` is indexed on disk by (revision, sub) only; keys are found in the in-memory
    /// ``KeyIndex``. 2 (migrated on open and on restore): `kv` also had the `kv_key (key,
    /// revision, sub)` index, whose random page writes were most of an apply's cost. 1: `kv`
    /// was `WITHOUT ROWID` (migrated too).
    static let schemaVersion: Int64 = 3

    /// The writer connection's SQLite page cache, in KiB (a bound on that memory).
    public static let writerCacheKiB = 65_536

    let path: String
    public let limits: KVLimits
    var database: SQLiteDatabase
    var state = State()
    /// Events produced by the request being applied; moved to `lastAppliedEvents` at commit.
    var pendingEvents: [WatchEvent] = []

    /// The events the last successful ``apply(_:)`` produced, in revision order, for the watch hub.
    public private(set) var lastAppliedEvents: [WatchEvent] = []

    /// The last Raft index whose effects are in the database.
    public var appliedIndex: UInt64 { state.appliedIndex }
    /// The store revision: 1 for an empty store, +1 per write request.
    public var currentRevision: Int64 { state.currentRevision }
    /// Reads below this revision fail with ``KVError/compacted``; 0 before the first compaction.
    public var compactRevision: Int64 { state.compactRevision }
    /// How far compaction has removed rows: ``compactRevision`` when nothing is left to remove.
    public var physicalCompactRevision: Int64 {
        state.physicalCompactSub == .max ? state.physicalCompactRevision : state.physicalCompactRevision - 1
    }
    /// The alarms that stand, by member and type.
    public var alarms: [AlarmMember] { state.alarms.sorted() }

    /// Checkpoints the WAL off the apply path (nil for an in-memory database).
    let checkpointer: WALCheckpointer?

    /// Every key with its versions, shared with readers opened by ``openReader(path:limits:sharing:)``.
    let index: KeyIndex
    /// The keys whose newest version in ``index`` the batch being applied added, in order: what a
    /// rolled-back request or batch takes back.
    var appendedKeys: [[UInt8]] = []

    private init(path: String, limits: KVLimits, database: SQLiteDatabase, index: KeyIndex) {
        self.path = path
        self.limits = limits
        self.database = database
        self.index = index
        checkpointer = path == ":memory:" || path.isEmpty ? nil : WALCheckpointer(path: path)
        if let checkpointer, let handle = database.handle { checkpointer.install(on: handle) }
    }

    deinit {
        checkpointer?.stop()
    }

    /// Opens (creating if needed) the store in the SQLite file at `path`.
    public static func open(path: String, limits: KVLimits = .default) throws -> KVStore {
        if let problem = limits.validate() {
            preconditionFailure("invalid KVLimits: \(problem)")
        }
        let database = try SQLiteDatabase(path: path)
        let store = KVStore(path: path, limits: limits, database: database, index: KeyIndex())
        try store.configureConnection()
        // The writer's page cache (SQLite's default is 2 MiB): with a keyspace of a few hundred
        // MB, every apply re-read its B-tree pages from the kernel; pread's copies were a fifth of
        // the leader's CPU under `etcdctl check perf --load=l`.
        try database.execute("PRAGMA cache_size=-\(KVStore.writerCacheKiB)")
        try store.createSchemaIfNeeded()
        try store.migrateIfNeeded()
        try database.execute(KVStore.kvIndexesSQL)
        try store.loadState()
        try store.index.replace(with: KVStore.indexedKeys(of: database))
        return store
    }

    /// A second connection to the store's file for reading history beside the writer (SQLite's
    /// WAL lets it read committed data while a batch is written), sharing `writer`'s key index.
    /// Use it only through ``readConsistently(_:)``; never apply to it.
    public static func openReader(path: String, limits: KVLimits = .default, sharing writer: KVStore) throws -> KVStore {
        let store = KVStore(path: path, limits: limits, database: try SQLiteDatabase(path: path), index: writer.index)
        try store.configureConnection()
        try store.loadState()
        return store
    }

    /// Runs `body` in one read transaction, with the revisions as of its start: what it reads
    /// is one consistent, committed state, whatever the writer does meanwhile.
    public func readConsistently<Result>(_ body: (KVStore) throws -> Result) throws -> Result {
        try database.execute("BEGIN")
        defer { try? database.execute("COMMIT") }
        try loadState()
        return try body(self)
    }

    /// Closes the database; the store must not be used afterwards.
    public func close() {
        checkpointer?.stop()
        database.close()
    }

    func configureConnection() throws {
        // WAL lets reads go on while a batch is written; NORMAL skips the per-commit fsync,
        // which is safe because the Raft log is fsynced and replays what a crash loses. WAL
        // checkpoints run on the checkpointer's thread. No busy timeout: a writer must never
        // wait for that thread (it would wait out a checkpoint's fsyncs).
        try database.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF;")
    }

    func createSchemaIfNeeded() throws {
        try database.execute("""
            BEGIN IMMEDIATE;
            CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
            \(KVStore.kvTableSQL(name: "kv"))
            CREATE TABLE IF NOT EXISTS leases (
                id INTEGER PRIMARY KEY,
                ttl INTEGER NOT NULL,
                remaining_ttl INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS lease_keys (
                lease INTEGER NOT NULL,
                key BLOB NOT NULL,
                PRIMARY KEY (lease, key)
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS members (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                peer_urls TEXT NOT NULL,
                client_urls TEXT NOT NULL
            );
            INSERT OR IGNORE INTO meta (name, value) VALUES
                ('schema_version', \(KVStore.schemaVersion)),
                ('current_revision', 1),
                ('compact_revision', 0),
                ('applied_index', 0);
            COMMIT;
            """)
    }

    /// The `kv` table of schema 2: a rowid table, so that a row holds up to ~4 KB of its value
    /// in its leaf page. Schema 1 kept it `WITHOUT ROWID`, whose rows spill to an overflow page
    /// past ~1 KB: a 1 KB value took 4.5 times its size on disk (`etcdctl check perf`'s writes
    /// filled the 2 GiB quota after ~190,000 puts), 1.4 times now.
    static func kvTableSQL(name: String) -> String {
        """
        CREATE TABLE IF NOT EXISTS \(name) (
            key BLOB NOT NULL,
            revision INTEGER NOT NULL,
            sub INTEGER NOT NULL,
            tombstone INTEGER NOT NULL,
            create_revision INTEGER NOT NULL,
            version INTEGER NOT NULL,
            value BLOB NOT NULL,
            lease INTEGER NOT NULL
        );
        """
    }

    /// The one on-disk index of the `kv` table: revision order, for history, compaction and
    /// rebuilding the ``KeyIndex``. Unique: every write of a revision has its own sub-revision.
    static let kvIndexesSQL = """
        CREATE UNIQUE INDEX IF NOT EXISTS kv_revision ON kv (revision, sub);
        """

    /// Brings a store of an older schema to ``schemaVersion``, in one transaction: a data
    /// directory or a peer's snapshot written by an earlier raftkube. Rows keep their rowids
    /// from schema 2 on (schema 1's are made in revision order).
    func migrateIfNeeded() throws {
        let schema = (try? database.integer("SELECT value FROM meta WHERE name = 'schema_version'")) ?? -1
        guard schema == 1 || schema == 2 else { return }
        let toRowidTable = schema != 1 ? "" : """
            \(KVStore.kvTableSQL(name: "kv_v2"))
            INSERT INTO kv_v2 (\(KVStore.versionColumns)) SELECT \(KVStore.versionColumns) FROM kv ORDER BY revision, sub;
            DROP TABLE kv;
            ALTER TABLE kv_v2 RENAME TO kv;
            """
        do {
            try database.execute("""
                BEGIN IMMEDIATE;
                \(toRowidTable)
                DROP INDEX IF EXISTS kv_key;
                DROP INDEX IF EXISTS kv_by_revision;
                \(KVStore.kvIndexesSQL)
                UPDATE meta SET value = \(KVStore.schemaVersion) WHERE name = 'schema_version';
                COMMIT;
                """)
        } catch {
            // Two rows at one (revision, sub), for one: the file keeps its old schema and is refused.
            try? database.execute("ROLLBACK")
            throw KVStoreError.invalidState("cannot migrate schema \(schema): \(error)")
        }
    }

    func loadState() throws {
        let statement = try database.statement("SELECT name, value FROM meta")
        defer { statement.reset() }
        var values: [String: Int64] = [:]
        while try statement.step() {
            values[String(decoding: statement.bytes(0), as: UTF8.self)] = statement.int64(1)
        }
        let schema = values["schema_version"] ?? -1
        guard schema == KVStore.schemaVersion else { throw KVStoreError.unsupportedSchema(schema) }
        state = State(
            currentRevision: values["current_revision"] ?? 1,
            compactRevision: values["compact_revision"] ?? 0,
            appliedIndex: UInt64(bitPattern: values["applied_index"] ?? 0),
            leaseCount: try countLeases(),
            alarms: Set(values.keys.compactMap(KVStore.alarm(metaName:))),
            // Stores written before compaction ran in steps compacted inside the apply.
            physicalCompactRevision: values["compact_physical_revision"] ?? values["compact_revision"] ?? 0,
            physicalCompactSub: values["compact_physical_sub"] ?? .max,
            nextRowID: try database.integer("SELECT COALESCE(MAX(rowid), 0) FROM kv") + 1
        )
        // The file may have been restored from a peer's image or edited: refuse, never trap.
        guard state.currentRevision >= 1, state.compactRevision >= 0,
              state.compactRevision <= state.currentRevision,
              state.physicalCompactRevision >= 0, state.physicalCompactRevision <= state.compactRevision
        else {
            throw KVStoreError.invalidState("meta table violates revision invariants: \(state)")
        }
    }

    /// The meta row that records `alarm` while it stands.
    static func metaName(of alarm: AlarmMember) -> String { "alarm/\(alarm.alarm.rawValue)/\(alarm.memberID)" }

    /// The alarm a meta row records, if it is an alarm row of a known type.
    static func alarm(metaName name: String) -> AlarmMember? {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "alarm", let type = UInt8(parts[1]).flatMap(AlarmType.init(rawValue:)), type != .none,
              let member = UInt64(parts[2]) else { return nil }
        return AlarmMember(memberID: member, alarm: type)
    }

    private func countLeases() throws -> Int {
        let statement = try database.statement("SELECT COUNT(*) FROM leases")
        defer { statement.reset() }
        guard try statement.step() else { return 0 }
        return Int(statement.int64(0))
    }

    func saveState() throws {
        let statement = try database.statement("INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)")
        for (name, value) in [
            ("current_revision", state.currentRevision),
            ("compact_revision", state.compactRevision),
            ("compact_physical_revision", state.physicalCompactRevision),
            ("compact_physical_sub", state.physicalCompactSub),
            ("applied_index", Int64(bitPattern: state.appliedIndex)),
        ] {
            try statement.bind(1, name)
            try statement.bind(2, value)
            try statement.run()
        }
    }

    // MARK: - Apply

    /// Applies committed Raft entries in order, in one SQLite transaction that also records the
    /// last index. Returns one response per request; etcd's refusals are `.error` values that
    /// change nothing. Throws only when SQLite fails, and then nothing of the batch is kept.
    public func apply(_ batch: [(index: UInt64, request: KVRequest)]) throws -> [KVResponse] {
        guard !batch.isEmpty else { return [] }
        let saved = state
        pendingEvents = []
        appendedKeys = []
        try database.execute("BEGIN IMMEDIATE")
        do {
            var responses: [KVResponse] = []
            responses.reserveCapacity(batch.count)
            for (index, request) in batch {
                guard index > state.appliedIndex else {
                    throw KVStoreError.indexNotIncreasing(index: index, appliedIndex: state.appliedIndex)
                }
                responses.append(try applyOne(request, index: index))
                state.appliedIndex = index
            }
            try saveState()
            try database.execute("COMMIT")
            lastAppliedEvents = pendingEvents
            pendingEvents = []
            appendedKeys = []
            return responses
        } catch {
            try? database.execute("ROLLBACK")
            state = saved
            pendingEvents = []
            takeBackAppendedVersions(downTo: 0)
            throw error
        }
    }

    /// Applies one request inside a savepoint, so that a refusal found half-way (for example the
    /// third put of a txn names an unknown lease) undoes the first two writes.
    private func applyOne(_ request: KVRequest, index: UInt64) throws -> KVResponse {
        let before = state
        let eventsBefore = pendingEvents.count
        let appendedBefore = appendedKeys.count
        try database.statement("SAVEPOINT request").run()
        do {
            let response = try execute(request, index: index)
            try database.statement("RELEASE request").run()
            return response
        } catch let refusal as KVError {
            try database.statement("ROLLBACK TO request").run()
            try database.statement("RELEASE request").run()
            state = before
            pendingEvents.removeSubrange(eventsBefore...)
            takeBackAppendedVersions(downTo: appendedBefore)
            return .error(refusal)
        }
    }

    /// Removes from the index the versions appended since ``appendedKeys`` had `count` entries,
    /// newest first (their rows were rolled back).
    private func takeBackAppendedVersions(downTo count: Int) {
        while appendedKeys.count > count {
            index.removeNewest(of: appendedKeys.removeLast())
        }
    }

    // MARK: - Snapshots

    /// Rewrites the database file without free pages (etcd's defragment).
    public func vacuum() throws {
        try database.execute("VACUUM")
    }

    /// Makes every applied batch durable in the database file: a full WAL checkpoint, which
    /// fsyncs the WAL and then the database (`synchronous=NORMAL` leaves commits unsynced). After
    /// it, ``appliedIndex`` survives a power cut, so the Raft log up to it may be dropped.
    public func checkpoint() throws {
        // Waits (here only) for a checkpoint of the checkpointer's thread to finish.
        sqlite3_busy_timeout(database.handle, 10_000)
        defer { sqlite3_busy_timeout(database.handle, 0) }
        let statement = try database.statement("PRAGMA wal_checkpoint(FULL)")
        guard try statement.step() else { throw SQLiteError(code: SQLITE_ERROR, message: "no checkpoint result", context: "checkpointing") }
        let busy = statement.int64(0)
        statement.reset()
        // Only the checkpointer's PASSIVE checkpoints compete, and the busy timeout waits them out.
        guard busy == 0 else { throw SQLiteError(code: SQLITE_BUSY, message: "the checkpoint could not complete", context: "checkpointing") }
    }

    /// A consistent copy of the whole database (data, leases, revisions and applied index), as
    /// the bytes of an SQLite file in rollback-journal mode.
    public func snapshotData() throws -> [UInt8] {
        var size: sqlite3_int64 = 0
        guard let pointer = sqlite3_serialize(database.handle, "main", &size, 0) else {
            throw SQLiteError(code: SQLITE_NOMEM, message: database.lastErrorMessage, context: "serializing a snapshot")
        }
        defer { sqlite3_free(pointer) }
        var bytes = Array(UnsafeRawBufferPointer(start: pointer, count: Int(size)))
        // Bytes 18 and 19 say WAL mode (2); a snapshot is a plain file, so mark it rollback (1).
        // This is also what lets `restore` open it in memory, where WAL is not available.
        if bytes.count >= 100 {
            bytes[18] = 1
            bytes[19] = 1
        }
        return bytes
    }

    /// Replaces the whole state with a snapshot from ``snapshotData()``, atomically: either the
    /// snapshot is checked and copied in completely, or the store is unchanged.
    ///
    /// A snapshot may come from a peer, so every check that could otherwise fail later (a trap on
    /// load, SQL errors on every apply) is made here, before our own data is touched: see
    /// ``validateSnapshot(_:appliedIndexMin:)``.
    public func restore(from data: [UInt8], appliedIndexMin: UInt64 = 0) throws {
        let source = try KVStore.checkedImage(data, appliedIndexMin: appliedIndexMin)
        defer { source.close() }
        try restore(checkedSource: source)
    }

    /// Replaces the database with `source` (checked by ``checkImage(_:appliedIndexMin:)``).
    func restore(checkedSource source: SQLiteDatabase) throws {
        // The index is built from the image before anything of ours changes: it is also the
        // last check (no two rows at one position).
        let schema = try source.integer("SELECT value FROM meta WHERE name = 'schema_version'")
        // Schema 1's `kv` has no rowids: its rows get theirs in migration.
        var indexed = try KVStore.indexedKeys(of: source, rowIDs: schema != 1)
        // The backup API copies every page inside one write transaction of ours: atomic.
        try KVStore.backup(from: source, into: database, context: "copying the snapshot")
        try configureConnection()
        try migrateIfNeeded()
        try database.execute(KVStore.kvIndexesSQL)
        try loadState()
        // Schema 1's rows get new rowids in migration.
        if schema == 1 { indexed = try KVStore.indexedKeys(of: database) }
        index.replace(with: indexed)
        lastAppliedEvents = []
    }

    /// The largest store revision a snapshot may hold: every write adds one, so a revision near
    /// `Int64.max` can only come from a forged image, and would overflow on the next write.
    static let snapshotRevisionMax: Int64 = Int64.max / 2

    /// Checks that `data` is a snapshot this store can take without trapping or failing later:
    /// an SQLite image that passes `quick_check`, of our schema version, with every table and
    /// column the store uses, meta values that keep the revision invariants (`1 <= current`,
    /// `0 <= compact <= current`, no stored row above `current`), and an applied index of at least
    /// `appliedIndexMin` (a peer's snapshot at index N must hold everything up to N). Throws
    /// ``KVStoreError/invalidSnapshot(_:)`` with the reason. Touches no store: callable from any
    /// thread.
    public static func validateSnapshot(_ data: [UInt8], appliedIndexMin: UInt64 = 0) throws {
        try checkedImage(data, appliedIndexMin: appliedIndexMin).close()
    }

    /// `data` loaded into an in-memory database and checked (see ``validateSnapshot(_:appliedIndexMin:)``).
    static func checkedImage(_ data: [UInt8], appliedIndexMin: UInt64) throws -> SQLiteDatabase {
        let header = Array("SQLite format 3".utf8) + [0]
        guard data.count >= 512, Array(data.prefix(16)) == header else {
            throw KVStoreError.invalidSnapshot("not an SQLite database image")
        }
        var memoryHandle: OpaquePointer?
        guard sqlite3_open_v2(":memory:", &memoryHandle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil) == SQLITE_OK,
              let memoryHandle
        else {
            sqlite3_close_v2(memoryHandle)
            throw SQLiteError(code: SQLITE_CANTOPEN, message: "cannot open an in-memory database", context: "restoring")
        }
        let source = SQLiteDatabase(handle: memoryHandle)
        do {
            guard let buffer = sqlite3_malloc64(sqlite3_uint64(data.count)) else {
                throw SQLiteError(code: SQLITE_NOMEM, message: "out of memory", context: "restoring")
            }
            var image = data
            image[18] = 1
            image[19] = 1
            image.withUnsafeBytes { bytes in
                buffer.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
            }
            let flags = UInt32(SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_RESIZEABLE)
            let code = sqlite3_deserialize(memoryHandle, "main", buffer.assumingMemoryBound(to: UInt8.self),
                                           sqlite3_int64(data.count), sqlite3_int64(data.count), flags)
            guard code == SQLITE_OK else {
                throw KVStoreError.invalidSnapshot("SQLite cannot load the image (code \(code))")
            }
            try checkImage(source, appliedIndexMin: appliedIndexMin)
            return source
        } catch {
            source.close()
            throw error
        }
    }

    static func checkImage(_ source: SQLiteDatabase, appliedIndexMin: UInt64) throws {
        func invalid(_ reason: String) -> KVStoreError { .invalidSnapshot(reason) }
        do {
            let check = try source.statement("PRAGMA quick_check")
            defer { check.reset() }
            guard try check.step(), String(decoding: check.bytes(0), as: UTF8.self) == "ok" else {
                throw invalid("integrity check failed")
            }
        } catch let error as KVStoreError {
            throw error
        } catch {
            throw invalid("integrity check failed: \(error)")
        }
        let schema = try? source.integer("SELECT value FROM meta WHERE name = 'schema_version'")
        guard schema == KVStore.schemaVersion || schema == 2 || schema == 1 else {
            throw invalid("schema version \(schema.map(String.init) ?? "missing")")
        }
        // Only our own tables and indexes: a trigger or a view in a forged image would run, or
        // fail, inside every later apply.
        let foreign = (try? source.integer("""
            SELECT COUNT(*) FROM sqlite_master WHERE type NOT IN ('table', 'index')
               OR (type = 'table' AND name NOT IN ('meta', 'kv', 'leases', 'lease_keys', 'members'))
            """)) ?? -1
        guard foreign == 0 else { throw invalid("unexpected tables, views or triggers") }
        // Every table and column the store reads or writes must be there, or every later apply
        // would fail (and the member with it, on every restart).
        for query in [
            "SELECT name, value FROM meta LIMIT 0",
            "SELECT \(versionColumns) FROM kv LIMIT 0",
            "SELECT id, ttl, remaining_ttl FROM leases LIMIT 0",
            "SELECT lease, key FROM lease_keys LIMIT 0",
            "SELECT id, name, peer_urls, client_urls FROM members LIMIT 0",
        ] {
            do {
                _ = try source.statement(query)
            } catch {
                throw invalid("missing table or column: \(error)")
            }
        }
        func meta(_ name: String) throws -> Int64 {
            guard let value = try? source.integer("SELECT value FROM meta WHERE name = '\(name)'") else {
                throw invalid("meta value \(name) missing")
            }
            return value
        }
        let current = try meta("current_revision")
        let compact = try meta("compact_revision")
        let applied = UInt64(bitPattern: try meta("applied_index"))
        guard current >= 1, current <= snapshotRevisionMax, compact >= 0, compact <= current else {
            throw invalid("revisions out of range: current \(current), compact \(compact)")
        }
        guard applied >= appliedIndexMin else {
            throw invalid("applied index \(applied) is below the snapshot's index \(appliedIndexMin)")
        }
        let newest = (try? source.integer("SELECT COALESCE(MAX(revision), 0) FROM kv")) ?? Int64.max
        guard newest <= current else {
            throw invalid("a row at revision \(newest) is above the current revision \(current)")
        }
        // Each write of a revision has its own sub-revision: the key index relies on it (and
        // the unique index our files have on it could not be made).
        let shared = (try? source.integer("""
            SELECT COUNT(*) FROM (SELECT 1 FROM kv GROUP BY revision, sub HAVING COUNT(*) > 1)
            """)) ?? -1
        guard shared == 0 else { throw invalid("rows share a revision and sub-revision") }
    }

    /// Takes a backup's keyspace (keys with their history and revisions, leases, the compaction
    /// point) as the start of a new cluster's store: the old cluster's members and applied index
    /// do not carry over, as with `etcdutl snapshot restore`.
    public func restoreBackup(_ data: [UInt8]) throws {
        try restore(from: data)
        try database.execute("BEGIN IMMEDIATE; DELETE FROM members; UPDATE meta SET value = 0 WHERE name = 'applied_index'; COMMIT;")
        try loadState()
    }

    // MARK: - Status

    /// The database file's size in bytes, for etcd's `Status.dbSize` and the space quota. It
    /// shrinks only when the file is rewritten (``vacuum()``, etcd's defragment).
    public func databaseSizeBytes() throws -> Int64 {
        try database.integer("PRAGMA page_count") * database.integer("PRAGMA page_size")
    }

    /// The bytes of the file's pages in use (not on SQLite's free list), for `Status.dbSizeInUse`.
    public func databaseSizeInUseBytes() throws -> Int64 {
        try (database.integer("PRAGMA page_count") - database.integer("PRAGMA freelist_count")) * database.integer("PRAGMA page_size")
    }
}
