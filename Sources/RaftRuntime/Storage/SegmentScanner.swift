import Checksums

/// Reads the records of one segment file and decides where its valid data ends: a pure function
/// of the file's bytes, so that every torn or corrupt layout can be tested without a disk.
///
/// The rule for a record that does not check out (bad length, unknown type, checksum mismatch,
/// cut off by the end of the file):
///
/// - In the last segment, when nothing but zeros follows the extent the record claims (or it
///   claims to run past the written data and no valid record can be found inside that extent),
///   it is a torn write: the crash hit while it was being written, it was never acknowledged, and
///   the log ends just before it.
/// - Anywhere else it is corruption: valid data follows it, or the segment is not the last one
///   (a segment is synced before the next one is started, so only the last can be torn).
///
/// A segment is preallocated with zeros, so the end of the written data is the last non-zero
/// byte. A torn write leaves each byte of the record either as written or zero; a flipped bit in
/// a length can make a record claim more than the data holds, which is why such a record is only
/// called torn when no valid record starts inside its claimed extent.
///
/// Records whose checksum matches but whose payload does not decode are always corruption: a
/// torn write cannot produce them.
enum SegmentScanner {
    struct ScannedRecord: Hashable {
        var offset: Int
        var record: WALRecord
    }

    struct Scan {
        var header: SegmentHeader
        /// The records after the header, in order.
        var records: [ScannedRecord]
        /// The offset just after the last valid record: where the next record goes.
        var validEnd: Int
        /// The offset just after the last non-zero byte.
        var dataEnd: Int
        /// The checksum of the last valid record (the seed for the next one).
        var lastChecksum: UInt32
        /// Set when a torn record was found at `validEnd` (bytes up to `dataEnd` are garbage).
        var tornTail: String?
    }

    private enum Frame {
        case valid(WALRecord, checksum: UInt32, end: Int)
        /// The frame does not check out; `claimedEnd` is where it says it ends (nil when even
        /// its header is cut off).
        case invalid(reason: String, claimedEnd: Int?)
        /// The checksum matched but the payload makes no sense.
        case undecodable(reason: String)
    }

    static func scan(_ bytes: [UInt8], file: String, isLastSegment: Bool, recordBytesMax: Int) throws(StorageCorruption) -> Scan {
        let dataEnd = endOfData(bytes)
        // The header is written (with the segment's first records) before the file is renamed
        // into place, so it is never torn.
        let header: SegmentHeader
        var offset: Int
        var checksum: UInt32
        switch readFrame(bytes, at: 0, seed: nil, recordBytesMax: recordBytesMax) {
        case .valid(.segmentHeader(let segmentHeader), let crc, let end):
            header = segmentHeader
            checksum = crc
            offset = end
        case .valid(let record, _, _):
            throw StorageCorruption(file: file, offset: 0, reason: "the first record is a \(record.type), not a segment header")
        case .invalid(let reason, _), .undecodable(let reason):
            throw StorageCorruption(file: file, offset: 0, reason: "invalid segment header: \(reason)")
        }
        var records: [ScannedRecord] = []
        while offset < dataEnd {
            switch readFrame(bytes, at: offset, seed: checksum, recordBytesMax: recordBytesMax) {
            case .valid(.segmentHeader, _, _):
                throw StorageCorruption(file: file, offset: offset, reason: "a second segment header")
            case .valid(let record, let crc, let end):
                records.append(ScannedRecord(offset: offset, record: record))
                checksum = crc
                offset = end
            case .undecodable(let reason):
                throw StorageCorruption(file: file, offset: offset, reason: reason)
            case .invalid(let reason, let claimedEnd):
                guard isLastSegment else {
                    throw StorageCorruption(file: file, offset: offset, reason: "\(reason), in a segment that is not the last")
                }
                if let claimedEnd, claimedEnd < dataEnd {
                    throw StorageCorruption(file: file, offset: offset, reason: "\(reason), and data follows at offset \(claimedEnd)")
                }
                if let resynchronized = validFrameStart(bytes, after: offset, before: dataEnd, recordBytesMax: recordBytesMax) {
                    let after = resynchronized == offset ? "and the data after it is too long to search for a valid record" : "and a valid record follows at offset \(resynchronized)"
                    throw StorageCorruption(file: file, offset: offset, reason: "\(reason), \(after)")
                }
                return Scan(header: header, records: records, validEnd: offset, dataEnd: dataEnd, lastChecksum: checksum, tornTail: reason)
            }
        }
        return Scan(header: header, records: records, validEnd: offset, dataEnd: dataEnd, lastChecksum: checksum, tornTail: nil)
    }

