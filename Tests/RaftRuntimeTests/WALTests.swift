import Checksums
import Raft
@testable import RaftRuntime
import Testing

/// The write-ahead log's framing: checksums, torn tails, corruption, limits.
@Suite struct WALTests {
    @Test func crc32cMatchesPublishedVectors() {
        // RFC 3720 (iSCSI) B.4 and the common check value.
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum(Array(0...31)) == 0x46DD_794E)
        #expect(CRC32C.checksum([]) == 0)
        // Continuing a checksum equals checksumming the concatenation, at every split point.
        let bytes = (0..<100).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        for split in 0...bytes.count {
            #expect(CRC32C.update(CRC32C.checksum(bytes[..<split]), with: bytes[split...]) == CRC32C.checksum(bytes))
        }
    }

    /// A log of `count` single-entry records (a joiner's empty bootstrap first), written in
    /// separate saves; returns the segment's path and the offset where each entry record starts,
    /// plus the end of the last one.
    static func writeLog(in directory: StorageTestDirectory, count: UInt64) throws -> (segment: String, recordOffsets: [Int], end: Int) {
        let storage = try DiskStorage.open(directory: directory.sub("data"), bootstrap: Membership(), options: .small())
        defer { storage.close() }
        var offsets: [Int] = []
        for index in 1...count {
            offsets.append(storage.writeOffset)
            try storage.save(hardState: nil, entries: storageTestEntries(index...index, term: 1, size: 40), sync: true)
        }
        #expect(storage.segmentNames.count == 1)
        return (directory.sub("data/wal/\(storage.segmentNames[0])"), offsets, storage.writeOffset)
    }

    @Test func tornTailAtEveryByteOfTheLastRecordIsCutOff() throws {
        let directory = StorageTestDirectory()
        defer { directory.remove() }
        let count: UInt64 = 5
        let (segment, offsets, end) = try Self.writeLog(in: directory, count: count)
        let pristine = try StorageTestFiles.read(segment)
        let segmentName = String(segment.split(separator: "/").last!)
        let expected = storageTestEntries(1...count, term: 1, size: 40)
        let lastStart = offsets[offsets.count - 1]
        var cases = 0
        for mode in ["truncate", "zero"] {
            for cut in lastStart...end {
                var bytes = pristine
                if mode == "truncate" {
                    bytes.removeSubrange(cut...)
                } else {
                    for position in cut..<end { bytes[position] = 0 }
                }
                let data = directory.sub("case-\(mode)-\(cut)")
                try StorageTestFiles.write(bytes, to: "\(data)/wal/\(segmentName)")
                let survivors = cut == end ? count : count - 1
                do {
                    let storage = try DiskStorage.open(directory: data, bootstrap: Membership(), options: .small())
                    #expect(storage.lastIndex() == survivors, "\(mode) at \(cut)")
                    #expect(try storage.entries(from: 1, to: survivors + 1, maxBytes: .max) == Array(expected[0..<Int(survivors)]), "\(mode) at \(cut)")
                    // Something was cut exactly when the last record had some bytes but not all.
                    let tornExpected = cut < end && (mode == "truncate" ? cut > lastStart : pristine[lastStart..<cut].contains { $0 != 0 })
                    #expect((storage.recovery.tornTail != nil) == tornExpected, "\(mode) at \(cut): \(String(describing: storage.recovery.tornTail))")
                    // The log goes on from there, and the next open sees it.
                    let replacement = storageTestEntries((survivors + 1)...(survivors + 1), term: 2, size: 11)
                    try storage.save(hardState: HardState(term: 2, vote: 1, commit: 1), entries: replacement, sync: true)
                    storage.close()
                    let reopened = try DiskStorage.open(directory: data, bootstrap: Membership(), options: .small())
                    #expect(reopened.recovery.tornTail == nil, "\(mode) at \(cut)")
                    #expect(try reopened.entries(from: 1, to: survivors + 2, maxBytes: .max) == Array(expected[0..<Int(survivors)]) + replacement, "\(mode) at \(cut)")
                    #expect(try reopened.initialState().hardState == HardState(term: 2, vote: 1, commit: 1))
                    reopened.close()
                } catch {
                    Issue.record("\(mode) at \(cut): \(error)")
                }
                directory.removeSubdirectory("case-\(mode)-\(cut)")
                cases += 1
            }
        }
        #expect(cases == 2 * (end - lastStart + 1))
    }

    @Test func flippedBitBeforeTheTailIsReportedWithFileAndOffset() throws {
        let directory = StorageTestDirectory()
        defer { directory.remove() }
        let (segment, offsets, _) = try Self.writeLog(in: directory, count: 5)
        let pristine = try StorageTestFiles.read(segment)
        let segmentName = String(segment.split(separator: "/").last!)
        // (byte within the record, bit): the length's low byte, a length bit that points past
        // the data, a length above recordBytesMax, the type, the checksum, and the payload.
        let flips = [(0, 0), (1, 7), (3, 6), (4, 1), (6, 3), (WALRecord.headerBytes + 5, 2), (WALRecord.headerBytes + 30, 0)]
        for (record, start) in offsets.dropLast().enumerated() {
            for (byte, bit) in flips {
                var bytes = pristine
                bytes[start + byte] ^= UInt8(1 << bit)
                let data = directory.sub("flip-\(record)-\(byte)-\(bit)")
                try StorageTestFiles.write(bytes, to: "\(data)/wal/\(segmentName)")
                do {
                    _ = try DiskStorage.open(directory: data, bootstrap: Membership(), options: .small())
                    Issue.record("record \(record + 1), byte \(byte), bit \(bit): opened a corrupt log")
                } catch let corruption as StorageCorruption {
                    #expect(corruption.file == "wal/\(segmentName)")
                    #expect(corruption.offset == start, "record \(record + 1), byte \(byte), bit \(bit): \(corruption)")
                    #expect(corruption.description.contains(segmentName) && corruption.description.contains("offset \(start)"))
                } catch {
                    Issue.record("record \(record + 1), byte \(byte), bit \(bit): \(error)")
                }
                directory.removeSubdirectory("flip-\(record)-\(byte)-\(bit)")
            }
        }
    }

    @Test func damageInASegmentThatIsNotTheLastIsCorruptionEvenAtItsEnd() throws {
        let directory = StorageTestDirectory()
        defer { directory.remove() }
        let path = directory.sub("data")
        let storage = try DiskStorage.open(directory: path, bootstrap: Membership(), options: .small(segmentBytes: 512))
        for index in UInt64(1)...40 { try storage.save(hardState: nil, entries: storageTestEntries(index...index, term: 1, size: 40), sync: false) }
        try storage.save(hardState: nil, entries: [], sync: true)
        let names = storage.segmentNames
        storage.close()
        #expect(names.count >= 3)
        // The last record of the first segment, torn as if the crash had hit it.
        let first = "\(path)/wal/\(names[0])"
        var bytes = try StorageTestFiles.read(first)
        let end = SegmentScanner.endOfData(bytes)
        bytes[end - 1] ^= 0x10
        try StorageTestFiles.write(bytes, to: first)
        #expect {
            try DiskStorage.open(directory: path, bootstrap: Membership(), options: .small(segmentBytes: 512))
        } throws: { error in
            guard let corruption = error as? StorageCorruption else { return false }
            return corruption.file == "wal/\(names[0])" && corruption.reason.contains("not the last")
        }
    }

    @Test func missingMiddleSegmentIsCorruption() throws {
        let directory = StorageTestDirectory()
        defer { directory.remove() }
        let path = directory.sub("data")
        let storage = try DiskStorage.open(directory: path, bootstrap: Membership(), options: .small(segmentBytes: 512))
        for index in UInt64(1)...40 { try storage.save(hardState: nil, entries: storageTestEntries(index...index, term: 1, size: 40), sync: true) }
        let names = storage.segmentNames
        storage.close()
        try FileSystem.remove("\(path)/wal/\(names[1])")
        #expect(throws: StorageCorruption.self) {
            try DiskStorage.open(directory: path, bootstrap: Membership(), options: .small(segmentBytes: 512))
        }
    }

    @Test func recordAboveTheLimitIsRefusedAndNeverWritten() throws {
        let directory = StorageTestDirectory()
        defer { directory.remove() }
        var options = DiskStorage.Options.small()
        options.recordBytesMax = 1024
        let path = directory.sub("data")
        let storage = try DiskStorage.open(directory: path, bootstrap: Membership(voters: [1]), options: options)
        let before = storage.writeOffset
        #expect(throws: DiskStorageError.recordTooLarge(bytes: 2000 + 17, limit: 1024)) {
            try storage.save(hardState: HardState(term: 1, vote: 1, commit: 1), entries: [Entry(term: 1, index: 2, data: [UInt8](repeating: 7, count: 2000))], sync: true)
        }
        #expect(storage.writeOffset == before)
        #expect(storage.lastIndex() == 1)
        // Still usable: the refusal wrote nothing and broke nothing.
        try storage.save(hardState: nil, entries: [Entry(term: 1, index: 2, data: [1, 2, 3])], sync: true)
        storage.close()
        let reopened = try DiskStorage.open(directory: path, bootstrap: Membership(), options: options)
        defer { reopened.close() }
        #expect(reopened.lastIndex() == 2)
        #expect(try reopened.entries(from: 2, to: 3, maxBytes: .max) == [Entry(term: 1, index: 2, data: [1, 2, 3])])
    }

    @Test func invalidOptionsAreRefused() {
        var options = DiskStorage.Options()
        options.segmentBytes = 100
        #expect(throws: DiskStorageError.self) { try options.validate() }
        options = DiskStorage.Options()
        options.recordBytesMax = 0
        #expect(throws: DiskStorageError.self) { try options.validate() }
        options = DiskStorage.Options()
        options.snapshotFilesKept = 0
        #expect(throws: DiskStorageError.self) { try options.validate() }
        #expect(throws: Never.self) { try DiskStorage.Options().validate() }
    }
}
