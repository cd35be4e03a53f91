import Glibc
import Raft

/// A node's durable log: a write-ahead log of segment files and atomically written snapshots in
/// one data directory, with every live entry also held in memory for the core's reads.
///
/// Layout of the data directory:
///
///     LOCK                                      flock'd while open
///     wal/<sequence>-<firstIndex>.wal           segments, see ``WriteAheadLog`` and ``WALRecord``
///     snap/<index>-<term>.snap                  snapshots, see ``SnapshotFile``
///
/// Not `Sendable`: one owner (an actor) calls it, and every call blocks on the disk for as long
/// as its writes and syncs take. After a failed write or sync it refuses every further write
/// (``DiskStorageError/failed(reason:)``): the only safe way on is to reopen the directory, which
/// replays what actually reached the disk.
public final class DiskStorage: LogStorage {
    /// Sizes and limits, validated by ``open(directory:bootstrap:options:)``.
    public struct Options: Sendable, Hashable {
        /// The size a segment is preallocated to; the log moves to a new segment when the next
        /// record would not fit (a single record larger than this gets a segment of its own).
        public var segmentBytes: Int = 64 << 20
        /// Upper bound for one record's payload (an entry's data plus 17 bytes). A larger record
        /// is refused with ``DiskStorageError/recordTooLarge(bytes:limit:)`` and never written;
        /// on replay, a length above it marks a bad record.
        public var recordBytesMax: Int = 64 << 20
        /// Upper bound for a snapshot's data: as large as the transport carries, so that any
        /// snapshot a leader can send, a follower can keep (a smaller bound here once made
        /// followers refuse snapshots of databases past 1 GiB).
        public var snapshotBytesMax: Int = TransportLimits.snapshotBytesLimit
        /// How many snapshot files to keep (the newest, and older ones to fall back on if the
        /// newest turns out unreadable while the log still reaches back to them).
        public var snapshotFilesKept: Int = 2

        public static let segmentBytesMin = 512
        public static let segmentBytesLimit = 1 << 30
        public static let recordBytesLimit = 1 << 30

        public init() {}

        public func validate() throws(DiskStorageError) {
            guard (Self.segmentBytesMin...Self.segmentBytesLimit).contains(segmentBytes) else {
                throw .invalidOption(field: "segmentBytes", reason: "\(segmentBytes) is outside [\(Self.segmentBytesMin), \(Self.segmentBytesLimit)]")
            }
            guard (64...Self.recordBytesLimit).contains(recordBytesMax) else {
                throw .invalidOption(field: "recordBytesMax", reason: "\(recordBytesMax) is outside [64, \(Self.recordBytesLimit)]")
            }
            guard snapshotBytesMax >= 0 && snapshotBytesMax <= Int(Int32.max) * 4 else {
                throw .invalidOption(field: "snapshotBytesMax", reason: "\(snapshotBytesMax) is outside [0, 8 GiB]")
            }
            guard (1...100).contains(snapshotFilesKept) else {
                throw .invalidOption(field: "snapshotFilesKept", reason: "\(snapshotFilesKept) is outside [1, 100]")
            }
        }
    }

    /// A torn record cut off the end of the WAL when it was opened.
    public struct TornTail: Sendable, Hashable {
        public var file: String
        public var offset: Int
        public var reason: String
    }

    /// What opening the directory had to repair or skip; worth a log line in the shell.
    public struct Recovery: Sendable, Hashable {
        public var tornTail: TornTail?
        /// Snapshot files that did not check out; each was renamed to `<name>.corrupt`.
        public var skippedSnapshots: [StorageCorruption] = []
        /// Temporary files of interrupted snapshot or segment writes, removed.
        public var removedTemporaryFiles: [String] = []
        /// A snapshot from the leader was stored but the crash came before the WAL recorded it;
        /// the WAL record was written on open.
        public var completedSnapshotInstall = false
    }

