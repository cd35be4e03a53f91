extension KVStore {
    /// Every row of `kv` in `database` as the key index holds it: keys in order, each with its
    /// versions oldest first. Read in revision order, so a version's position is checked as it
    /// comes: two rows at one (revision, sub) make the database invalid (a forged image; our
    /// own files have a unique index on it).
    /// `rowIDs` false (schema 1's `WITHOUT ROWID` table) gives every version rowid 0: a check only.
    static func indexedKeys(of database: SQLiteDatabase, rowIDs: Bool = true) throws -> (keys: SortedKeys, versionCount: Int) {
        let statement = try database.statement("""
            SELECT \(rowIDs ? "rowid" : "0"), key, revision, sub, tombstone, create_revision, version, lease FROM kv ORDER BY revision, sub
            """)
        defer { statement.reset() }
        var byKey: [[UInt8]: [IndexedVersion]] = [:]
        var previous: (revision: Int64, sub: Int64)?
        var versionCount = 0
        while try statement.step() {
            let version = IndexedVersion(
                revision: statement.int64(2), sub: statement.int64(3), rowID: statement.int64(0),
                tombstone: statement.int64(4) != 0, createRevision: statement.int64(5), version: statement.int64(6),
                lease: statement.int64(7))
            if let previous, (version.revision, version.sub) <= previous {
                throw KVStoreError.invalidState("two rows at revision \(version.revision), sub \(version.sub)")
            }
            previous = (version.revision, version.sub)
            byKey[statement.bytes(1), default: []].append(version)
            versionCount += 1
        }
        let entries = byKey.map { IndexedKey(key: $0.key, versions: $0.value) }.sorted { compareKeys($0.key, $1.key) < 0 }
        return (SortedKeys(sorted: entries), versionCount)
    }

    /// The value of `version`'s row, nil if the row is not (or no longer) in this connection's
    /// view: compaction removed it, or a reader's view is older or newer than the index. The
    /// row is checked to be `key` at the version's position, so a rowid never reads another
    /// key's value.
    func storedValue(of key: [UInt8], _ version: IndexedVersion) throws -> [UInt8]? {
        let statement = try database.statement("SELECT key, revision, sub, value FROM kv WHERE rowid = ?1")
        defer { statement.reset() }
        try statement.bind(1, version.rowID)
        guard try statement.step(), statement.int64(1) == version.revision, statement.int64(2) == version.sub,
              statement.bytes(0) == key
        else { return nil }
        return statement.bytes(3)
    }

    /// `version` of `key` as a client sees it; with its value when `withValue` (read from its
    /// row; the writer always finds it, so a miss there is a broken database).
    func keyValue(_ key: [UInt8], _ version: IndexedVersion, withValue: Bool) throws -> KeyValue {
        var value: [UInt8] = []
        if withValue && !version.tombstone {
            guard let stored = try storedValue(of: key, version) else {
                throw KVStoreError.invalidState("the row of revision \(version.revision), sub \(version.sub) is missing")
            }
            value = stored
        }
        return version.keyValue(of: key, value: value)
    }
}

extension IndexedVersion {
    /// This version of `key` as a client sees it, with `value`.
    func keyValue(of key: [UInt8], value: [UInt8]) -> KeyValue {
        KeyValue(key: key, createRevision: createRevision, modRevision: revision, version: version, value: value,
                 lease: lease)
    }
}
