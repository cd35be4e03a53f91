import Foundation
import Glibc
import SwiftASN1
import X509

/// Small files written atomically: a temporary file, fsync, rename, directory fsync, so that a
/// crash leaves the old content or the new, never a torn one. Everything under a node's data
/// directory is the owner's alone (0600, directories 0700); `secret` is kept for the callers'
/// intent (keys), and both kinds get 0600. The temporary file is made with `O_EXCL|O_NOFOLLOW`.
public enum DurableFile {
    public static func write(_ text: String, to path: String, secret: Bool) throws {
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let temporary = "\(path).tmp-\(getpid())"
        // A stale temporary file of a crashed writer with the same pid goes first, so that the
        // exclusive create can succeed; a link planted there is removed, never followed.
        if unlink(temporary) != 0 && errno != ENOENT { throw PKIError.unreadable(path: temporary, reason: String(cString: strerror(errno))) }
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw PKIError.unreadable(path: temporary, reason: String(cString: strerror(errno))) }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
        let synced = fsync(descriptor) == 0
        close(descriptor)
        guard written == bytes.count, synced, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw PKIError.unreadable(path: path, reason: "write failed: \(String(cString: strerror(errno)))")
        }
        let directoryDescriptor = open(directory, O_RDONLY | O_DIRECTORY)
        if directoryDescriptor >= 0 {
            fsync(directoryDescriptor)
            close(directoryDescriptor)
        }
    }
}

/// A node's data directory is private: the store's files hold every key, the PKI directory the
/// keys. ``prepare(_:)`` makes new files 0600 and directories 0700 for the whole process (umask
/// 077: SQLite, the log and snapshots included) and tightens what an older version left.
public enum PrivateFiles {
    public static func prepare(_ directory: String) throws {
        umask(0o077)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try tighten(directory)
    }

    /// Removes group and other permissions from `directory` and everything under it (links are
    /// left alone, not followed).
    static func tighten(_ directory: String) throws {
        var pending = [directory]
        while let path = pending.popLast() {
            var status = stat()
            guard lstat(path, &status) == 0 else { continue }
            let kind = status.st_mode & S_IFMT
            guard kind == S_IFDIR || kind == S_IFREG else { continue }
            if status.st_mode & 0o077 != 0, chmod(path, status.st_mode & 0o700) != 0 {
                throw PKIError.unreadable(path: path, reason: "cannot make it private: \(String(cString: strerror(errno)))")
            }
            if kind == S_IFDIR, let names = try? FileManager.default.contentsOfDirectory(atPath: path) {
                pending += names.map { "\(path)/\($0)" }
            }
        }
    }
}

/// Certificates and keys in PEM files, written with ``DurableFile`` (keys readable by the owner only).
public enum PEMFiles {
    public static func write(_ text: String, to path: String, secret: Bool) throws {
        try DurableFile.write(text, to: path, secret: secret)
    }

    public static func write(_ certificates: [Certificate], to path: String) throws {
        try write(try certificates.map { try $0.serializeAsPEM().pemString }.joined(separator: "\n") + "\n", to: path, secret: false)
    }

    public static func write(_ key: Certificate.PrivateKey, to path: String) throws {
        try write(try key.serializeAsPEM().pemString + "\n", to: path, secret: true)
    }

    static func text(_ path: String) throws -> String {
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw PKIError.unreadable(path: path, reason: (error as NSError).localizedDescription)
        }
    }

    /// Every certificate in the file, in order.
    public static func certificates(_ path: String) throws -> [Certificate] {
        let text = try text(path)
        do {
            let certificates = try PEMDocument.parseMultiple(pemString: text).map { try Certificate(pemDocument: $0) }
            guard !certificates.isEmpty else { throw PKIError.unreadable(path: path, reason: "no certificate in it") }
            return certificates
        } catch let error as PKIError {
            throw error
        } catch {
            throw PKIError.unreadable(path: path, reason: "not a PEM certificate file (\(error))")
        }
    }

    public static func privateKey(_ path: String) throws -> Certificate.PrivateKey {
        let text = try text(path)
        do {
            return try Certificate.PrivateKey(pemEncoded: text)
        } catch {
            throw PKIError.unreadable(path: path, reason: "not a PEM private key (\(error))")
        }
    }
}