    /// Test-only places to stop as if the process had died there.
    enum CrashPoint: Hashable, Sendable {
        case snapshotFile(SnapshotFile.Step)
        /// After a leader's snapshot is recorded in the WAL, before older segments and snapshot
        /// files are removed.
        case snapshotMarkerWritten
    }

    struct SimulatedCrash: Error, Hashable {
        var point: CrashPoint
    }

    public let directory: String
    public let options: Options
    public private(set) var recovery: Recovery

    private let wal: WriteAheadLog
    private let lock: POSIXFile
    private var hardState: HardState
    private var latestSnapshot: Snapshot
    /// `entries[0]` is a placeholder with the index and term of the entry before the first held.
    private var entries: [Entry]
    /// Set once a write failed or the storage was closed.
    private var failure: String?
    /// Tests set it to stop at that point.
    var crashPoint: CrashPoint?

    private var walDirectory: String { "\(directory)/wal" }
    private var snapshotDirectory: String { "\(directory)/snap" }

    private init(directory: String, options: Options, wal: WriteAheadLog, lock: POSIXFile, hardState: HardState, snapshot: Snapshot, entries: [Entry], recovery: Recovery) {
        self.directory = directory
        self.options = options
        self.wal = wal
        self.lock = lock
        self.hardState = hardState
        latestSnapshot = snapshot
        self.entries = entries
        self.recovery = recovery
    }

    deinit { close() }

    /// Releases the files and the directory lock. Every later call that writes throws.
    public func close() {
        wal.close()
        lock.close()
        if failure == nil { failure = "the storage is closed" }
    }

    // MARK: Opening

    /// Opens (or creates) the data directory with the default ``Options``.
    public static func open(directory: String, bootstrap: Membership) throws -> DiskStorage {
        try open(directory: directory, bootstrap: bootstrap, options: Options())
    }

    /// Opens (or creates) the data directory: replays the WAL, truncates a torn tail, refuses
    /// corruption (``StorageCorruption``).
    ///
    /// - Parameter bootstrap: For a brand-new directory, the initial membership: the log is
    ///   created holding ``Bootstrap/entries(for:)`` and ``Bootstrap/hardState(for:)``. Empty for
    ///   a node that will join an existing cluster. Ignored when the directory holds a log.
    public static func open(directory: String, bootstrap: Membership, options: Options) throws -> DiskStorage {
        try options.validate()
        let createdRoot = try FileSystem.makeDirectory(directory)
        if createdRoot { try FileSystem.synchronizeDirectory(parent(of: directory)) }
        let walDirectory = "\(directory)/wal"
        let snapshotDirectory = "\(directory)/snap"
        let createdWAL = try FileSystem.makeDirectory(walDirectory)
        let createdSnapshots = try FileSystem.makeDirectory(snapshotDirectory)
        if createdWAL || createdSnapshots { try FileSystem.synchronizeDirectory(directory) }

        let lock = try POSIXFile(path: "\(directory)/LOCK", create: true)
        // A lock held for a moment is not a second owner: a process forked between another
        // open's `open` and its child's `exec` holds a copy of that descriptor until the exec
        // closes it (O_CLOEXEC), and a previous owner may be closing. Wait up to a second.
        var locked = try lock.tryLock()
        var attempts = 0
        while !locked && attempts < 20 {
            attempts += 1
            usleep(50_000)
            locked = try lock.tryLock()
        }
        guard locked else {
            lock.close()
            throw DiskStorageError.directoryLocked(path: directory)
        }
        do {
            var recovery = Recovery()
            for subdirectory in [walDirectory, snapshotDirectory] {
                let temporary = try FileSystem.contents(of: subdirectory).filter { $0.hasSuffix(SnapshotFile.temporarySuffix) }
                for name in temporary { try FileSystem.remove("\(subdirectory)/\(name)") }
                if !temporary.isEmpty { try FileSystem.synchronizeDirectory(subdirectory) }
                recovery.removedTemporaryFiles += temporary.map { "\(subdirectory.dropFirst(directory.count + 1))/\($0)" }
            }
            if try WriteAheadLog.listSegments(in: walDirectory).isEmpty {
                return try create(directory: directory, bootstrap: bootstrap, options: options, lock: lock, recovery: recovery)
            }
            let storage = try replay(directory: directory, options: options, lock: lock, recovery: recovery)
            // Images left by a crash between their move and their record's write.
            try storage.pruneSnapshots()
            return storage
        } catch {
            lock.close()
            throw error
        }
    }

