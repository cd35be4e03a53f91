import Glibc
import Raft

/// The segment files of `<data>/wal/`: appending framed records, rolling to a new preallocated
/// segment when one is full, removing segments the snapshot has made useless, and replaying
/// them all on open.
///
/// Segment files are named `<sequence>-<firstIndex>.wal` (16 hex digits each): the sequence
/// orders them, and `firstIndex` is the index the segment's first entry was expected to have (the
/// log's last index plus one when it was started). Every entry still live in a segment has an
/// index below the next segment's `firstIndex`, so a segment whose successor starts at or below
/// `compactedIndex + 1` holds nothing the log still needs.
///
/// A segment is created whole: header and first records written to a temporary file,
/// preallocated, fsynced, renamed into place, directory fsynced. Its first records repeat the
/// current hard state, so removing older segments never loses it.
final class WriteAheadLog {
    struct Segment: Hashable {
        var sequence: UInt64
        var firstIndex: UInt64

        var name: String { "\(hex16(sequence))-\(hex16(firstIndex)).wal" }

        /// Parses a name written by ``name``; nil for any other file.
        init?(name: String) {
            guard name.hasSuffix(".wal") else { return nil }
            let parts = name.dropLast(4).split(separator: "-", omittingEmptySubsequences: false)
            guard parts.count == 2, parts.allSatisfy({ $0.count == 16 }),
                  let sequence = UInt64(parts[0], radix: 16), let firstIndex = UInt64(parts[1], radix: 16)
            else { return nil }
            self.init(sequence: sequence, firstIndex: firstIndex)
        }

        init(sequence: UInt64, firstIndex: UInt64) {
            self.sequence = sequence
            self.firstIndex = firstIndex
        }
    }

    /// What replaying the segments found: the log they describe.
    struct Replay {
        /// The entries, consecutive from `baseIndex + 1`.
        var entries: [Entry] = []
        /// The index before the first entry: from the first segment's name, or a snapshot marker.
        var baseIndex: UInt64 = 0
        /// The term at `baseIndex`, when a snapshot marker stated it.
        var baseTerm: UInt64?
        var hardState = HardState()
        /// Where the last hard state record is, for error messages.
        var hardStateLocation: (file: String, offset: Int)?
        /// A torn tail cut off the last segment: file, offset and why.
        var tornTail: (file: String, offset: Int, reason: String)?

        var lastIndex: UInt64 { baseIndex + UInt64(entries.count) }
    }

    let directory: String
    let segmentBytes: Int
    let recordBytesMax: Int
    private(set) var segments: [Segment]
    private var active: POSIXFile?
    /// Where the next record goes in the active (last) segment.
    private(set) var writeOffset: Int
    /// The offset after the active segment's first records: a segment rolls only once it holds
    /// more than those.
    private var initialRecordsEnd: Int
    private var lastChecksum: UInt32
    private var unsyncedBytes = 0
    /// The log's last index as the records written so far describe it; names the next segment.
    var lastIndex: UInt64
    /// The last hard state written; repeated at the start of every new segment.
    var lastHardState: HardState

    private init(directory: String, segmentBytes: Int, recordBytesMax: Int, segments: [Segment], active: POSIXFile, writeOffset: Int, lastChecksum: UInt32, lastIndex: UInt64, lastHardState: HardState) {
        self.directory = directory
        self.segmentBytes = segmentBytes
        self.recordBytesMax = recordBytesMax
        self.segments = segments
        self.active = active
        self.writeOffset = writeOffset
        initialRecordsEnd = writeOffset
        self.lastChecksum = lastChecksum
        self.lastIndex = lastIndex
        self.lastHardState = lastHardState
    }

    deinit { close() }

    func close() {
        active?.close()
        active = nil
    }

    static func path(_ directory: String, _ segment: Segment) -> String { "\(directory)/\(segment.name)" }

    /// The segments in `directory`, in sequence order.
    static func listSegments(in directory: String) throws(DiskStorageError) -> [Segment] {
        try FileSystem.contents(of: directory).compactMap(Segment.init(name:)).sorted { $0.sequence < $1.sequence }
    }

    // MARK: Creating

    /// Creates the first segment of a new log, holding `records` (the bootstrap entries and hard state).
    static func create(directory: String, segmentBytes: Int, recordBytesMax: Int, records: [WALRecord]) throws(DiskStorageError) -> WriteAheadLog {
        let segment = Segment(sequence: 1, firstIndex: 1)
        let (file, end, checksum) = try writeSegment(directory: directory, segment: segment, previousChecksum: 0, records: records, segmentBytes: segmentBytes)
        var lastIndex: UInt64 = 0
        var hardState = HardState()
        for record in records {
            switch record {
            case .entry(let entry): lastIndex = entry.index
            case .hardState(let state): hardState = state
            case .snapshotMarker(let index, _): lastIndex = index
            case .segmentHeader: break
            }
        }
        return WriteAheadLog(directory: directory, segmentBytes: segmentBytes, recordBytesMax: recordBytesMax, segments: [segment], active: file, writeOffset: end, lastChecksum: checksum, lastIndex: lastIndex, lastHardState: hardState)
    }

