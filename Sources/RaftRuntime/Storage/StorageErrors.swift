import Glibc

/// The data directory holds bytes that cannot be trusted: a checksum failure before the torn
/// tail, a missing segment, a snapshot that the log does not connect to. A node that sees this
/// must not start: serving from it could contradict what it promised before.
public struct StorageCorruption: Error, Sendable, Hashable, CustomStringConvertible {
    /// The file, as a path inside the data directory (`wal/<segment>.wal`, `snap/<name>.snap`).
    public var file: String
    /// The byte offset in `file` where the bad data starts.
    public var offset: Int
    public var reason: String

    public init(file: String, offset: Int, reason: String) {
        self.file = file
        self.offset = offset
        self.reason = reason
    }

    public var description: String { "storage corruption in \(file) at offset \(offset): \(reason)" }
}

/// Why a ``DiskStorage`` operation failed, other than corruption.
public enum DiskStorageError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A record (an entry, most likely) is larger than ``DiskStorage/Options/recordBytesMax``.
    /// Nothing was written.
    case recordTooLarge(bytes: Int, limit: Int)
    /// A snapshot is larger than ``DiskStorage/Options/snapshotBytesMax``. Nothing was written.
    case snapshotTooLarge(bytes: Int, limit: Int)
    /// A system call failed. After a failed write or sync the storage refuses further writes
    /// (``failed``): what reached the disk is unknown, so the process must reopen the directory.
    case system(operation: String, path: String, errorNumber: Int32)
    /// A previous write or sync failed, or the storage was closed.
    case failed(reason: String)
    /// Another ``DiskStorage`` (in this or another process) holds the directory.
    case directoryLocked(path: String)
    /// An option cannot work.
    case invalidOption(field: String, reason: String)

    public var description: String {
        switch self {
        case .recordTooLarge(let bytes, let limit): "record of \(bytes) bytes is larger than recordBytesMax \(limit)"
        case .snapshotTooLarge(let bytes, let limit): "snapshot of \(bytes) bytes is larger than snapshotBytesMax \(limit)"
        case .system(let operation, let path, let errorNumber): "\(operation) \(path): \(String(cString: strerror(errorNumber))) (errno \(errorNumber))"
        case .failed(let reason): "storage unusable: \(reason)"
        case .directoryLocked(let path): "data directory \(path) is in use by another process or storage"
        case .invalidOption(let field, let reason): "invalid storage option: \(field) \(reason)"
        }
    }
}