    private static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    private static func create(directory: String, bootstrap: Membership, options: Options, lock: POSIXFile, recovery: Recovery) throws -> DiskStorage {
        let snapshotNames = try FileSystem.contents(of: "\(directory)/snap").filter { SnapshotFile.parse(name: $0) != nil }
        if let name = snapshotNames.first {
            throw StorageCorruption(file: "snap/\(name)", offset: 0, reason: "snapshots exist but the WAL has no segment")
        }
        let bootstrapEntries = Bootstrap.entries(for: bootstrap)
        let hardState = Bootstrap.hardState(for: bootstrap)
        let records = bootstrapEntries.map(WALRecord.entry) + [.hardState(hardState)]
        for record in records where record.payloadByteCount > options.recordBytesMax {
            throw DiskStorageError.recordTooLarge(bytes: record.payloadByteCount, limit: options.recordBytesMax)
        }
        // The bootstrap records are in the segment before it is renamed into place: a directory
        // with a segment is always a fully bootstrapped one.
        let wal = try WriteAheadLog.create(directory: "\(directory)/wal", segmentBytes: options.segmentBytes, recordBytesMax: options.recordBytesMax, records: records)
        return DiskStorage(directory: directory, options: options, wal: wal, lock: lock, hardState: hardState, snapshot: Snapshot(), entries: [Entry(term: 0, index: 0)] + bootstrapEntries, recovery: recovery)
    }

