import Checksums
import Raft

/// A snapshot on disk: `<data>/snap/<index>-<term>.snap` (16 hex digits each).
///
/// Layout, integers little endian:
///
///     magic          8 bytes  "RKSNAP\0\0"
///     version        u32      1
///     payloadLength  u64
///     crc            u32      CRC-32C of the payload
///     payload:       index u64, term u64, voter count u32, voters u64 each,
///                    learner count u32, learners u64 each, then the state machine's data
///
/// Written atomically: temporary file, fsync, rename, fsync of the directory.
enum SnapshotFile {
    static let magic: [UInt8] = Array("RKSNAP".utf8) + [0, 0]
    static let version: UInt32 = 1
    static let headerBytes = 24
    static let temporarySuffix = ".tmp"

    /// The steps of writing a snapshot, at which tests simulate a crash.
    enum Step: Hashable, Sendable, CaseIterable {
        case temporaryFileWritten
        case temporaryFileSynced
        case renamed
        case directorySynced
    }

    static func name(index: UInt64, term: UInt64) -> String { "\(hex16(index))-\(hex16(term)).snap" }

    /// The index and term a name written by ``name(index:term:)`` carries; nil for other files.
    static func parse(name: String) -> (index: UInt64, term: UInt64)? {
        guard name.hasSuffix(".snap") else { return nil }
        let parts = name.dropLast(5).split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ $0.count == 16 }),
              let index = UInt64(parts[0], radix: 16), let term = UInt64(parts[1], radix: 16)
        else { return nil }
        return (index, term)
    }

    /// The state machine image kept beside a snapshot received from the leader.
    static func imageName(index: UInt64, term: UInt64) -> String { "\(hex16(index))-\(hex16(term)).image" }

    static func parse(imageName name: String) -> (index: UInt64, term: UInt64)? {
        guard name.hasSuffix(".image") else { return nil }
        return parse(name: String(name.dropLast(6)) + ".snap")
    }

    static func encode(_ snapshot: Snapshot) -> [UInt8] {
        var payload: [UInt8] = []
        let membership = snapshot.metadata.membership
        payload.reserveCapacity(28 + 8 * (membership.voters.count + membership.learners.count) + snapshot.data.count)
        payload.appendLittleEndian(snapshot.metadata.index)
        payload.appendLittleEndian(snapshot.metadata.term)
        payload.appendLittleEndian(UInt32(membership.voters.count))
        for voter in membership.voters { payload.appendLittleEndian(voter) }
        payload.appendLittleEndian(UInt32(membership.learners.count))
        for learner in membership.learners { payload.appendLittleEndian(learner) }
        payload.append(contentsOf: snapshot.data)
        var bytes = magic
        bytes.reserveCapacity(headerBytes + payload.count)
        bytes.appendLittleEndian(version)
        bytes.appendLittleEndian(UInt64(payload.count))
        bytes.appendLittleEndian(CRC32C.checksum(payload))
        bytes.append(contentsOf: payload)
        return bytes
    }

    /// Decodes and checks a snapshot file's bytes; `file` names it in errors.
    static func decode(_ bytes: [UInt8], file: String) throws(StorageCorruption) -> Snapshot {
        guard bytes.count >= headerBytes else {
            throw StorageCorruption(file: file, offset: bytes.count, reason: "the file ends inside the \(headerBytes)-byte header")
        }
        guard Array(bytes[0..<8]) == magic else { throw StorageCorruption(file: file, offset: 0, reason: "not a snapshot file (bad magic)") }
        var header = LittleEndianReader(bytes[8..<headerBytes])
        let fileVersion = header.readUInt32()!
        let payloadLength = header.readUInt64()!
        let storedChecksum = header.readUInt32()!
        guard fileVersion == version else { throw StorageCorruption(file: file, offset: 8, reason: "unknown version \(fileVersion)") }
        guard payloadLength == UInt64(bytes.count - headerBytes) else {
            throw StorageCorruption(file: file, offset: 12, reason: "the header announces \(payloadLength) payload bytes, the file holds \(bytes.count - headerBytes)")
        }
        let payload = bytes[headerBytes...]
        let computed = CRC32C.checksum(payload)
        guard computed == storedChecksum else {
            throw StorageCorruption(file: file, offset: headerBytes, reason: "checksum mismatch over the payload")
        }
        var reader = LittleEndianReader(payload)
        func members() -> [NodeID]? {
            guard let count = reader.readUInt32(), Int(count) <= reader.remaining / 8 else { return nil }
            return (0..<Int(count)).map { _ in reader.readUInt64()! }
        }
        guard let index = reader.readUInt64(), let term = reader.readUInt64(), let voters = members(), let learners = members() else {
            throw StorageCorruption(file: file, offset: headerBytes, reason: "the metadata does not decode")
        }
        let membership = Membership(voters: voters, learners: learners)
        return Snapshot(metadata: SnapshotMetadata(index: index, term: term, membership: membership), data: reader.readRest())
    }

    /// Writes `snapshot` into `directory` atomically; `checkpoint` is called after each step
    /// (tests throw from it to simulate a crash there). Returns the file name.
    @discardableResult
    static func write(_ snapshot: Snapshot, directory: String, checkpoint: (Step) throws -> Void) throws -> String {
        let fileName = name(index: snapshot.metadata.index, term: snapshot.metadata.term)
        let finalPath = "\(directory)/\(fileName)"
        let temporaryPath = finalPath + temporarySuffix
        let file = try POSIXFile(path: temporaryPath, create: true, exclusive: true)
        defer { file.close() }
        try file.write(encode(snapshot), at: 0)
        try checkpoint(.temporaryFileWritten)
        try file.synchronize()
        try checkpoint(.temporaryFileSynced)
        try FileSystem.rename(temporaryPath, to: finalPath)
        try checkpoint(.renamed)
        try FileSystem.synchronizeDirectory(directory)
        try checkpoint(.directorySynced)
        return fileName
    }
}
