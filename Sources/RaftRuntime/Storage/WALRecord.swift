import Checksums
import Raft

/// What a WAL record holds. The raw values are on disk: never renumber them.
enum WALRecordType: UInt8 {
    /// The first record of every segment: its sequence number, the index its first entry was
    /// expected to have, and the checksum of the previous segment's last record.
    case segmentHeader = 1
    /// One log entry. An entry whose index is at or below the last one seen replaces the entries
    /// from its index on (a new leader overwrote them).
    case entry = 2
    /// The hard state (term, vote, commit) from here on.
    case hardState = 3
    /// The log was reset to start after a snapshot received from the leader: every entry seen
    /// before is gone, and the next entry has index `index + 1`.
    case snapshotMarker = 4
}

/// The first record of a segment.
struct SegmentHeader: Hashable {
    var sequence: UInt64
    var firstIndex: UInt64
    /// The checksum of the last record of the previous segment (0 for the first segment), which
    /// seeds this segment's checksum chain.
    var previousChecksum: UInt32
}

/// One record of the write-ahead log.
///
/// Framing, all integers little endian:
///
///     length  u32   payload bytes
///     type    u8    WALRecordType
///     crc     u32   CRC-32C over type and payload, seeded with the previous record's crc
///     payload length bytes
///
/// Payloads: `segmentHeader` sequence u64, firstIndex u64, previousChecksum u32; `entry` term
/// u64, index u64, kind u8, data; `hardState` term u64, vote u64, commit u64; `snapshotMarker`
/// index u64, term u64.
enum WALRecord: Hashable {
    case segmentHeader(SegmentHeader)
    case entry(Entry)
    case hardState(HardState)
    case snapshotMarker(index: UInt64, term: UInt64)

    static let headerBytes = 9
    static let entryPayloadBytesMin = 17

    var type: WALRecordType {
        switch self {
        case .segmentHeader: .segmentHeader
        case .entry: .entry
        case .hardState: .hardState
        case .snapshotMarker: .snapshotMarker
        }
    }

    var payloadByteCount: Int {
        switch self {
        case .segmentHeader: 20
        case .entry(let entry): Self.entryPayloadBytesMin + entry.data.count
        case .hardState: 24
        case .snapshotMarker: 16
        }
    }

    /// The bytes the record takes on disk, header included.
    var frameByteCount: Int { Self.headerBytes + payloadByteCount }

    /// The smallest and largest payload a record of `type` can have (entries are bounded by the
    /// configured record limit instead).
    static func payloadBytesRange(of type: WALRecordType, recordBytesMax: Int) -> ClosedRange<Int> {
        switch type {
        case .segmentHeader: 20...20
        case .entry: entryPayloadBytesMin...max(entryPayloadBytesMin, recordBytesMax)
        case .hardState: 24...24
        case .snapshotMarker: 16...16
        }
    }

    private func appendPayload(to buffer: inout [UInt8]) {
        switch self {
        case .segmentHeader(let header):
            buffer.appendLittleEndian(header.sequence)
            buffer.appendLittleEndian(header.firstIndex)
            buffer.appendLittleEndian(header.previousChecksum)
        case .entry(let entry):
            buffer.appendLittleEndian(entry.term)
            buffer.appendLittleEndian(entry.index)
            buffer.appendLittleEndian(entry.kind.rawValue)
            buffer.append(contentsOf: entry.data)
        case .hardState(let state):
            buffer.appendLittleEndian(state.term)
            buffer.appendLittleEndian(state.vote)
            buffer.appendLittleEndian(state.commit)
        case .snapshotMarker(let index, let term):
            buffer.appendLittleEndian(index)
            buffer.appendLittleEndian(term)
        }
    }

    /// Appends the framed record to `buffer`; `checksum` is the previous record's checksum on
    /// entry and this record's on return.
    func appendFrame(to buffer: inout [UInt8], checksum: inout UInt32) {
        let start = buffer.count
        buffer.appendLittleEndian(UInt32(payloadByteCount))
        buffer.appendLittleEndian(type.rawValue)
        buffer.appendLittleEndian(UInt32(0))
        appendPayload(to: &buffer)
        precondition(buffer.count - start == frameByteCount, "record \(type) framed as \(buffer.count - start) bytes, expected \(frameByteCount)")
        var crc = CRC32C.update(checksum, with: buffer[(start + 4)..<(start + 5)])
        crc = CRC32C.update(crc, with: buffer[(start + Self.headerBytes)...])
        for byte in 0..<4 { buffer[start + 5 + byte] = UInt8(truncatingIfNeeded: crc >> UInt32(byte * 8)) }
        checksum = crc
    }

    /// Decodes a payload whose checksum matched; nil for bytes that no version of this code wrote.
    static func decode(type: WALRecordType, payload: ArraySlice<UInt8>) -> WALRecord? {
        var reader = LittleEndianReader(payload)
        switch type {
        case .segmentHeader:
            guard let sequence = reader.readUInt64(), let firstIndex = reader.readUInt64(), let previous = reader.readUInt32(),
                  reader.remaining == 0, sequence >= 1, firstIndex >= 1
            else { return nil }
            return .segmentHeader(SegmentHeader(sequence: sequence, firstIndex: firstIndex, previousChecksum: previous))
        case .entry:
            guard let term = reader.readUInt64(), let index = reader.readUInt64(), let kindByte = reader.readUInt8(),
                  let kind = EntryKind(rawValue: kindByte), index >= 1
            else { return nil }
            return .entry(Entry(term: term, index: index, kind: kind, data: reader.readRest()))
        case .hardState:
            guard let term = reader.readUInt64(), let vote = reader.readUInt64(), let commit = reader.readUInt64(), reader.remaining == 0
            else { return nil }
            return .hardState(HardState(term: term, vote: vote, commit: commit))
        case .snapshotMarker:
            guard let index = reader.readUInt64(), let term = reader.readUInt64(), reader.remaining == 0, index >= 1
            else { return nil }
            return .snapshotMarker(index: index, term: term)
        }
    }
}