    private static func replay(directory: String, options: Options, lock: POSIXFile, recovery: Recovery) throws -> DiskStorage {
        var recovery = recovery
        let snapshotDirectory = "\(directory)/snap"
        let (wal, replay) = try WriteAheadLog.open(directory: "\(directory)/wal", segmentBytes: options.segmentBytes, recordBytesMax: options.recordBytesMax)
        do {
            if let torn = replay.tornTail { recovery.tornTail = TornTail(file: torn.file, offset: torn.offset, reason: torn.reason) }

            // The newest snapshot that checks out.
            let candidates = try FileSystem.contents(of: snapshotDirectory)
                .compactMap { name in SnapshotFile.parse(name: name).map { (name: name, index: $0.index, term: $0.term) } }
                .sorted { ($0.index, $0.term) > ($1.index, $1.term) }
            var chosen: (name: String, snapshot: Snapshot)?
            for candidate in candidates {
                let file = "snap/\(candidate.name)"
                do {
                    let path = "\(snapshotDirectory)/\(candidate.name)"
                    let size = try FileSystem.fileSize(path)
                    let sizeMax = options.snapshotBytesMax + SnapshotFile.headerBytes + 16 * 1024 * 1024
                    guard size <= sizeMax else {
                        throw StorageCorruption(file: file, offset: 0, reason: "\(size) bytes is more than snapshotBytesMax allows")
                    }
                    let snapshot = try SnapshotFile.decode(try FileSystem.readFile(path), file: file)
                    guard snapshot.metadata.index == candidate.index, snapshot.metadata.term == candidate.term else {
                        throw StorageCorruption(file: file, offset: SnapshotFile.headerBytes, reason: "holds index \(snapshot.metadata.index), term \(snapshot.metadata.term)")
                    }
                    chosen = (candidate.name, snapshot)
                    break
                } catch let corruption as StorageCorruption {
                    recovery.skippedSnapshots.append(corruption)
                }
            }
            let snapshot = chosen?.snapshot ?? Snapshot()
            let snapshotIndex = snapshot.metadata.index
            let snapshotTerm = snapshot.metadata.term

            // Connect the snapshot to the log the WAL holds.
            var kept: [Entry]
            var needsMarker = false
            if snapshotIndex < replay.baseIndex {
                let reason = "the WAL starts after index \(replay.baseIndex), but the newest usable snapshot is at \(snapshotIndex)"
                if let skipped = recovery.skippedSnapshots.first {
                    throw StorageCorruption(file: skipped.file, offset: skipped.offset, reason: "\(skipped.reason); \(reason)")
                }
                throw StorageCorruption(file: "wal/\(wal.segments[0].name)", offset: 0, reason: reason)
            } else if snapshotIndex == replay.baseIndex {
                if let baseTerm = replay.baseTerm, baseTerm != snapshotTerm {
                    throw StorageCorruption(file: "snap/\(chosen?.name ?? "")", offset: 0, reason: "term \(snapshotTerm) differs from the WAL's snapshot marker term \(baseTerm)")
                }
                kept = replay.entries
            } else if snapshotIndex <= replay.lastIndex && replay.entries[Int(snapshotIndex - replay.baseIndex - 1)].term == snapshotTerm {
                // A snapshot of this log (or one that agrees with it there): the entries after it stay.
                kept = Array(replay.entries[Int(snapshotIndex - replay.baseIndex)...])
            } else {
                // A snapshot from the leader stored just before a crash, whose WAL marker was never
                // written: the log restarts after it, as it would have.
                kept = []
                needsMarker = true
            }
            var hardState = replay.hardState
            // A snapshot holds only committed entries (the hard state that said so may have been lost).
            hardState.commit = max(hardState.commit, snapshotIndex)
            let lastIndex = snapshotIndex + UInt64(kept.count)
            if hardState.commit > lastIndex {
                let location = replay.hardStateLocation ?? ("wal/\(wal.segments[wal.segments.count - 1].name)", 0)
                throw StorageCorruption(file: location.file, offset: location.offset, reason: "commit index \(hardState.commit) is beyond the last entry \(lastIndex)")
            }
            wal.lastHardState = hardState
            if needsMarker {
                try wal.roll(records: [.snapshotMarker(index: snapshotIndex, term: snapshotTerm)])
                try wal.removeSegmentsBeforeActive()
                recovery.completedSnapshotInstall = true
            }
            wal.lastIndex = lastIndex
            // Keep the unreadable snapshots for inspection, out of the way of pruning.
            for skipped in recovery.skippedSnapshots {
                let path = "\(directory)/\(skipped.file)"
                try FileSystem.rename(path, to: path + ".corrupt")
            }
            if !recovery.skippedSnapshots.isEmpty { try FileSystem.synchronizeDirectory(snapshotDirectory) }
            let storage = DiskStorage(directory: directory, options: options, wal: wal, lock: lock, hardState: hardState, snapshot: snapshot,
                                      entries: [Entry(term: snapshotTerm, index: snapshotIndex)] + kept, recovery: recovery)
            return storage
        } catch {
            wal.close()
            throw error
        }
    }

    // MARK: Writing

    /// Appends `entries` (replacing any stored entries from `entries[0].index` on) and records
    /// `hardState`, in one write; with `sync`, one fdatasync at the end (group commit: a whole
    /// `Ready` shares it). Entries already covered by the snapshot are skipped.
    ///
    /// Throws ``DiskStorageError/recordTooLarge(bytes:limit:)`` without writing anything; any
    /// other error leaves the storage failed.
    public func save(hardState newHardState: HardState?, entries newEntries: [Entry], sync: Bool) throws {
        try checkUsable()
        let kept = newEntries.drop { $0.index <= offset }
        if let first = kept.first {
            precondition(first.index <= lastIndex() + 1, "entries from \(first.index) leave a gap after \(lastIndex())")
            for (previous, next) in zip(kept, kept.dropFirst()) {
                precondition(next.index == previous.index + 1, "entries \(previous.index) and \(next.index) are not consecutive")
            }
        }
        var records = kept.map(WALRecord.entry)
        if let newHardState { records.append(.hardState(newHardState)) }
        guard !records.isEmpty || sync else { return }
        do {
            try wal.append(records, sync: sync)
        } catch .recordTooLarge(let bytes, let limit) {
            throw DiskStorageError.recordTooLarge(bytes: bytes, limit: limit)
        } catch {
            throw fail(error)
        }
        if let first = kept.first {
            entries.removeSubrange(Int(first.index - offset)...)
            entries.append(contentsOf: kept)
        }
        if let newHardState { hardState = newHardState }
    }

