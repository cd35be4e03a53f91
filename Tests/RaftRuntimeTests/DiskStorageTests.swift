import Raft
@testable import RaftRuntime
import Testing

/// The durable log as the runtime uses it: round trips, segments, snapshots, crashes.
@Suite struct DiskStorageTests {
    @Test func roundTripKeepsEntriesTermsAndHardStateAcrossOverwrites() throws {
        let directory = StorageTestDirectory()
        defer { directory.remove() }
        let path = directory.sub("data")
        let storage = try DiskStorage.open(directory: path, bootstrap: Membership(voters: [1, 2, 3]))
        #expect(storage.lastIndex() == 3)
        #expect(try storage.initialState().hardState == HardState(term: 1, vote: noNode, commit: 3))
        try storage.save(hardState: HardState(term: 2, vote: 1, commit: 5), entries: storageTestEntries(4...10, term: 2), sync: true)
        // A new leader overwrites the suffix from 8.
        try storage.save(hardState: HardState(term: 3, vote: 2, commit: 7), entries: storageTestEntries(8...9, term: 3), sync: true)
        #expect(storage.lastIndex() == 9)
        try storage.save(hardState: nil, entries: storageTestEntries(10...12, term: 3), sync: false)
        // And again, further back, with a hard state change alone afterwards.
        try storage.save(hardState: nil, entries: storageTestEntries(11...11, term: 4), sync: false)
        try storage.save(hardState: HardState(term: 4, vote: 3, commit: 9), entries: [], sync: true)
        let before = try StorageContent(storage)
        #expect(before.lastIndex == 11)
        #expect(before.entries.map(\.term) == [1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4])
        storage.close()

        let reopened = try DiskStorage.open(directory: path, bootstrap: Membership(voters: [7]))
        defer { reopened.close() }
        #expect(try StorageContent(reopened) == before)
        #expect(reopened.recovery == DiskStorage.Recovery())
        #expect(try reopened.term(at: 0) == 0)
        #expect(throws: StorageError.unavailable) { try reopened.term(at: 12) }
        // The bootstrap entries are the membership changes a node rebuilds its membership from.
        #expect(MembershipChange.decode(before.entries[1].data) == MembershipChange(.addVoter, node: 2))
    }

    @Test func smallSegmentsRollOverAndReplayInOrder() throws {
        let directory = StorageTestDirectory()
        defer { directory.remove() }
        let path = directory.sub("data")
        let options = DiskStorage.Options.small(segmentBytes: 512)
        let storage = try DiskStorage.open(directory: path, bootstrap: Membership(voters: [1]), options: options)
        var next: UInt64 = 2
        var term: UInt64 = 1
        for batch in 0..<60 {
            let size = UInt64(batch % 5 + 1)
            if batch % 13 == 12 {
                // Overwrite the last few entries from a new term, sometimes across a segment boundary.
                term += 1
                next -= 3
            }
            try storage.save(hardState: HardState(term: term, vote: 1, commit: 1), entries: storageTestEntries(next...(next + size - 1), term: term, size: 30), sync: batch % 3 == 0)
            next += size
        }
        // One entry larger than a whole segment gets a segment of its own.
        try storage.save(hardState: nil, entries: storageTestEntries(next...next, term: term, size: 2000), sync: true)
        let names = storage.segmentNames
        #expect(names.count > 10)
        // Names sort by sequence, and their first indexes never pass the log's end.
        #expect(names == names.sorted())
        for (position, name) in names.enumerated() {
            let segment = try #require(WriteAheadLog.Segment(name: name))
            #expect(segment.sequence == UInt64(position + 1))
            #expect(segment.firstIndex <= storage.lastIndex() + 1)
        }
        let before = try StorageContent(storage)
        #expect(before.lastIndex == next)
        storage.close()
        let reopened = try DiskStorage.open(directory: path, bootstrap: Membership(), options: options)
        defer { reopened.close() }
        #expect(try StorageContent(reopened) == before)
        #expect(reopened.segmentNames == names)
    }