    /// Writes a whole segment through a temporary file and renames it into place; returns the
    /// open file, the offset after its records and the last checksum.
    private static func writeSegment(directory: String, segment: Segment, previousChecksum: UInt32, records: [WALRecord], segmentBytes: Int) throws(DiskStorageError) -> (POSIXFile, Int, UInt32) {
        var buffer: [UInt8] = []
        var checksum = previousChecksum
        WALRecord.segmentHeader(SegmentHeader(sequence: segment.sequence, firstIndex: segment.firstIndex, previousChecksum: previousChecksum))
            .appendFrame(to: &buffer, checksum: &checksum)
        for record in records { record.appendFrame(to: &buffer, checksum: &checksum) }
        let finalPath = path(directory, segment)
        let temporaryPath = finalPath + ".tmp"
        let file = try POSIXFile(path: temporaryPath, create: true, exclusive: true)
        do {
            try file.allocate(bytes: max(segmentBytes, buffer.count))
            try file.write(buffer, at: 0)
            try file.synchronize()
            try FileSystem.rename(temporaryPath, to: finalPath)
            try FileSystem.synchronizeDirectory(directory)
        } catch {
            file.close()
            throw error
        }
        return (file, buffer.count, checksum)
    }

    // MARK: Replaying

    /// Replays every segment in `directory` (which must hold at least one), cutting a torn tail
    /// off the last one. Throws ``StorageCorruption`` for anything else that does not check out.
    static func open(directory: String, segmentBytes: Int, recordBytesMax: Int) throws -> (WriteAheadLog, Replay) {
        let segments = try listSegments(in: directory)
        precondition(!segments.isEmpty, "replaying an empty WAL directory \(directory)")
        var replay = Replay()
        var previousChecksum: UInt32?
        var lastScan: SegmentScanner.Scan?
        for (position, segment) in segments.enumerated() {
            let file = "wal/\(segment.name)"
            if position > 0 && segment.sequence != segments[position - 1].sequence + 1 {
                throw StorageCorruption(file: file, offset: 0, reason: "segment \(segments[position - 1].sequence + 1) is missing before it")
            }
            let bytes = try FileSystem.readFile(path(directory, segment))
            let isLast = position == segments.count - 1
            let scan = try SegmentScanner.scan(bytes, file: file, isLastSegment: isLast, recordBytesMax: recordBytesMax)
            guard scan.header.sequence == segment.sequence, scan.header.firstIndex == segment.firstIndex else {
                throw StorageCorruption(file: file, offset: 0, reason: "the header says sequence \(scan.header.sequence), first index \(scan.header.firstIndex)")
            }
            if let previousChecksum, previousChecksum != scan.header.previousChecksum {
                throw StorageCorruption(file: file, offset: 0, reason: "the checksum chain from the previous segment is broken")
            }
            if position == 0 { replay.baseIndex = segment.firstIndex - 1 }
            for scanned in scan.records {
                try apply(scanned.record, to: &replay, file: file, offset: scanned.offset)
            }
            previousChecksum = scan.lastChecksum
            if isLast {
                lastScan = scan
                if let reason = scan.tornTail { replay.tornTail = (file, scan.validEnd, reason) }
            }
        }
        let scan = lastScan!
        let segment = segments[segments.count - 1]
        let file = try POSIXFile(path: path(directory, segment), create: false)
        do {
            if scan.tornTail != nil {
                // Zero the garbage, so that records appended over it are followed by zeros.
                let size = try file.size()
                try file.writeZeros(at: scan.validEnd, count: max(0, min(scan.dataEnd, size) - scan.validEnd))
            }
            try file.allocate(bytes: segmentBytes)
            try file.synchronizeData()
        } catch {
            file.close()
            throw error
        }
        let wal = WriteAheadLog(directory: directory, segmentBytes: segmentBytes, recordBytesMax: recordBytesMax, segments: segments, active: file, writeOffset: scan.validEnd, lastChecksum: scan.lastChecksum, lastIndex: replay.lastIndex, lastHardState: replay.hardState)
        return (wal, replay)
    }