    /// Stores a snapshot received from the leader and resets the log to start after it: the
    /// snapshot file is written atomically, then a new WAL segment records the reset, then older
    /// segments and snapshot files are removed. A snapshot not newer than the current one is
    /// ignored.
    public func applySnapshot(_ snapshot: Snapshot) throws {
        _ = try applySnapshot(snapshot, image: nil)
    }

    /// Where the state machine image of the snapshot with `metadata` is kept, when it came from
    /// the leader as a file: `snap/<index>-<term>.image`, beside the snapshot's record.
    public func imagePath(for metadata: SnapshotMetadata) -> String {
        "\(snapshotDirectory)/\(SnapshotFile.imageName(index: metadata.index, term: metadata.term))"
    }

    /// ``applySnapshot(_:)`` for a snapshot whose state machine image is the (synced) file at
    /// `image`, on the same file system: the file is renamed to ``imagePath(for:)`` before the
    /// record is written (so a record never refers to a missing image), and removed with the
    /// record. Returns where the image is now (where it was, if the snapshot is not newer).
    public func applySnapshot(_ snapshot: Snapshot, image: String?) throws -> String? {
        try checkUsable()
        let index = snapshot.metadata.index
        guard index > latestSnapshot.metadata.index else { return image }
        guard snapshot.data.count <= options.snapshotBytesMax else {
            throw DiskStorageError.snapshotTooLarge(bytes: snapshot.data.count, limit: options.snapshotBytesMax)
        }
        let storedImage = image.map { _ in imagePath(for: snapshot.metadata) }
        do {
            if let image, let storedImage {
                // Made durable by the record's write below, which syncs the directory.
                try FileSystem.rename(image, to: storedImage)
            }
            try SnapshotFile.write(snapshot, directory: snapshotDirectory) { step in try checkpoint(.snapshotFile(step)) }
            // Until this record is durable, a reopen finds the new snapshot and resets the log
            // itself (see `replay`): the order is safe either way.
            try wal.roll(records: [.snapshotMarker(index: index, term: snapshot.metadata.term)])
            try checkpoint(.snapshotMarkerWritten)
            try wal.removeSegmentsBeforeActive()
            try pruneSnapshots()
        } catch {
            throw fail(error)
        }
        latestSnapshot = snapshot
        entries = [Entry(term: snapshot.metadata.term, index: index)]
        hardState.commit = max(hardState.commit, index)
        return storedImage
    }

    /// Stores a snapshot of the local state machine at `index`, which must be held and above the
    /// current snapshot (else ``StorageError/compacted`` or ``StorageError/unavailable``). The
    /// log is not compacted: see ``compact(upTo:)``.
    public func createSnapshot(index: UInt64, membership: Membership, data: [UInt8]) throws {
        try checkUsable()
        if index <= latestSnapshot.metadata.index { throw StorageError.compacted }
        let entryTerm = try term(at: index)
        guard data.count <= options.snapshotBytesMax else {
            throw DiskStorageError.snapshotTooLarge(bytes: data.count, limit: options.snapshotBytesMax)
        }
        let snapshot = Snapshot(metadata: SnapshotMetadata(index: index, term: entryTerm, membership: membership), data: data)
        do {
            try SnapshotFile.write(snapshot, directory: snapshotDirectory) { step in try checkpoint(.snapshotFile(step)) }
            try pruneSnapshots()
        } catch {
            throw fail(error)
        }
        latestSnapshot = snapshot
    }