    @Test func compactionRemovesSegmentsWhollyBelowTheSnapshot() throws {
        let directory = StorageTestDirectory()
        defer { directory.remove() }
        let path = directory.sub("data")
        let options = DiskStorage.Options.small(segmentBytes: 512)
        let storage = try DiskStorage.open(directory: path, bootstrap: Membership(voters: [1]), options: options)
        for index in UInt64(2)...100 {
            try storage.save(hardState: HardState(term: 2, vote: 1, commit: index), entries: storageTestEntries(index...index, term: 2, size: 30), sync: false)
        }
        try storage.save(hardState: nil, entries: [], sync: true)
        let allSegments = storage.segmentNames.compactMap(WriteAheadLog.Segment.init(name:))
        try storage.createSnapshot(index: 60, membership: Membership(voters: [1]), data: [6, 0])
        #expect(storage.segmentNames.count == allSegments.count)
        try storage.compact(upTo: 55)
        let remaining = storage.segmentNames.compactMap(WriteAheadLog.Segment.init(name:))
        // Exactly the segments whose successor starts at or below 56 are gone.
        let expectedRemoved = allSegments.indices.filter { $0 + 1 < allSegments.count && allSegments[$0 + 1].firstIndex <= 56 }.count
        #expect(expectedRemoved > 3)
        #expect(remaining == Array(allSegments[expectedRemoved...]))
        #expect(remaining[0].firstIndex <= 56)
        #expect(storage.firstIndex() == 56)
        #expect(throws: StorageError.compacted) { try storage.entries(from: 55, to: 57, maxBytes: .max) }
        #expect(try storage.term(at: 55) == 2)
        let tail = try storage.entries(from: 56, to: 101, maxBytes: .max)
        #expect(tail == storageTestEntries(56...100, term: 2, size: 30))
        storage.close()

        // On reopen the log starts after the snapshot; nothing before it was needed.
        let reopened = try DiskStorage.open(directory: path, bootstrap: Membership(), options: options)
        #expect(reopened.firstIndex() == 61)
        #expect(reopened.lastIndex() == 100)
        #expect(try reopened.term(at: 60) == 2)
        #expect(try reopened.snapshot().metadata == SnapshotMetadata(index: 60, term: 2, membership: Membership(voters: [1])))
        #expect(try reopened.snapshot().data == [6, 0])
        #expect(try reopened.entries(from: 61, to: 101, maxBytes: .max) == Array(tail.dropFirst(5)))
        #expect(try reopened.initialState().hardState.commit == 100)
        // Appending and compacting after a reopen keep working.
        try reopened.save(hardState: nil, entries: storageTestEntries(101...110, term: 3, size: 30), sync: true)
        try reopened.createSnapshot(index: 105, membership: Membership(voters: [1]), data: [])
        try reopened.compact(upTo: 105)
        #expect(reopened.segmentNames.count < remaining.count)
        reopened.close()
        let again = try DiskStorage.open(directory: path, bootstrap: Membership(), options: options)
        defer { again.close() }
        #expect(again.firstIndex() == 106)
        #expect(again.lastIndex() == 110)
        #expect(StorageTestFiles.list("\(path)/snap").count == 2)
    }