    /// The offset just after the last non-zero byte (0 for an all-zero file).
    static func endOfData(_ bytes: [UInt8]) -> Int {
        bytes.withUnsafeBytes { buffer -> Int in
            var end = buffer.count
            // Eight bytes at a time through the preallocated zeros.
            while end >= 8 && buffer.loadUnaligned(fromByteOffset: end - 8, as: UInt64.self) == 0 { end -= 8 }
            while end > 0 && buffer[end - 1] == 0 { end -= 1 }
            return end
        }
    }

    /// Reads the frame at `offset`. `seed` is the previous record's checksum; nil for a segment
    /// header, whose seed is the previous checksum it carries.
    private static func readFrame(_ bytes: [UInt8], at offset: Int, seed: UInt32?, recordBytesMax: Int) -> Frame {
        guard bytes.count - offset >= WALRecord.headerBytes else {
            return .invalid(reason: "record header cut off by the end of the file", claimedEnd: nil)
        }
        let length = Int(readLittleEndianUInt32(bytes, at: offset))
        let claimedEnd = offset + WALRecord.headerBytes + length
        guard let type = WALRecordType(rawValue: bytes[offset + 4]) else {
            return .invalid(reason: "unknown record type \(bytes[offset + 4])", claimedEnd: claimedEnd)
        }
        guard WALRecord.payloadBytesRange(of: type, recordBytesMax: recordBytesMax).contains(length) else {
            return .invalid(reason: "a \(type) record of \(length) bytes", claimedEnd: claimedEnd)
        }
        guard claimedEnd <= bytes.count else {
            return .invalid(reason: "a record of \(length) bytes runs past the end of the file", claimedEnd: claimedEnd)
        }
        let payload = bytes[(offset + WALRecord.headerBytes)..<claimedEnd]
        var chainSeed: UInt32
        if let seed {
            chainSeed = seed
        } else {
            guard type == .segmentHeader else { return .invalid(reason: "expected a segment header", claimedEnd: claimedEnd) }
            chainSeed = readLittleEndianUInt32(payload, at: payload.startIndex + 16)
        }
        let stored = readLittleEndianUInt32(bytes, at: offset + 5)
        var computed = CRC32C.update(chainSeed, with: bytes[(offset + 4)..<(offset + 5)])
        computed = CRC32C.update(computed, with: payload)
        guard computed == stored else {
            return .invalid(reason: "checksum mismatch (stored \(hex(stored)), computed \(hex(computed)))", claimedEnd: claimedEnd)
        }
        guard let record = WALRecord.decode(type: type, payload: payload) else {
            return .undecodable(reason: "a \(type) record with a valid checksum does not decode")
        }
        return .valid(record, checksum: computed, end: claimedEnd)
    }

    /// A record found while resynchronizing may end at most this far past the last non-zero
    /// byte (its payload may end in zeros); the bound keeps the search linear.
    static let resynchronizationZeroTailBytesMax = 64 << 10
    /// Upper bound for the bytes checksummed while resynchronizing; past it the tail is not
    /// trusted to be torn, and the open fails rather than guess.
    static let resynchronizationChecksumBytesMax = 1 << 30

    /// The first offset in `(failed, dataEnd)` where a valid record starts, chained to the checksum
    /// stored in the failed record's header: proof that the failed record is not the tail. When
    /// the search is too long to finish, answers the failed offset itself (not a torn tail).
    private static func validFrameStart(_ bytes: [UInt8], after failed: Int, before dataEnd: Int, recordBytesMax: Int) -> Int? {
        guard bytes.count - failed >= WALRecord.headerBytes else { return nil }
        let seed = readLittleEndianUInt32(bytes, at: failed + 5)
        let endMax = min(bytes.count, dataEnd + resynchronizationZeroTailBytesMax)
        var checksummedBytes = 0
        var candidate = failed + WALRecord.headerBytes
        while candidate + WALRecord.headerBytes <= dataEnd {
            // Cheap filters before the checksum: a known type and a length that fits.
            if let type = WALRecordType(rawValue: bytes[candidate + 4]), type != .segmentHeader {
                let length = Int(readLittleEndianUInt32(bytes, at: candidate))
                if WALRecord.payloadBytesRange(of: type, recordBytesMax: recordBytesMax).contains(length),
                   candidate + WALRecord.headerBytes + length <= endMax {
                    checksummedBytes += length
                    if checksummedBytes > resynchronizationChecksumBytesMax { return failed }
                    if case .valid = readFrame(bytes, at: candidate, seed: seed, recordBytesMax: recordBytesMax) { return candidate }
                }
            }
            candidate += 1
        }
        return nil
    }

    private static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
    }
}