    /// Drops the entries up to `index` (not above the snapshot's index) from memory and removes
    /// the WAL segments that hold nothing above it.
    public func compact(upTo index: UInt64) throws {
        try checkUsable()
        if index <= offset { throw StorageError.compacted }
        if index > lastIndex() { throw StorageError.unavailable }
        precondition(index <= latestSnapshot.metadata.index, "compacting to \(index), past the snapshot at \(latestSnapshot.metadata.index), loses data")
        let placeholder = Entry(term: entries[Int(index - offset)].term, index: index)
        entries.removeSubrange(0...Int(index - offset))
        entries.insert(placeholder, at: 0)
        do {
            try wal.removeSegments(coveredUpTo: index)
        } catch {
            throw fail(error)
        }
    }

    /// The names of the WAL segments, oldest first (for tests and status).
    public var segmentNames: [String] { wal.segments.map(\.name) }

    /// Where the next record goes in the last segment (tests locate records with it).
    var writeOffset: Int { wal.writeOffset }

    private func checkUsable() throws(DiskStorageError) {
        if let failure { throw .failed(reason: failure) }
    }

    /// Marks the storage failed after `error` and returns it for throwing.
    private func fail(_ error: any Error) -> any Error {
        if failure == nil { failure = "an earlier write failed: \(error)" }
        wal.close()
        return error
    }

    private func checkpoint(_ point: CrashPoint) throws {
        if crashPoint == point { throw SimulatedCrash(point: point) }
    }

    /// Removes all but the newest ``Options/snapshotFilesKept`` snapshot files.
    /// Keeps the newest `snapshotFilesKept` snapshots, and the images of those only (an image
    /// whose record is gone, or never got written before a crash, is of no use).
    private func pruneSnapshots() throws(DiskStorageError) {
        let contents = try FileSystem.contents(of: snapshotDirectory)
        let names = contents
            .compactMap { name in SnapshotFile.parse(name: name).map { (name: name, index: $0.index, term: $0.term) } }
            .sorted { ($0.index, $0.term) > ($1.index, $1.term) }
        let kept = Set(names.prefix(options.snapshotFilesKept).map { SnapshotFile.imageName(index: $0.index, term: $0.term) })
        let images = contents.filter { SnapshotFile.parse(imageName: $0) != nil && !kept.contains($0) }
        guard names.count > options.snapshotFilesKept || !images.isEmpty else { return }
        for old in names.dropFirst(options.snapshotFilesKept) { try FileSystem.remove("\(snapshotDirectory)/\(old.name)") }
        for image in images { try FileSystem.remove("\(snapshotDirectory)/\(image)") }
        try FileSystem.synchronizeDirectory(snapshotDirectory)
    }

    // MARK: LogStorage

    public func initialState() throws -> (hardState: HardState, membership: Membership) {
        (hardState, latestSnapshot.metadata.membership)
    }

    private var offset: UInt64 { entries[0].index }

    public func firstIndex() -> UInt64 { offset + 1 }

    public func lastIndex() -> UInt64 { offset + UInt64(entries.count) - 1 }

    public func term(at index: UInt64) throws(StorageError) -> UInt64 {
        if index < offset { throw .compacted }
        if index > lastIndex() { throw .unavailable }
        return entries[Int(index - offset)].term
    }

    public func entries(from low: UInt64, to high: UInt64, maxBytes: Int) throws(StorageError) -> [Entry] {
        if low <= offset { throw .compacted }
        if high > lastIndex() + 1 { throw .unavailable }
        precondition(low <= high, "entries(from: \(low), to: \(high)): low above high")
        return Entry.prefix(of: entries[Int(low - offset)..<Int(high - offset)], maxBytes: maxBytes)
    }

    public func snapshot() throws(StorageError) -> Snapshot { latestSnapshot }
}
