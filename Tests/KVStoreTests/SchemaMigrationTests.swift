import Foundation
import Testing

@testable import KVStore

/// Schema 1 kept `kv` as a `WITHOUT ROWID` table; schema 2 made it a rowid table; schema 3 drops
/// its on-disk index by key (keys are found in the in-memory ``KeyIndex``). Data directories and
/// peers' snapshots of schemas 1 and 2 are migrated on open and on restore, with every row,
/// revision and hash unchanged.
@Suite struct SchemaMigrationTests {
    /// Schema 1's `kv` table, as raftkube created it before schema 2.
    static let schema1KV = """
        CREATE TABLE kv (
            key BLOB NOT NULL, revision INTEGER NOT NULL, sub INTEGER NOT NULL, tombstone INTEGER NOT NULL,
            create_revision INTEGER NOT NULL, version INTEGER NOT NULL, value BLOB NOT NULL, lease INTEGER NOT NULL,
            PRIMARY KEY (key, revision DESC, sub DESC)
        ) WITHOUT ROWID;
        CREATE INDEX kv_by_revision ON kv (revision, sub);
        """

    /// A store with history, a deletion, a compaction, a lease with a key, and a member record.
    static func populated() throws -> TestStore {
        let store = try TestStore()
        for number in 0..<40 { try store.put("k\(number % 7)", String(repeating: "v", count: number * 50)) }
        try store.delete("k3")
        try store.apply(.compaction(CompactionRequest(revision: 20)))
        let lease = try store.grant(ttl: 100)
        try store.put("leased", "x", lease: lease)
        return store
    }

    /// A copy of `store`'s database at `path` in an older `schema` (rollback journal, as a backup
    /// file is), with `kvSQL` creating its `kv` table and indexes and its rows inserted in `order`.
    static func olderSchemaCopy(of store: TestStore, at path: String, schema: Int, kvSQL: String, order: String) throws {
        try store.store.checkpoint()
        let database = try SQLiteDatabase(path: path)
        defer { database.close() }
        try database.execute("ATTACH DATABASE '\(store.path)' AS source")
        try database.execute("""
            BEGIN;
            CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
            \(kvSQL)
            CREATE TABLE leases (id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL, remaining_ttl INTEGER NOT NULL);
            CREATE TABLE lease_keys (lease INTEGER NOT NULL, key BLOB NOT NULL, PRIMARY KEY (lease, key)) WITHOUT ROWID;
            CREATE TABLE members (id INTEGER PRIMARY KEY, name TEXT NOT NULL, peer_urls TEXT NOT NULL, client_urls TEXT NOT NULL);
            INSERT INTO meta SELECT * FROM source.meta;
            UPDATE meta SET value = \(schema) WHERE name = 'schema_version';
            INSERT INTO kv (\(KVStore.versionColumns)) SELECT \(KVStore.versionColumns) FROM source.kv ORDER BY \(order);
            INSERT INTO leases SELECT * FROM source.leases;
            INSERT INTO lease_keys SELECT * FROM source.lease_keys;
            INSERT INTO members SELECT * FROM source.members;
            COMMIT;
            DETACH DATABASE source;
            """)
    }

    /// A schema-1 copy of `store`'s database at `path`.
    static func schema1Copy(of store: TestStore, at path: String) throws {
        try olderSchemaCopy(of: store, at: path, schema: 1, kvSQL: schema1KV, order: "revision, sub")
    }

    static func kvTableSQL(_ store: KVStore) throws -> String {
        let statement = try store.database.statement("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'kv'")
        defer { statement.reset() }
        return try statement.step() ? text(statement.bytes(0)) : ""
    }

    @Test func aSchema1DataDirectoryIsMigratedOnOpenWithEverythingKept() throws {
        let original = try Self.populated()
        // A temporary directory that TestStore removes: the schema-1 file goes beside its store.
        let scratch = try TestStore()
        let path = scratch.directory.appendingPathComponent("schema1-kv.sqlite").path
        try Self.schema1Copy(of: original, at: path)

        let migrated = try KVStore.open(path: path)
        defer { migrated.close() }
        #expect(try migrated.database.integer("SELECT value FROM meta WHERE name = 'schema_version'") == KVStore.schemaVersion)
        #expect(try !Self.kvTableSQL(migrated).contains("WITHOUT ROWID"))
        #expect(try migrated.stateDigest() == original.store.stateDigest())
        #expect(migrated.currentRevision == original.store.currentRevision)
        #expect(migrated.compactRevision == 20)
        #expect(migrated.appliedIndex == original.store.appliedIndex)
        let all = RangeRequest(key: [0], rangeEnd: [0])
        #expect(try migrated.range(all).get() == original.store.range(all).get())
        // And it goes on as a schema-3 store: the next write gets the next revision.
        let responses = try migrated.apply([(index: migrated.appliedIndex + 1, request: .put(PutRequest(key: bytes("new"), value: bytes("1"))))])
        #expect(responses.first?.headerRevision == original.store.currentRevision + 1)
    }

