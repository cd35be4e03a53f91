import Glibc
import NIOCore
import Raft

/// What follows a snapshot message on the wire: the state machine's image, read in chunks from
/// memory or from a file (never loaded whole), so that a snapshot of any size costs one chunk of
/// memory to send.
public enum SnapshotImage: Sendable {
    case bytes([UInt8])
    /// A file the transport takes over: it is removed once sent, or once sending failed.
    case file(String)
}

/// The directory where a transport keeps snapshot images in transit: received ones (`in-*`),
/// until the Raft loop takes or drops them, and outgoing ones (`out-*`), until sent. Emptied
/// when the transport starts listening, since nothing in it outlives the process that wrote it.
public struct SnapshotSpool: Sendable, Hashable {
    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    /// Creates the directory (0700) if needed and removes what an earlier process left.
    func prepare() throws {
        try FileSystem.makeDirectory(directory)
        for name in try FileSystem.contents(of: directory) { try FileSystem.remove("\(directory)/\(name)") }
    }

    /// A fresh, unused path in the spool (`prefix` is `in` or `out`).
    public func newPath(_ prefix: String) -> String {
        "\(directory)/\(prefix)-\(String(UInt64.random(in: 1...UInt64.max), radix: 16)).image"
    }

    /// Removes a spooled file; a file already gone is not an error.
    public static func remove(_ path: String) {
        try? FileSystem.remove(path)
    }
}

/// The sending side of one snapshot: the image's bytes, read a chunk at a time. Used only on its
/// sender's event loop, which is what makes the `@unchecked Sendable` safe.
struct SnapshotImageReader: @unchecked Sendable {
    private enum Source {
        case bytes([UInt8])
        case file(POSIXFile)
    }

    private let source: Source
    private let ownedPath: String?
    let byteCount: Int

    init(_ image: SnapshotImage) throws {
        switch image {
        case .bytes(let bytes):
            source = .bytes(bytes)
            ownedPath = nil
            byteCount = bytes.count
        case .file(let path):
            let file = try POSIXFile(path: path, create: false)
            source = .file(file)
            ownedPath = path
            byteCount = try file.size()
        }
    }

    /// Appends up to `count` bytes from `offset` to `buffer`; returns how many (0 at the end).
    func read(at offset: Int, count: Int, into buffer: inout ByteBuffer) throws -> Int {
        let length = min(count, byteCount - offset)
        guard length > 0 else { return 0 }
        switch source {
        case .bytes(let bytes):
            buffer.writeBytes(bytes[offset..<offset + length])
            return length
        case .file(let file):
            return try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { pointer in
                try file.read(into: UnsafeMutableRawBufferPointer(rebasing: pointer[0..<length]), at: offset)
            }
        }
    }

    /// Closes the file and removes it if the transport owned it.
    func finish() {
        if case .file(let file) = source { file.close() }
        if let ownedPath { SnapshotSpool.remove(ownedPath) }
    }
}

/// The receiving side of one snapshot: its message, and the file its image is written to as the
/// chunks arrive. Used by one thread at a time (the connection's event loop while chunks
/// arrive, then the thread that syncs it), which is what makes the `@unchecked Sendable` safe.
final class IncomingSnapshot: @unchecked Sendable {
    let identifier: UInt64
    let message: Message
    let expectedBytes: Int
    private(set) var receivedBytes = 0
    let path: String
    private var file: POSIXFile?

    init(identifier: UInt64, message: Message, expectedBytes: Int, spool: SnapshotSpool) throws {
        self.identifier = identifier
        self.message = message
        self.expectedBytes = expectedBytes
        path = spool.newPath("in")
        file = try POSIXFile(path: path, create: true, exclusive: true)
    }

    var isComplete: Bool { receivedBytes == expectedBytes }

    func append(_ chunk: ByteBuffer) throws {
        guard let file else { throw MessageCodec.DecodingError(reason: "snapshot image already closed") }
        guard chunk.readableBytes <= expectedBytes - receivedBytes else {
            throw MessageCodec.DecodingError(reason: "snapshot image longer than the \(expectedBytes) bytes announced")
        }
        try chunk.withUnsafeReadableBytes { bytes in
            try Result { () throws(DiskStorageError) in try file.write(bytes, at: receivedBytes) }.get()
        }
        receivedBytes += chunk.readableBytes
    }

    /// Makes the image durable (it may become the member's state) and closes it. Blocking: call
    /// off the event loop.
    func synchronizeAndClose() throws {
        guard let file else { return }
        self.file = nil
        defer { file.close() }
        try file.synchronize()
    }

    /// Drops an unfinished transfer: the file is closed and removed.
    func abandon() {
        file?.close()
        file = nil
        SnapshotSpool.remove(path)
    }
}
