import Glibc

/// An open file descriptor with the few calls the log needs, each retried on `EINTR` and turned
/// into a ``DiskStorageError/system(operation:path:errorNumber:)`` on failure.
final class POSIXFile {
    let path: String
    private(set) var descriptor: Int32

    /// Opens `path` for reading and writing, creating it (mode 0600: the log and snapshots hold
    /// the whole keyspace) when `create` is set. `exclusive` makes a fresh file: whatever had
    /// the name is removed first and the file is created with `O_EXCL` (temporary files). A
    /// symbolic link is never followed.
    init(path: String, create: Bool, exclusive: Bool = false) throws(DiskStorageError) {
        self.path = path
        var flags = O_RDWR | O_CLOEXEC | O_NOFOLLOW
        if create { flags |= O_CREAT }
        if exclusive {
            if unlink(path) != 0 && errno != ENOENT { throw .system(operation: "unlink", path: path, errorNumber: errno) }
            flags |= O_CREAT | O_EXCL
        }
        let descriptor = Glibc.open(path, flags, 0o600)
        if descriptor < 0 { throw .system(operation: "open", path: path, errorNumber: errno) }
        self.descriptor = descriptor
    }

    deinit { close() }

    func close() {
        if descriptor >= 0 {
            _ = Glibc.close(descriptor)
            descriptor = -1
        }
    }

    /// Writes all of `bytes` at `offset`.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(DiskStorageError) {
        precondition(descriptor >= 0, "write to closed file \(path)")
        var written = 0
        while written < bytes.count {
            let result = pwrite(descriptor, bytes.baseAddress! + written, bytes.count - written, off_t(offset + written))
            if result < 0 {
                if errno == EINTR { continue }
                throw .system(operation: "pwrite", path: path, errorNumber: errno)
            }
            written += result
        }
    }

    func write(_ bytes: [UInt8], at offset: Int) throws(DiskStorageError) {
        guard !bytes.isEmpty else { return }
        // `withUnsafeBytes` rethrows untyped errors, so the typed error travels in a Result.
        try bytes.withUnsafeBytes { buffer in
            Result { () throws(DiskStorageError) in try write(buffer, at: offset) }
        }.get()
    }

    /// Writes zeros over `[offset, offset + count)`.
    func writeZeros(at offset: Int, count: Int) throws(DiskStorageError) {
        let chunkBytes = 1 << 20
        let zeros = [UInt8](repeating: 0, count: min(count, chunkBytes))
        var position = offset
        while position < offset + count {
            let length = min(zeros.count, offset + count - position)
            try zeros.withUnsafeBytes { buffer in
                Result { () throws(DiskStorageError) in try write(UnsafeRawBufferPointer(rebasing: buffer[0..<length]), at: position) }
            }.get()
            position += length
        }
    }

    /// Reserves `bytes` of disk for the file, so that appends do not have to allocate (and fail
    /// for lack of space, or update metadata on every fdatasync).
    func allocate(bytes: Int) throws(DiskStorageError) {
        while true {
            let result = posix_fallocate(descriptor, 0, off_t(bytes))
            if result == 0 { return }
            if result == EINTR { continue }
            throw .system(operation: "posix_fallocate", path: path, errorNumber: result)
        }
    }

    func size() throws(DiskStorageError) -> Int {
        var status = stat()
        if fstat(descriptor, &status) != 0 { throw .system(operation: "fstat", path: path, errorNumber: errno) }
        return Int(status.st_size)
    }

    /// Fills `buffer` from `offset` (fewer bytes only at the end of the file); returns how many.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws(DiskStorageError) -> Int {
        var filled = 0
        while filled < buffer.count {
            let result = pread(descriptor, buffer.baseAddress! + filled, buffer.count - filled, off_t(offset + filled))
            if result < 0 {
                if errno == EINTR { continue }
                throw .system(operation: "pread", path: path, errorNumber: errno)
            }
            if result == 0 { break }
            filled += result
        }
        return filled
    }

    /// The whole file.
    func readAll() throws(DiskStorageError) -> [UInt8] {
        let count = try size()
        var bytes = [UInt8](repeating: 0, count: count)
        var filled = 0
        let descriptor = self.descriptor
        let readError: Int32? = bytes.withUnsafeMutableBytes { buffer in
            while filled < count {
                let result = pread(descriptor, buffer.baseAddress! + filled, count - filled, off_t(filled))
                if result < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                if result == 0 { break }
                filled += result
            }
            return nil
        }
        if let readError { throw .system(operation: "pread", path: path, errorNumber: readError) }
        if filled < count { bytes.removeSubrange(filled...) }
        return bytes
    }

    /// `fdatasync`: the data and the metadata needed to read it back (such as the size).
    func synchronizeData() throws(DiskStorageError) {
        while fdatasync(descriptor) != 0 {
            if errno == EINTR { continue }
            throw .system(operation: "fdatasync", path: path, errorNumber: errno)
        }
    }

    /// `fsync`: data and all metadata.
    func synchronize() throws(DiskStorageError) {
        while fsync(descriptor) != 0 {
            if errno == EINTR { continue }
            throw .system(operation: "fsync", path: path, errorNumber: errno)
        }
    }

    /// Takes an exclusive advisory lock without waiting; false when someone else holds it.
    func tryLock() throws(DiskStorageError) -> Bool {
        while flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            if errno == EWOULDBLOCK { return false }
            throw .system(operation: "flock", path: path, errorNumber: errno)
        }
        return true
    }
}

/// Directory operations. Every creation, rename or removal that must survive a crash is followed
/// by ``synchronizeDirectory(_:)`` of the directory that holds the name.
enum FileSystem {
    static func fileExists(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0
    }

    /// Creates the directory if it does not exist; true when it was created.
    @discardableResult
    static func makeDirectory(_ path: String) throws(DiskStorageError) -> Bool {
        if mkdir(path, 0o700) == 0 { return true }
        if errno == EEXIST { return false }
        throw .system(operation: "mkdir", path: path, errorNumber: errno)
    }

    /// The names in `directory`, without `.` and `..`, sorted.
    static func contents(of directory: String) throws(DiskStorageError) -> [String] {
        guard let handle = opendir(directory) else { throw .system(operation: "opendir", path: directory, errorNumber: errno) }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) { pointer in
                String(cString: UnsafeRawPointer(pointer).assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    static func synchronizeDirectory(_ path: String) throws(DiskStorageError) {
        let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if descriptor < 0 { throw .system(operation: "open directory", path: path, errorNumber: errno) }
        defer { close(descriptor) }
        while fsync(descriptor) != 0 {
            if errno == EINTR { continue }
            throw .system(operation: "fsync directory", path: path, errorNumber: errno)
        }
    }

    static func rename(_ source: String, to destination: String) throws(DiskStorageError) {
        if Glibc.rename(source, destination) != 0 { throw .system(operation: "rename to \(destination)", path: source, errorNumber: errno) }
    }

    static func remove(_ path: String) throws(DiskStorageError) {
        if unlink(path) != 0 && errno != ENOENT { throw .system(operation: "unlink", path: path, errorNumber: errno) }
    }

    static func readFile(_ path: String) throws(DiskStorageError) -> [UInt8] {
        let file = try POSIXFile(path: path, create: false)
        defer { file.close() }
        return try file.readAll()
    }

    static func fileSize(_ path: String) throws(DiskStorageError) -> Int {
        var status = stat()
        if stat(path, &status) != 0 { throw .system(operation: "stat", path: path, errorNumber: errno) }
        return Int(status.st_size)
    }
}