    private static func apply(_ record: WALRecord, to replay: inout Replay, file: String, offset: Int) throws(StorageCorruption) {
        switch record {
        case .segmentHeader:
            throw StorageCorruption(file: file, offset: offset, reason: "a segment header inside a segment")
        case .hardState(let state):
            replay.hardState = state
            replay.hardStateLocation = (file, offset)
        case .snapshotMarker(let index, let term):
            replay.entries = []
            replay.baseIndex = index
            replay.baseTerm = term
        case .entry(let entry):
            let last = replay.lastIndex
            if entry.index == last + 1 {
                replay.entries.append(entry)
            } else if entry.index > last + 1 {
                throw StorageCorruption(file: file, offset: offset, reason: "entry \(entry.index) leaves a gap after \(last)")
            } else if entry.index > replay.baseIndex {
                // A new leader overwrote the suffix from here.
                replay.entries.removeSubrange(Int(entry.index - replay.baseIndex - 1)...)
                replay.entries.append(entry)
            } else if replay.baseTerm == nil {
                // Rewritten below where the first replayed segment starts: the entries before it
                // are in removed segments (or the snapshot), and the log restarts here.
                replay.entries = [entry]
                replay.baseIndex = entry.index - 1
            } else {
                throw StorageCorruption(file: file, offset: offset, reason: "entry \(entry.index) is at or below the snapshot marker at \(replay.baseIndex)")
            }
        }
    }

    // MARK: Appending

    /// Appends `records` with as few writes as possible (one per segment touched), rolling to
    /// new segments when the active one is full, and fdatasyncs once at the end when `sync`.
    /// Throws before writing anything when a record is larger than `recordBytesMax`.
    func append(_ records: [WALRecord], sync: Bool) throws(DiskStorageError) {
        for record in records where record.payloadByteCount > recordBytesMax {
            throw .recordTooLarge(bytes: record.payloadByteCount, limit: recordBytesMax)
        }
        guard let file = active else { throw .failed(reason: "the WAL is closed") }
        var buffer: [UInt8] = []
        var checksum = lastChecksum
        var current = file
        for record in records {
            let end = writeOffset + buffer.count
            if end + record.frameByteCount > segmentBytes && end > initialRecordsEnd {
                try flush(&buffer, to: current, checksum: checksum)
                current = try roll()
                checksum = lastChecksum
            }
            record.appendFrame(to: &buffer, checksum: &checksum)
            switch record {
            case .entry(let entry): lastIndex = entry.index
            case .snapshotMarker(let index, _): lastIndex = index
            case .hardState(let state): lastHardState = state
            case .segmentHeader: break
            }
        }
        try flush(&buffer, to: current, checksum: checksum)
        if sync && unsyncedBytes > 0 {
            try current.synchronizeData()
            unsyncedBytes = 0
        }
    }

    private func flush(_ buffer: inout [UInt8], to file: POSIXFile, checksum: UInt32) throws(DiskStorageError) {
        guard !buffer.isEmpty else { return }
        try file.write(buffer, at: writeOffset)
        writeOffset += buffer.count
        unsyncedBytes += buffer.count
        lastChecksum = checksum
        buffer = []
    }

    /// Syncs the active segment and starts the next one, which begins with `records` (after its
    /// header) and the last hard state. `records` may hold only snapshot markers: the new
    /// segment's first index is then the marker's index plus one. Returns the new active file.
    @discardableResult
    func roll(records: [WALRecord] = []) throws(DiskStorageError) -> POSIXFile {
        guard let file = active else { throw .failed(reason: "the WAL is closed") }
        // Everything before the new segment must be durable before it exists: only the last
        // segment may have a torn tail.
        if unsyncedBytes > 0 {
            try file.synchronizeData()
            unsyncedBytes = 0
        }
        var nextLastIndex = lastIndex
        for record in records {
            if case .snapshotMarker(let index, _) = record { nextLastIndex = index }
        }
        let segment = Segment(sequence: segments[segments.count - 1].sequence + 1, firstIndex: nextLastIndex + 1)
        var initial = records
        initial.append(.hardState(lastHardState))
        let (newFile, end, checksum) = try Self.writeSegment(directory: directory, segment: segment, previousChecksum: lastChecksum, records: initial, segmentBytes: segmentBytes)
        file.close()
        active = newFile
        segments.append(segment)
        writeOffset = end
        initialRecordsEnd = end
        lastChecksum = checksum
        lastIndex = nextLastIndex
        return newFile
    }

    // MARK: Removing

    /// Removes the segments whose entries are all at or below `index` (never the active one).
    func removeSegments(coveredUpTo index: UInt64) throws(DiskStorageError) {
        var count = 0
        while count + 1 < segments.count && segments[count + 1].firstIndex <= index + 1 { count += 1 }
        try removeOldestSegments(count)
    }

    /// Removes every segment before the active one.
    func removeSegmentsBeforeActive() throws(DiskStorageError) {
        try removeOldestSegments(segments.count - 1)
    }

    /// Oldest first, so that a crash part-way leaves a consecutive run of segments.
    private func removeOldestSegments(_ count: Int) throws(DiskStorageError) {
        guard count > 0 else { return }
        precondition(count < segments.count, "removing the active segment")
        for segment in segments[0..<count] {
            try FileSystem.remove(Self.path(directory, segment))
        }
        segments.removeFirst(count)
        try FileSystem.synchronizeDirectory(directory)
    }
}

/// `value` as 16 lower-case hex digits.
func hex16(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 16 - digits.count) + digits
}
