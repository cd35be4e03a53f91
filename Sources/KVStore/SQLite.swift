import CSQLite

/// A failure reported by SQLite: the disk, the file, or a bug in a statement. These are the only
/// errors ``KVStore`` throws; everything a client can cause is a ``KVError`` value instead.
public struct SQLiteError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The SQLite result code (`SQLITE_IOERR`, `SQLITE_CORRUPT`, ...).
    public var code: Int32
    public var message: String
    /// What the store was doing when it failed.
    public var context: String

    public var description: String { "SQLite error \(code) while \(context): \(message)" }
}

/// One SQLite connection with a cache of prepared statements. Not thread-safe: it belongs to
/// exactly one ``KVStore``, which belongs to one actor.
final class SQLiteDatabase {
    private(set) var handle: OpaquePointer?
    private var statements: [String: SQLiteStatement] = [:]

    /// Opens `path` (`flags` as SQLite's, for example read-only; created if missing by default).
    init(path: String, flags: Int32 = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) throws {
        var connection: OpaquePointer?
        let code = sqlite3_open_v2(path, &connection, flags | SQLITE_OPEN_NOMUTEX, nil)
        guard code == SQLITE_OK, let connection else {
            let message = connection.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(connection)
            throw SQLiteError(code: code, message: message, context: "opening \(path)")
        }
        handle = connection
    }

    /// Wraps an already opened connection (for example an in-memory one holding a snapshot).
    init(handle: OpaquePointer) {
        self.handle = handle
    }

    deinit {
        close()
    }

    func close() {
        statements.removeAll()
        if let handle {
            sqlite3_close_v2(handle)
        }
        handle = nil
    }

    var lastErrorMessage: String {
        guard let handle else { return "connection closed" }
        return String(cString: sqlite3_errmsg(handle))
    }

    func check(_ code: Int32, _ context: @autoclosure () -> String) throws {
        guard code == SQLITE_OK || code == SQLITE_DONE || code == SQLITE_ROW else {
            throw SQLiteError(code: code, message: lastErrorMessage, context: context())
        }
    }

    /// Runs one or more statements that take no parameters and return no rows that matter.
    func execute(_ sql: String) throws {
        var errorMessage: UnsafeMutablePointer<CChar>?
        let code = sqlite3_exec(handle, sql, nil, nil, &errorMessage)
        if code != SQLITE_OK {
            let message = errorMessage.map { String(cString: $0) } ?? lastErrorMessage
            sqlite3_free(errorMessage)
            throw SQLiteError(code: code, message: message, context: "executing \(sql.prefix(80))")
        }
    }

    /// A prepared statement for `sql`, reset and with its bindings cleared, cached for reuse.
    func statement(_ sql: String) throws -> SQLiteStatement {
        if let cached = statements[sql] {
            cached.reset()
            return cached
        }
        var prepared: OpaquePointer?
        try check(sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &prepared, nil),
                  "preparing \(sql.prefix(80))")
        guard let prepared else {
            throw SQLiteError(code: SQLITE_MISUSE, message: "empty statement", context: String(sql.prefix(80)))
        }
        let statement = SQLiteStatement(database: self, handle: prepared)
        statements[sql] = statement
        return statement
    }

    /// The single integer a query returns (for `PRAGMA page_count` and the like).
    func integer(_ sql: String) throws -> Int64 {
        let statement = try self.statement(sql)
        defer { statement.reset() }
        guard try statement.step() else {
            throw SQLiteError(code: SQLITE_ERROR, message: "no row", context: String(sql.prefix(80)))
        }
        return statement.int64(0)
    }
}

/// A prepared statement. Parameters are numbered from 1 and columns from 0, as in SQLite.
final class SQLiteStatement {
    unowned let database: SQLiteDatabase
    let handle: OpaquePointer

    init(database: SQLiteDatabase, handle: OpaquePointer) {
        self.database = database
        self.handle = handle
    }

    deinit {
        sqlite3_finalize(handle)
    }

    func reset() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    /// SQLite's `SQLITE_TRANSIENT`: it copies the bytes before the call returns.
    private static var transient: sqlite3_destructor_type {
        unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)
    }

    func bind(_ index: Int32, _ value: Int64) throws {
        try database.check(sqlite3_bind_int64(handle, index, value), "binding parameter \(index)")
    }

    /// Binds a blob. An empty array binds a zero-length blob, never NULL, so that comparisons
    /// between keys and values stay byte comparisons.
    func bind(_ index: Int32, _ bytes: [UInt8]) throws {
        let code: Int32
        if bytes.isEmpty {
            code = sqlite3_bind_zeroblob(handle, index, 0)
        } else {
            code = bytes.withUnsafeBytes { buffer in
                sqlite3_bind_blob(handle, index, buffer.baseAddress, Int32(buffer.count), SQLiteStatement.transient)
            }
        }
        try database.check(code, "binding parameter \(index)")
    }

    func bind(_ index: Int32, _ text: String) throws {
        try database.check(sqlite3_bind_text(handle, index, text, -1, SQLiteStatement.transient),
                           "binding parameter \(index)")
    }

    /// Steps once: `true` when a row is ready, `false` when the statement is done.
    @discardableResult
    func step() throws -> Bool {
        let code = sqlite3_step(handle)
        switch code {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default:
            let sql = sqlite3_sql(handle).map { String(cString: $0) } ?? "?"
            throw SQLiteError(code: code, message: database.lastErrorMessage, context: "running \(sql.prefix(80))")
        }
    }

    /// Runs a statement that returns no rows, then resets it.
    func run() throws {
        defer { reset() }
        while try step() {}
    }

    func int64(_ column: Int32) -> Int64 {
        sqlite3_column_int64(handle, column)
    }

    func bytes(_ column: Int32) -> [UInt8] {
        // `sqlite3_column_blob` first, then `sqlite3_column_bytes`, as SQLite's documentation asks.
        let pointer = sqlite3_column_blob(handle, column)
        let count = Int(sqlite3_column_bytes(handle, column))
        guard count > 0, let pointer else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }
}
