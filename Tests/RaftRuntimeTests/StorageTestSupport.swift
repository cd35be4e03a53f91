import Foundation
import Glibc
import Raft
@testable import RaftRuntime

/// A fresh directory under /tmp, removed with everything in it by ``remove()``.
struct StorageTestDirectory {
    let path: String

    init() {
        var template = Array("/tmp/raftkube-storage-XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(created != nil, "mkdtemp failed: \(errno)")
        path = String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
    }

    /// A path inside the directory.
    func sub(_ name: String) -> String { "\(path)/\(name)" }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }

    func removeSubdirectory(_ name: String) {
        try? FileManager.default.removeItem(atPath: sub(name))
    }
}

enum StorageTestFiles {
    static func read(_ path: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// Writes `bytes` as the whole content of `path` (creating directories on the way).
    static func write(_ bytes: [UInt8], to path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    static func list(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
    }

    /// Flips one bit of the byte at `offset` in the file at `path`.
    static func flipBit(_ bit: Int, at offset: Int, in path: String) throws {
        var bytes = try read(path)
        bytes[offset] ^= UInt8(1 << bit)
        try write(bytes, to: path)
    }

    static func copyDirectory(_ source: String, to destination: String) throws {
        try? FileManager.default.removeItem(atPath: destination)
        try FileManager.default.copyItem(atPath: source, toPath: destination)
    }
}

/// Entries of `term` at `indexes`, with data that names index and term (and `size` bytes in all).
func storageTestEntries(_ indexes: ClosedRange<UInt64>, term: UInt64, size: Int = 24) -> [Entry] {
    indexes.map { index in
        var data = Array("i\(index)t\(term)".utf8)
        while data.count < size { data.append(UInt8(truncatingIfNeeded: index &* 31 &+ UInt64(data.count))) }
        return Entry(term: term, index: index, data: data)
    }
}

/// Everything the storage holds that the core can read.
struct StorageContent: Equatable {
    var hardState: HardState
    var firstIndex: UInt64
    var lastIndex: UInt64
    var entries: [Entry]
    var termBeforeFirst: UInt64
    var snapshot: Snapshot

    init(_ storage: DiskStorage) throws {
        hardState = try storage.initialState().hardState
        firstIndex = storage.firstIndex()
        lastIndex = storage.lastIndex()
        entries = firstIndex <= lastIndex ? try storage.entries(from: firstIndex, to: lastIndex + 1, maxBytes: .max) : []
        termBeforeFirst = try storage.term(at: firstIndex - 1)
        snapshot = try storage.snapshot()
    }
}

extension DiskStorage.Options {
    /// Small segments, so that tests roll over and compact with few entries.
    static func small(segmentBytes: Int = 64 << 10) -> DiskStorage.Options {
        var options = DiskStorage.Options()
        options.segmentBytes = segmentBytes
        return options
    }
}