    @Test("a snapshot's image file from the leader moves beside the log, survives a reopen, and goes with its record")
    func snapshotImageMovesBesideTheLog() throws {
        let directory = StorageTestDirectory()
        defer { directory.remove() }
        let path = directory.sub("data")
        var options = DiskStorage.Options.small(segmentBytes: 1024)
        options.snapshotFilesKept = 1
        let storage = try DiskStorage.open(directory: path, bootstrap: Membership(voters: [1]), options: options)
        try FileSystem.makeDirectory("\(path)/transfer")
        let incoming = "\(path)/transfer/in-1.image"
        try StorageTestFiles.write(Array("image at 50".utf8), to: incoming)
        let metadata = SnapshotMetadata(index: 50, term: 4, membership: Membership(voters: [1]))
        let stored = try storage.applySnapshot(Snapshot(metadata: metadata, data: [7]), image: incoming)
        #expect(stored == storage.imagePath(for: metadata))
        #expect(stored == "\(path)/snap/0000000000000032-0000000000000004.image")
        #expect(!FileSystem.fileExists(incoming))
        #expect(try StorageTestFiles.read(storage.imagePath(for: metadata)) == Array("image at 50".utf8))
        // An older snapshot's image is not taken: it stays where it was, for its owner to remove.
        try StorageTestFiles.write([1], to: incoming)
        #expect(try storage.applySnapshot(Snapshot(metadata: SnapshotMetadata(index: 40, term: 4), data: []), image: incoming) == incoming)
        #expect(FileSystem.fileExists(incoming))
        storage.close()

        // A crash between an image's move and its record's write leaves an image with no record:
        // removed on open; the real one stays.
        try StorageTestFiles.write([2], to: "\(path)/snap/0000000000000063-0000000000000005.image")
        let reopened = try DiskStorage.open(directory: path, bootstrap: Membership(), options: options)
        defer { reopened.close() }
        #expect(try reopened.snapshot().metadata == metadata)
        #expect(StorageTestFiles.list("\(path)/snap") == ["0000000000000032-0000000000000004.image", "0000000000000032-0000000000000004.snap"])
        // A later snapshot of the state machine's own replaces it, and its image goes with it.
        try reopened.save(hardState: HardState(term: 4, vote: noNode, commit: 60), entries: storageTestEntries(51...60, term: 4), sync: true)
        try reopened.createSnapshot(index: 60, membership: Membership(voters: [1]), data: [6])
        #expect(StorageTestFiles.list("\(path)/snap") == ["000000000000003c-0000000000000004.snap"])
    }

    @Test func snapshotFromTheLeaderResetsTheLogDurably() throws {
        let directory = StorageTestDirectory()
        defer { directory.remove() }
        let path = directory.sub("data")
        let options = DiskStorage.Options.small(segmentBytes: 1024)
        let storage = try DiskStorage.open(directory: path, bootstrap: Membership(), options: options)
        try storage.save(hardState: HardState(term: 1, vote: 2, commit: 10), entries: storageTestEntries(1...30, term: 1), sync: true)
        let snapshot = Snapshot(metadata: SnapshotMetadata(index: 50, term: 4, membership: Membership(voters: [2, 3], learners: [5])), data: Array("state".utf8))
        try storage.applySnapshot(snapshot)
        #expect(storage.firstIndex() == 51)
        #expect(storage.lastIndex() == 50)
        #expect(storage.segmentNames.count == 1)
        #expect(WriteAheadLog.Segment(name: storage.segmentNames[0])?.firstIndex == 51)
        // An older snapshot is ignored.
        try storage.applySnapshot(Snapshot(metadata: SnapshotMetadata(index: 40, term: 4), data: []))
        try storage.save(hardState: HardState(term: 4, vote: noNode, commit: 52), entries: storageTestEntries(51...53, term: 4), sync: true)
        let before = try StorageContent(storage)
        storage.close()
        let reopened = try DiskStorage.open(directory: path, bootstrap: Membership(), options: options)
        defer { reopened.close() }
        #expect(try StorageContent(reopened) == before)
        #expect(try reopened.initialState().membership == Membership(voters: [2, 3], learners: [5]))
        #expect(try reopened.snapshot() == snapshot)
    }

    /// A store with entries 11...30 (term 2) after a snapshot at 10 (term 1), commit 25.
    static func storeWithOldSnapshot(_ path: String, options: DiskStorage.Options) throws -> DiskStorage {
        let storage = try DiskStorage.open(directory: path, bootstrap: Membership(), options: options)
        try storage.save(hardState: HardState(term: 2, vote: 1, commit: 25), entries: storageTestEntries(1...10, term: 1) + storageTestEntries(11...30, term: 2), sync: true)
        try storage.createSnapshot(index: 10, membership: Membership(voters: [1]), data: [10])
        try storage.compact(upTo: 10)
        return storage
    }

