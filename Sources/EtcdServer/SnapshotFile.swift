import Crypto

/// The file `etcdctl snapshot save` writes: the database image followed by its SHA-256, as etcd
/// lays it out. Here the image is an SQLite database.
public enum SnapshotFile {
    public static let checksumBytes = 32

    public static func withChecksum(_ database: [UInt8]) -> [UInt8] {
        database + Array(SHA256.hash(data: database))
    }

    /// The database image of a snapshot file, or nil when its checksum does not match.
    public static func database(from file: [UInt8]) -> [UInt8]? {
        guard file.count > checksumBytes else { return nil }
        let database = Array(file.dropLast(checksumBytes))
        guard Array(SHA256.hash(data: database)) == Array(file.suffix(checksumBytes)) else { return nil }
        return database
    }
}
