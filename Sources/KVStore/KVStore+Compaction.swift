extension KVStore {
    /// Whether compaction has rows left to remove.
    public var physicalCompactionPending: Bool {
        (state.physicalCompactRevision, state.physicalCompactSub) < (state.compactRevision, Int64.max)
    }

    /// Removes the rows that compaction made unreachable for the next window of at most
    /// `rowsMax` rows (in revision order) past where the last step stopped, in one transaction;
    /// returns whether rows are left to remove after it. etcd removes compacted revisions in
    /// batches of 1,000 between pauses for the same reason: clients go on while history is
    /// dropped. Windows count rows, not revisions: one deletion of 100,000 keys is one revision.
    ///
    /// A window ending at row position hi compacts, as of hi, every key written in it: its
    /// versions at or before hi other than the newest are removed, and that one too when it is a
    /// deletion. Keys not written in the window were compacted as of an earlier position; so after
    /// the last window every key is compacted as of the compact revision, the state one pass over
    /// the whole history would leave. A key's rows always go in one step, so its newest version
    /// at a readable revision never changes.
    ///
    /// What a client reads never depends on how far this has got (replicas step on their own
    /// clocks): reads below the compact revision are refused, the newest version at or below
    /// any readable revision is never removed, and history and hashes skip what is left to
    /// remove (``isCompactedAway(revision:tombstone:newerAtCompaction:)``).
    @discardableResult
    public func compactStep(rowsMax: Int = 500) throws -> Bool {
        precondition(rowsMax > 0)
        guard physicalCompactionPending else { return false }
        let saved = state
        var removals: [(key: [UInt8], count: Int)] = []
        try database.execute("BEGIN IMMEDIATE")
        do {
            // Where this window ends: its last row, or the end of the compacted history.
            let last = try database.statement("""
                SELECT revision, sub FROM kv WHERE (revision, sub) > (?1, ?2) AND revision <= ?3
                ORDER BY revision, sub LIMIT 1 OFFSET ?4
                """)
            try last.bind(1, state.physicalCompactRevision)
            try last.bind(2, state.physicalCompactSub)
            try last.bind(3, state.compactRevision)
            try last.bind(4, Int64(rowsMax - 1))
            let high = try last.step() ? (revision: last.int64(0), sub: last.int64(1)) : (revision: state.compactRevision, sub: Int64.max)
            last.reset()
            let written = try database.statement("""
                SELECT DISTINCT key FROM kv WHERE (revision, sub) > (?1, ?2) AND (revision, sub) <= (?3, ?4)
                """)
            try written.bind(1, state.physicalCompactRevision)
            try written.bind(2, state.physicalCompactSub)
            try written.bind(3, high.revision)
            try written.bind(4, high.sub)
            var keys: [[UInt8]] = []
            while try written.step() { keys.append(written.bytes(0)) }
            written.reset()
            // A key's versions at or before the window's end, other than the newest, and that
            // one too when it is a deletion: always the oldest of the key's versions.
            let delete = try database.statement("DELETE FROM kv WHERE rowid = ?1")
            for key in keys {
                let versions = index.versions(of: key)
                var removed = versions.prefix { $0.isAtOrBefore(high) }.count
                if removed > 0 && !versions[removed - 1].tombstone { removed -= 1 }
                for version in versions.prefix(removed) {
                    try delete.bind(1, version.rowID)
                    try delete.run()
                }
                if removed > 0 { removals.append((key, removed)) }
            }
            (state.physicalCompactRevision, state.physicalCompactSub) = high
            try saveState()
            try database.execute("COMMIT")
        } catch {
            try? database.execute("ROLLBACK")
            state = saved
            throw error
        }
        // The rows are gone: now the index, reads below the window's end refused first (a reader
        // of an older view might otherwise find a key's older version missing).
        index.raiseFloor(to: state.physicalCompactRevision)
        for removal in removals { index.removeOldest(removal.count, of: removal.key) }
        return physicalCompactionPending
    }

    /// Runs ``compactStep(rowsMax:)`` until nothing is left to remove.
    public func finishCompaction() throws {
        while try compactStep() {}
    }

    /// Whether a row (or indexed version) at `revision` is one that compaction removes (or has removed): at or below the compact
    /// revision, and a deletion or not the newest version of its key there. `newerAtCompaction`
    /// says whether the key has a newer version at or below the compact revision (reading a
    /// key's rows newest first: whether one was seen already).
    func isCompactedAway(revision: Int64, tombstone: Bool, newerAtCompaction: Bool) -> Bool {
        revision <= state.compactRevision && (tombstone || newerAtCompaction)
    }
}