    @Test(arguments: SnapshotFile.Step.allCases)
    func localSnapshotInterruptedAtEachStepLeavesAUsableStore(step: SnapshotFile.Step) throws {
        let directory = StorageTestDirectory()
        defer { directory.remove() }
        let path = directory.sub("data")
        let options = DiskStorage.Options.small(segmentBytes: 1024)
        let storage = try Self.storeWithOldSnapshot(path, options: options)
        let log = try storage.entries(from: 11, to: 31, maxBytes: .max)
        storage.crashPoint = .snapshotFile(step)
        #expect(throws: DiskStorage.SimulatedCrash(point: .snapshotFile(step))) {
            try storage.createSnapshot(index: 20, membership: Membership(voters: [1]), data: [20])
        }
        // A crashed storage writes nothing more.
        #expect(throws: DiskStorageError.self) { try storage.save(hardState: nil, entries: [], sync: true) }
        storage.close()
        if step == .temporaryFileWritten {
            // Power lost before the fsync: the temporary file may hold anything.
            let temporary = StorageTestFiles.list("\(path)/snap").filter { $0.hasSuffix(".tmp") }
            #expect(temporary.count == 1)
            try StorageTestFiles.write([1, 2, 3], to: "\(path)/snap/\(temporary[0])")
        }

