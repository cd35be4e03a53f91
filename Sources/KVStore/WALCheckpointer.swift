import CSQLite
import Foundation

/// Checkpoints a store's SQLite WAL mostly from a connection and a thread of its own, so that
/// applies rarely wait long for a checkpoint (with SQLite's automatic checkpoints, the commit
/// that crossed 1,000 WAL pages copied them and fsynced the WAL and the database inline: a
/// 10-20 ms stall every few hundred writes, the p99 of sequential puts). The store's
/// connection reports the WAL's size after each commit; past `walPagesMax` the thread runs a
/// PASSIVE checkpoint, which waits for no reader or writer. A checkpoint that races a busy
/// writer never catches up with it, and the WAL only starts over once one has, so past
/// `walPagesHardMax` the commit itself finishes the job as SQLite's automatic checkpoint did,
/// but with little left to copy or to sync. The WAL stays as bounded as before (a hard limit of
/// 16,000 pages let a WAL of never-synced pages grow to 64 MiB, whose sync in that one commit
/// took 0.75 s under `etcdctl check perf`).
final class WALCheckpointer: @unchecked Sendable {
    let path: String
    let walPagesMax: Int32
    let walPagesHardMax: Int32
    // Guarded by `condition`.
    private let condition = NSCondition()
    private var due = false
    private var stopped = false
    /// Checkpoints run, for tests.
    private var completed = 0

    init(path: String, walPagesMax: Int32 = 250, walPagesHardMax: Int32 = 1_000) {
        precondition(walPagesMax > 0 && walPagesHardMax > walPagesMax)
        self.path = path
        self.walPagesMax = walPagesMax
        self.walPagesHardMax = walPagesHardMax
        let thread = Thread { [self] in run() }
        thread.name = "sqlite-checkpoint"
        thread.start()
    }

    /// Installs the WAL hook on the store's connection (replacing SQLite's automatic checkpoint).
    func install(on handle: OpaquePointer) {
        sqlite3_wal_hook(handle, { context, connection, _, pages in
            let checkpointer = Unmanaged<WALCheckpointer>.fromOpaque(context!).takeUnretainedValue()
            if pages >= checkpointer.walPagesHardMax {
                // Best effort, as SQLite's own automatic checkpoint: busy only means later.
                _ = sqlite3_wal_checkpoint_v2(connection, nil, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
            } else if pages >= checkpointer.walPagesMax {
                checkpointer.request()
            }
            return SQLITE_OK
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    func request() {
        condition.lock()
        due = true
        condition.signal()
        condition.unlock()
    }

    func stop() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }

    var checkpointsCompleted: Int {
        condition.lock()
        defer { condition.unlock() }
        return completed
    }

    private func run() {
        var connection: OpaquePointer?
        defer { sqlite3_close_v2(connection) }
        while true {
            condition.lock()
            while !due && !stopped { condition.wait() }
            let stop = stopped
            due = false
            condition.unlock()
            if stop { return }
            if connection == nil {
                guard sqlite3_open_v2(path, &connection, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nil) == SQLITE_OK else {
                    sqlite3_close_v2(connection)
                    connection = nil
                    continue
                }
            }
            // Busy (the store's own FULL checkpoint for a snapshot holds the lock) is fine: the
            // next commit past the limit asks again.
            var logFrames: Int32 = 0
            var checkpointed: Int32 = 0
            let code = sqlite3_wal_checkpoint_v2(connection, nil, SQLITE_CHECKPOINT_PASSIVE, &logFrames, &checkpointed)
            if code == SQLITE_OK {
                condition.lock()
                completed += 1
                condition.unlock()
            }
        }
    }
}
