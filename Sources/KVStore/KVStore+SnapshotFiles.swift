import CSQLite
import Glibc

/// Snapshots as files: what a member sends a follower and what it restores from, copied page by
/// page between SQLite files, so that a database of any size costs disk and a small cache, never
/// its size in memory.
extension KVStore {
    /// Writes a consistent copy of the database at `source` to a new file at `target` (0600,
    /// never through a symbolic link), as an SQLite file in rollback-journal mode, synced.
    ///
    /// Reads through a connection of its own, in one read transaction (SQLite's WAL lets the
    /// writer go on meanwhile), so it takes no lock of the store: callable from any thread while
    /// the store applies. What it copies is a committed state, at or after the last one the
    /// writer made durable. A checkpoint that must wait for every reader (``checkpoint()``)
    /// waits for it: callers serialize the two.
    public static func writeSnapshot(ofDatabaseAt source: String, toFile target: String) throws {
        let descriptor = Glibc.open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw SQLiteError(code: SQLITE_CANTOPEN, message: String(cString: strerror(errno)), context: "creating \(target)")
        }
        Glibc.close(descriptor)
        // From here the file is ours: on failure it goes.
        do {
            let reader = try SQLiteDatabase(path: source, flags: SQLITE_OPEN_READONLY)
            defer { reader.close() }
            let copy = try SQLiteDatabase(path: target, flags: SQLITE_OPEN_READWRITE)
            defer { copy.close() }
            // The copy is synced once, whole, below; it needs no journal of its own.
            try copy.execute("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;")
            try backup(from: reader, into: copy, context: "copying the database to \(target)")
            copy.close()
            try markRollbackJournalAndSync(target)
        } catch {
            unlink(target)
            throw error
        }
    }

    /// ``validateSnapshot(_:appliedIndexMin:)`` for the snapshot file at `path` (from
    /// ``writeSnapshot(ofDatabaseAt:toFile:)``, or a peer's): read, never changed.
    public static func validateSnapshot(file path: String, appliedIndexMin: UInt64 = 0) throws {
        try checkedImage(file: path, appliedIndexMin: appliedIndexMin).close()
    }

    /// ``restore(from:appliedIndexMin:)`` from the snapshot file at `path`, which is only read.
    public func restore(fromFile path: String, appliedIndexMin: UInt64 = 0) throws {
        let source = try KVStore.checkedImage(file: path, appliedIndexMin: appliedIndexMin)
        defer { source.close() }
        try restore(checkedSource: source)
    }

    /// The file at `path` opened read-only and checked (see ``validateSnapshot(_:appliedIndexMin:)``).
    static func checkedImage(file path: String, appliedIndexMin: UInt64) throws -> SQLiteDatabase {
        // The header first: a file in WAL mode would make SQLite look for a `-wal` file beside it
        // (a snapshot is one file), and anything else is not a database at all.
        let descriptor = Glibc.open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard descriptor >= 0 else { throw KVStoreError.invalidSnapshot("cannot open the image: \(String(cString: strerror(errno)))") }
        var header = [UInt8](repeating: 0, count: 100)
        let read = header.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, 100, 0) }
        Glibc.close(descriptor)
        let magic = Array("SQLite format 3".utf8) + [0]
        guard read == 100, Array(header.prefix(16)) == magic else { throw KVStoreError.invalidSnapshot("not an SQLite database image") }
        guard header[18] == 1, header[19] == 1 else { throw KVStoreError.invalidSnapshot("the image is not in rollback-journal mode") }
        let source: SQLiteDatabase
        do {
            source = try SQLiteDatabase(path: path, flags: SQLITE_OPEN_READONLY)
        } catch {
            throw KVStoreError.invalidSnapshot("SQLite cannot open the image: \(error)")
        }
        do {
            try checkImage(source, appliedIndexMin: appliedIndexMin)
            return source
        } catch {
            source.close()
            throw error
        }
    }

    /// Copies every page of `source` into `destination`'s main database, in one step (one
    /// read transaction on the source, one write transaction on the destination: atomic).
    static func backup(from source: SQLiteDatabase, into destination: SQLiteDatabase, context: String) throws {
        guard let backup = sqlite3_backup_init(destination.handle, "main", source.handle, "main") else {
            throw SQLiteError(code: sqlite3_errcode(destination.handle), message: destination.lastErrorMessage, context: "starting \(context)")
        }
        let stepCode = sqlite3_backup_step(backup, -1)
        let finishCode = sqlite3_backup_finish(backup)
        guard stepCode == SQLITE_DONE else {
            throw SQLiteError(code: stepCode, message: destination.lastErrorMessage, context: context)
        }
        try destination.check(finishCode, "finishing \(context)")
    }

    /// Bytes 18 and 19 of the header say WAL mode (2), as copied from the live database; a
    /// snapshot is one plain file, so they say rollback (1). Then the file is synced.
    private static func markRollbackJournalAndSync(_ path: String) throws {
        let descriptor = Glibc.open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC)
        guard descriptor >= 0 else { throw SQLiteError(code: SQLITE_CANTOPEN, message: String(cString: strerror(errno)), context: "opening \(path)") }
        defer { Glibc.close(descriptor) }
        let mode: [UInt8] = [1, 1]
        let written = mode.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, 2, 18) }
        guard written == 2, fsync(descriptor) == 0 else {
            throw SQLiteError(code: SQLITE_IOERR, message: String(cString: strerror(errno)), context: "finishing \(path)")
        }
    }
}