        let reopened = try DiskStorage.open(directory: path, bootstrap: Membership(), options: options)
        let snapshotIndex = try reopened.snapshot().metadata.index
        let renamed = step == .renamed || step == .directorySynced
        #expect(snapshotIndex == (renamed ? 20 : 10))
        #expect(try reopened.snapshot().data == [UInt8(snapshotIndex)])
        #expect(reopened.recovery.removedTemporaryFiles.count == (renamed ? 0 : 1))
        // Either way the log after the snapshot is whole and agrees with it.
        #expect(reopened.firstIndex() == snapshotIndex + 1)
        #expect(reopened.lastIndex() == 30)
        #expect(try reopened.term(at: snapshotIndex) == (snapshotIndex == 10 ? 1 : 2))
        #expect(try reopened.entries(from: snapshotIndex + 1, to: 31, maxBytes: .max) == Array(log.drop { $0.index <= snapshotIndex }))
        #expect(try reopened.initialState().hardState == HardState(term: 2, vote: 1, commit: 25))
        #expect(!StorageTestFiles.list("\(path)/snap").contains { $0.hasSuffix(".tmp") })
        // And it goes on.
        try reopened.createSnapshot(index: 25, membership: Membership(voters: [1]), data: [25])
        try reopened.compact(upTo: 25)
        try reopened.save(hardState: nil, entries: storageTestEntries(31...32, term: 2), sync: true)
        reopened.close()
        let again = try DiskStorage.open(directory: path, bootstrap: Membership(), options: options)
        defer { again.close() }
        #expect(again.firstIndex() == 26)
        #expect(again.lastIndex() == 32)
    }

    /// The points at which applying a leader's snapshot can be interrupted, in order.
    static let leaderSnapshotCrashPoints: [DiskStorage.CrashPoint] = SnapshotFile.Step.allCases.map { .snapshotFile($0) } + [.snapshotMarkerWritten]

    @Test(arguments: leaderSnapshotCrashPoints, [UInt64(25), 50])
    func leaderSnapshotInterruptedAtEachStepLeavesOldOrNewState(point: DiskStorage.CrashPoint, snapshotIndex: UInt64) throws {
        let directory = StorageTestDirectory()
        defer { directory.remove() }
        let path = directory.sub("data")
        let options = DiskStorage.Options.small(segmentBytes: 1024)
        let storage = try Self.storeWithOldSnapshot(path, options: options)
        let old = try StorageContent(storage)
        storage.crashPoint = point
        // Index 25 is inside the local log with a different term (a conflicting suffix); 50 is past it.
        let snapshot = Snapshot(metadata: SnapshotMetadata(index: snapshotIndex, term: 5, membership: Membership(voters: [1, 2])), data: [UInt8(snapshotIndex)])
        #expect(throws: DiskStorage.SimulatedCrash(point: point)) { try storage.applySnapshot(snapshot) }
        storage.close()

        let reopened = try DiskStorage.open(directory: path, bootstrap: Membership(), options: options)
        let installed = point != .snapshotFile(.temporaryFileWritten) && point != .snapshotFile(.temporaryFileSynced)
        if installed {
            #expect(try reopened.snapshot() == snapshot)
            #expect(reopened.firstIndex() == snapshotIndex + 1)
            #expect(reopened.lastIndex() == snapshotIndex)
            #expect(try reopened.term(at: snapshotIndex) == 5)
            #expect(try reopened.initialState().hardState.commit >= snapshotIndex)
            #expect(reopened.recovery.completedSnapshotInstall == (point != .snapshotMarkerWritten))
        } else {
            #expect(try StorageContent(reopened) == old)
        }
        // New entries from the leader follow, and survive another reopen.
        let base = reopened.lastIndex()
        try reopened.save(hardState: HardState(term: 5, vote: noNode, commit: base), entries: storageTestEntries((base + 1)...(base + 3), term: 5), sync: true)
        let before = try StorageContent(reopened)
        reopened.close()
        let again = try DiskStorage.open(directory: path, bootstrap: Membership(), options: options)
        defer { again.close() }
        #expect(try StorageContent(again) == before)
        #expect(again.recovery == DiskStorage.Recovery())
    }

    @Test func unreadableSnapshotFallsBackToAnOlderOneWhileTheLogCoversTheGap() throws {
        let directory = StorageTestDirectory()
        defer { directory.remove() }
        let path = directory.sub("data")
        let options = DiskStorage.Options.small(segmentBytes: 1024)
        let storage = try Self.storeWithOldSnapshot(path, options: options)
        try storage.createSnapshot(index: 20, membership: Membership(voters: [1]), data: [20])
        let log = try storage.entries(from: 11, to: 31, maxBytes: .max)
        storage.close()
        let newest = "\(path)/snap/\(SnapshotFile.name(index: 20, term: 2))"
        try StorageTestFiles.flipBit(4, at: SnapshotFile.headerBytes + 3, in: newest)

        let reopened = try DiskStorage.open(directory: path, bootstrap: Membership(), options: options)
        defer { reopened.close() }
        #expect(try reopened.snapshot().metadata.index == 10)
        #expect(try reopened.entries(from: 11, to: 31, maxBytes: .max) == log)
        #expect(reopened.recovery.skippedSnapshots.map(\.file) == ["snap/\(SnapshotFile.name(index: 20, term: 2))"])
        #expect(StorageTestFiles.list("\(path)/snap").contains("\(SnapshotFile.name(index: 20, term: 2)).corrupt"))
    }

    @Test func unreadableSnapshotWithTheLogCompactedPastTheOlderOneIsCorruption() throws {
        let directory = StorageTestDirectory()
        defer { directory.remove() }
        let path = directory.sub("data")
        let options = DiskStorage.Options.small(segmentBytes: 512)
        let storage = try DiskStorage.open(directory: path, bootstrap: Membership(voters: [1]), options: options)
        try storage.save(hardState: HardState(term: 1, vote: 1, commit: 100), entries: storageTestEntries(2...100, term: 1, size: 30), sync: true)
        try storage.createSnapshot(index: 40, membership: Membership(voters: [1]), data: [40])
        try storage.createSnapshot(index: 80, membership: Membership(voters: [1]), data: [80])
        try storage.compact(upTo: 80)
        #expect(try #require(WriteAheadLog.Segment(name: storage.segmentNames[0])).firstIndex > 41)
        storage.close()
        let newest = SnapshotFile.name(index: 80, term: 1)
        try StorageTestFiles.flipBit(0, at: SnapshotFile.headerBytes + 30, in: "\(path)/snap/\(newest)")
        #expect {
            try DiskStorage.open(directory: path, bootstrap: Membership(), options: options)
        } throws: { error in
            guard let corruption = error as? StorageCorruption else { return false }
            return corruption.file == "snap/\(newest)" && corruption.description.contains(newest) && corruption.reason.contains("checksum")
        }
        // Nothing was renamed or repaired by the refused open.
        #expect(StorageTestFiles.list("\(path)/snap").contains(newest))
    }

    @Test func directoryIsLockedWhileOpen() throws {
        let directory = StorageTestDirectory()
        defer { directory.remove() }
        let path = directory.sub("data")
        let storage = try DiskStorage.open(directory: path, bootstrap: Membership(voters: [1]))
        #expect(throws: DiskStorageError.directoryLocked(path: path)) { try DiskStorage.open(directory: path, bootstrap: Membership()) }
        storage.close()
        let reopened = try DiskStorage.open(directory: path, bootstrap: Membership())
        reopened.close()
    }

    // MARK: With a real RaftNode

    /// Handles every `Ready` the way the contract says, with the disk storage underneath.
    static func drain(_ node: RaftNode<DiskStorage>, _ storage: DiskStorage, applied: inout [Entry]) throws {
        var rounds = 0
        while node.hasReady() {
            rounds += 1
            precondition(rounds < 1000, "the node keeps producing Readys")
            let ready = node.ready()
            if let snapshot = ready.snapshot { try storage.applySnapshot(snapshot) }
            try storage.save(hardState: ready.hardState, entries: ready.entries, sync: ready.mustSync)
            applied += ready.committedEntries
            node.advance(ready)
        }
    }

    @Test func singleNodeRestartsWithTheSameTermCommitAndLog() throws {
        let directory = StorageTestDirectory()
        defer { directory.remove() }
        let path = directory.sub("data")
        let options = DiskStorage.Options.small(segmentBytes: 1024)
        let storage = try DiskStorage.open(directory: path, bootstrap: Membership(voters: [1]), options: options)
        let node = try RaftNode(configuration: Configuration(id: 1), storage: storage)
        var applied: [Entry] = []
        node.campaign()
        try Self.drain(node, storage, applied: &applied)
        #expect(node.role == .leader)
        for value in 0..<40 {
            _ = try node.propose(Array("value \(value)".utf8))
            if value % 3 == 0 { try Self.drain(node, storage, applied: &applied) }
            if value == 25 {
                // Snapshot what was applied, keep a few entries below it.
                try Self.drain(node, storage, applied: &applied)
                let index = node.appliedIndex
                try storage.createSnapshot(index: index, membership: try #require(node.membership(at: index)), data: Array("upTo \(index)".utf8))
                try storage.compact(upTo: index - 3)
            }
        }
        try Self.drain(node, storage, applied: &applied)
        #expect(node.commitIndex == node.lastIndex)
        #expect(applied.filter { $0.kind == .normal && !$0.data.isEmpty }.count == 40)
        #expect(storage.segmentNames.count > 1)
        let (term, commit, last) = (node.term, node.commitIndex, node.lastIndex)
        let snapshotIndex = try storage.snapshot().metadata.index
        let log = try storage.entries(from: snapshotIndex + 1, to: last + 1, maxBytes: .max)
        storage.close()

        let reopened = try DiskStorage.open(directory: path, bootstrap: Membership(), options: options)
        var configuration = Configuration(id: 1)
        configuration.appliedIndex = snapshotIndex
        let restarted = try RaftNode(configuration: configuration, storage: reopened)
        #expect(restarted.term == term)
        #expect(restarted.commitIndex == commit)
        #expect(restarted.lastIndex == last)
        #expect(restarted.membership == Membership(voters: [1]))
        #expect(try reopened.entries(from: snapshotIndex + 1, to: last + 1, maxBytes: .max) == log)
        // It hands out the committed entries after the snapshot again, and leads on.
        var reapplied: [Entry] = []
        restarted.campaign()
        try Self.drain(restarted, reopened, applied: &reapplied)
        #expect(restarted.role == .leader)
        #expect(restarted.term == term + 1)
        #expect(Array(reapplied.prefix(log.count)) == log)
        _ = try restarted.propose(Array("after restart".utf8))
        try Self.drain(restarted, reopened, applied: &reapplied)
        #expect(reapplied.last?.data == Array("after restart".utf8))
        reopened.close()
    }
}
