import Foundation
import Glibc
import SwiftASN1
import X509

/// Small files written atomically: a temporary file, fsync, rename, directory fsync, so that a
/// crash leaves the old content or the new, never a torn one. Secret files are the owner's alone.
public enum DurableFile {
    public static func write(_ text: String, to path: String, secret: Bool) throws {
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let temporary = "\(path).tmp-\(getpid())"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, secret ? 0o600 : 0o644)
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