    @Test func aSchema1SnapshotFromAPeerIsTakenAndMigrated() throws {
        let original = try Self.populated()
        // A temporary directory that TestStore removes: the schema-1 file goes beside its store.
        let scratch = try TestStore()
        let path = scratch.directory.appendingPathComponent("schema1-image.sqlite").path
        try Self.schema1Copy(of: original, at: path)
        let image = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        try KVStore.validateSnapshot(image)

        let receiver = try TestStore()
        try receiver.store.restore(from: image)
        #expect(try !Self.kvTableSQL(receiver.store).contains("WITHOUT ROWID"))
        #expect(try receiver.store.stateDigest() == original.store.stateDigest())
        // An image claiming a schema this version does not know is still refused.
        let unknown = try TestStore()
        try unknown.store.database.execute("UPDATE meta SET value = \(KVStore.schemaVersion + 1) WHERE name = 'schema_version'")
        #expect(throws: KVStoreError.self) { try KVStore.validateSnapshot(try unknown.store.snapshotData()) }
    }

    /// A schema-2 copy of `store`'s database at `path`: the rowid table with schema 2's two
    /// indexes, rows in key order.
    static func schema2Copy(of store: TestStore, at path: String) throws {
        try olderSchemaCopy(of: store, at: path, schema: 2, kvSQL: """
            \(KVStore.kvTableSQL(name: "kv"))
            CREATE UNIQUE INDEX kv_key ON kv (key, revision DESC, sub DESC);
            CREATE INDEX kv_by_revision ON kv (revision, sub);
            """, order: "key")
    }

    static func indexNames(_ store: KVStore) throws -> [String] {
        let statement = try store.database.statement("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'kv' ORDER BY name")
        defer { statement.reset() }
        var names: [String] = []
        while try statement.step() { names.append(text(statement.bytes(0))) }
        return names
    }

    /// Rows of a schema-2 file are in key order here (rowids are not revision order): the key
    /// index must not depend on it.
    @Test func aSchema2DataDirectoryAndSnapshotAreMigratedWithoutTheKeyIndexOnDisk() throws {
        let original = try Self.populated()
        let scratch = try TestStore()
        let path = scratch.directory.appendingPathComponent("schema2-kv.sqlite").path
        try Self.schema2Copy(of: original, at: path)
        let image = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))

        let migrated = try KVStore.open(path: path)
        defer { migrated.close() }
        #expect(try migrated.database.integer("SELECT value FROM meta WHERE name = 'schema_version'") == KVStore.schemaVersion)
        #expect(try Self.indexNames(migrated) == ["kv_revision"])
        #expect(try migrated.stateDigest() == original.store.stateDigest())
        let all = RangeRequest(key: [0], rangeEnd: [0])
        for revision in [0, 20, 30, original.store.currentRevision] as [Int64] {
            var request = all
            request.revision = revision
            #expect(try migrated.range(request).get() == original.store.range(request).get(), "revision \(revision)")
        }
        let put = KVRequest.put(PutRequest(key: bytes("k1"), value: bytes("after"), prevKv: true))
        let responses = try migrated.apply([(index: migrated.appliedIndex + 1, request: put)])
        #expect(responses == (try original.store.apply([(index: original.store.appliedIndex + 1, request: put)])))
        #expect(try migrated.stateDigest() == original.store.stateDigest())

        try KVStore.validateSnapshot(image)
        let receiver = try TestStore()
        try receiver.store.restore(from: image)
        #expect(try Self.indexNames(receiver.store) == ["kv_revision"])
        receiver.index = receiver.store.appliedIndex
        try receiver.put("k1", "after")
        #expect(try receiver.store.stateDigest() == original.store.stateDigest())
    }

    @Test func aValueOfOneKilobyteTakesLittleMoreThanItsSizeOnDisk() throws {
        // Schema 1 took ~4.5x for 1 KB values (an overflow page per row); schema 2 about 1.4x.
        let store = try TestStore()
        let value = String(repeating: "x", count: 1_024)
        for number in 0..<2_000 { try store.put(String(format: "/registry/pods/default/pod-%05d", number), value) }
        try store.store.checkpoint()
        let inUse = try store.store.database.integer("SELECT (page_count - freelist_count) * page_size FROM pragma_page_count, pragma_freelist_count, pragma_page_size")
        let raw = 2_000 * (1_024 + 31)
        #expect(Double(inUse) < 2.0 * Double(raw), "\(inUse) bytes in use for \(raw) bytes of keys and values")
    }
}
