import Foundation
import Glibc
import Testing

@testable import KVStore

/// Snapshots as files (what members send each other): a consistent copy written through a
/// connection of its own while the store applies, checked and restored from the file, page by
/// page; every file a peer could send that the store cannot take is refused with a reason.
@Suite struct SnapshotFileTests {
    static func populated() throws -> TestStore {
        let store = try TestStore()
        for number in 0..<60 { try store.put("k\(number % 9)", String(repeating: "v", count: number * 40)) }
        try store.delete("k4")
        try store.apply(.compaction(CompactionRequest(revision: 30)))
        let lease = try store.grant(ttl: 100)
        try store.put("leased", "x", lease: lease)
        return store
    }

    static func fileBytes(_ path: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    @Test("a snapshot file is a private rollback-mode copy that validates and restores to the same state; checking and restoring leave it as it was")
    func roundTrip() throws {
        let source = try Self.populated()
        let file = source.directory.appendingPathComponent("snapshot.image").path
        try KVStore.writeSnapshot(ofDatabaseAt: source.path, toFile: file)
        var status = stat()
        #expect(stat(file, &status) == 0)
        #expect(status.st_mode & 0o777 == 0o600)
        let written = try Self.fileBytes(file)
        #expect(written[18] == 1 && written[19] == 1)
        #expect(!FileManager.default.fileExists(atPath: file + "-journal"))
        try KVStore.validateSnapshot(file: file, appliedIndexMin: source.index)
        let target = try TestStore()
        try target.put("replaced", "by the snapshot")
        try target.store.restore(fromFile: file, appliedIndexMin: source.index)
        target.index = source.index
        #expect(try target.store.stateDigest() == source.store.stateDigest())
        #expect(target.store.appliedIndex == source.index)
        #expect(try target.get("replaced") == nil)
        #expect(try Self.fileBytes(file) == written)
        // It goes on from there, and survives a reopen.
        try target.put("after", "restore")
        try target.reopen()
        #expect(try target.get("after")?.value == bytes("restore"))
        // A snapshot at index N must hold everything up to N.
        #expect(throws: KVStoreError.self) { try KVStore.validateSnapshot(file: file, appliedIndexMin: source.index + 1) }
    }

    @Test("copies written while another thread applies are each one committed state")
    func copiesDuringWrites() async throws {
        nonisolated(unsafe) let source = try TestStore()
        let path = source.path
        let directory = source.directory.path
        let stop = StopFlag()
        let done = StopFlag()
        // Every put adds one new key, so a consistent state has revision - 1 keys.
        let writer = Thread {
            var number = 0
            while !stop.isSet {
                _ = try? source.put("key\(number)", String(repeating: "w", count: 300))
                number += 1
            }
            done.set()
        }
        writer.start()
        defer { stop.set() }
        for copy in 0..<8 {
            try await Task.sleep(for: .milliseconds(30))
            let file = "\(directory)/copy-\(copy).image"
            try KVStore.writeSnapshot(ofDatabaseAt: path, toFile: file)
            try KVStore.validateSnapshot(file: file)
            let restored = try TestStore()
            try restored.store.restore(fromFile: file)
            let count = try restored.range(RangeRequest(key: [0], rangeEnd: [0], countOnly: true)).count
            #expect(count == restored.store.currentRevision - 1, "copy \(copy)")
        }
        stop.set()
        while !done.isSet { try await Task.sleep(for: .milliseconds(5)) }
        #expect(source.store.currentRevision > 100)
    }

    @Test("files a store cannot take are refused with a reason, and the target store is untouched")
    func badFilesAreRefused() throws {
        let source = try Self.populated()
        let directory = source.directory.path
        let good = "\(directory)/good.image"
        try KVStore.writeSnapshot(ofDatabaseAt: source.path, toFile: good)
        let image = try Self.fileBytes(good)
        var walMode = image
        walMode[18] = 2
        walMode[19] = 2
        // Every B-tree page after the first with a page type SQLite does not have.
        var corruptPages = image
        let pageSize = Int(image[16]) << 8 | Int(image[17])
        for page in stride(from: pageSize, to: image.count, by: pageSize) { corruptPages[page] = 0x55 }
        let cases: [(String, [UInt8])] = [
            ("empty", []),
            ("not SQLite", Array(repeating: 7, count: 4096)),
            ("truncated header", Array(image.prefix(50))),
            ("truncated", Array(image.prefix(image.count / 2))),
            ("WAL mode", walMode),
            ("corrupt pages", corruptPages),
        ]
        let target = try TestStore()
        try target.put("keep", "me")
        let digest = try target.store.stateDigest()
        for (name, bytes) in cases {
            let file = "\(directory)/\(name).image"
            try Data(bytes).write(to: URL(fileURLWithPath: file))
            #expect(throws: (any Error).self, "\(name)") { try KVStore.validateSnapshot(file: file) }
            #expect(throws: (any Error).self, "\(name)") { try target.store.restore(fromFile: file) }
            #expect(try target.store.stateDigest() == digest, "\(name)")
        }
        // A schema the store does not know (edited through SQLite itself, then copied).
        try source.store.database.execute("CREATE TABLE extra (x)")
        let foreign = "\(directory)/foreign.image"
        try KVStore.writeSnapshot(ofDatabaseAt: source.path, toFile: foreign)
        #expect(throws: KVStoreError.self) { try KVStore.validateSnapshot(file: foreign) }
        // Missing files and links are not followed.
        #expect(throws: KVStoreError.self) { try KVStore.validateSnapshot(file: "\(directory)/missing.image") }
        let link = "\(directory)/link.image"
        #expect(symlink(good, link) == 0)
        #expect(throws: KVStoreError.self) { try KVStore.validateSnapshot(file: link) }
        #expect(try target.store.stateDigest() == digest)
        try target.put("still", "writable")
    }

    @Test("a copy is never written over an existing file or through a link, and a failed copy leaves no file")
    func copyTargetIsFresh() throws {
        let source = try Self.populated()
        let directory = source.directory.path
        let existing = "\(directory)/existing"
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: existing))
        #expect(throws: SQLiteError.self) { try KVStore.writeSnapshot(ofDatabaseAt: source.path, toFile: existing) }
        #expect(try Self.fileBytes(existing) == [1, 2, 3])
        let link = "\(directory)/link"
        #expect(symlink("\(directory)/elsewhere", link) == 0)
        #expect(throws: SQLiteError.self) { try KVStore.writeSnapshot(ofDatabaseAt: source.path, toFile: link) }
        #expect(!FileManager.default.fileExists(atPath: "\(directory)/elsewhere"))
        let target = "\(directory)/from-nothing.image"
        #expect(throws: SQLiteError.self) { try KVStore.writeSnapshot(ofDatabaseAt: "\(directory)/no-such.sqlite", toFile: target) }
        #expect(!FileManager.default.fileExists(atPath: target))
    }
}

final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
