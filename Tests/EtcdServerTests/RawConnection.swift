import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A blocking TCP connection to a member that sends whatever bytes a test wants: the hostile
/// clients of the limit tests (a stalled TLS handshake, HTTP/2 frames that no client library
/// would send, flow control ignored). Writes never raise SIGPIPE; reads time out.
final class RawConnection {
    let descriptor: Int32
    private(set) var closedByPeer = false

    init(port: Int, receiveTimeoutMs: Int = 2_000, sendTimeoutMs: Int = 10_000) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            let error = errno
            close(descriptor)
            throw POSIXError(.init(rawValue: error) ?? .EIO)
        }
        setTimeout(SO_RCVTIMEO, milliseconds: receiveTimeoutMs)
        setTimeout(SO_SNDTIMEO, milliseconds: sendTimeoutMs)
    }

    deinit { close(descriptor) }

    func setTimeout(_ option: Int32, milliseconds: Int) {
        var timeout = timeval(tv_sec: milliseconds / 1000, tv_usec: suseconds_t((milliseconds % 1000) * 1000))
        setsockopt(descriptor, SOL_SOCKET, option, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sends all of `bytes`; false once the peer closed or reset the connection (or a send timed out).
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if sent <= 0 {
                if sent < 0 && errno == EINTR { continue }
                closedByPeer = true
                return false
            }
            offset += sent
        }
        return true
    }

    /// Up to `count` bytes: empty at end of stream (the peer closed), nil when nothing came within the receive timeout.
    func receive(_ count: Int = 65_536) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: count)
        while true {
            let received = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress!, count, 0) }
            if received > 0 { return Array(buffer[0..<received]) }
            if received == 0 || (received < 0 && (errno == ECONNRESET || errno == EPIPE)) {
                closedByPeer = true
                return []
            }
            if errno == EINTR { continue }
            return nil
        }
    }

    /// Whether the peer has closed the connection, without waiting (bytes waiting are dropped).
    func isClosedNow() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let received = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress!, 4096, Int32(MSG_DONTWAIT)) }
            if received > 0 { continue }
            if received == 0 || errno == ECONNRESET || errno == EPIPE { return true }
            return false
        }
    }

    /// Reads and drops everything until the peer closes; true if it did within `seconds`.
    func waitUntilClosed(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let bytes = receive(), bytes.isEmpty { return true }
        }
        return false
    }
}

/// HTTP/2 frames, written and read by hand (RFC 9113 section 4).
enum RawHTTP2 {
    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    enum FrameType: UInt8 {
        case data = 0, headers = 1, priority = 2, rstStream = 3, settings = 4, pushPromise = 5, ping = 6, goAway = 7, windowUpdate = 8, continuation = 9
    }

    struct Frame {
        var type: UInt8
        var flags: UInt8
        var stream: UInt32
        var payload: [UInt8]

        func uint32(at offset: Int) -> UInt32 {
            payload[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
        }
    }

    static func frame(_ type: FrameType, flags: UInt8 = 0, stream: UInt32, _ payload: [UInt8], length: Int? = nil) -> [UInt8] {
        let length = length ?? payload.count
        return [UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF), type.rawValue, flags]
            + bigEndian(stream & 0x7FFF_FFFF) + payload
    }

    static func bigEndian(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
    }

    /// A header block of literal fields without indexing (names and values under 127 bytes).
    static func headerBlock(_ fields: [(String, String)]) -> [UInt8] {
        var block: [UInt8] = []
        for (name, value) in fields {
            precondition(name.utf8.count < 127 && value.utf8.count < 127)
            block.append(0x00)
            block.append(UInt8(name.utf8.count))
            block += Array(name.utf8)
            block.append(UInt8(value.utf8.count))
            block += Array(value.utf8)
        }
        return block
    }

    /// The HEADERS of a gRPC call to `path` (END_HEADERS, the stream stays open).
    static func grpcHeaders(stream: UInt32, path: String) -> [UInt8] {
        frame(.headers, flags: 0x4, stream: stream, headerBlock([
            (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "127.0.0.1"),
            ("content-type", "application/grpc"), ("te", "trailers"),
        ]))
    }

    /// Splits received bytes into frames; `pending` keeps an incomplete one.
    static func frames(_ bytes: [UInt8], pending: inout [UInt8]) -> [Frame] {
        pending += bytes
        var frames: [Frame] = []
        while pending.count >= 9 {
            let length = Int(pending[0]) << 16 | Int(pending[1]) << 8 | Int(pending[2])
            guard pending.count >= 9 + length else { break }
            let stream = pending[5..<9].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } & 0x7FFF_FFFF
            frames.append(Frame(type: pending[3], flags: pending[4], stream: stream, payload: Array(pending[9..<9 + length])))
            pending.removeFirst(9 + length)
        }
        return frames
    }

    /// Connects, exchanges prefaces and acknowledges the server's SETTINGS, so that they apply;
    /// returns the connection and the settings the server announced (identifier to value).
    static func handshake(port: Int) throws -> (RawConnection, [UInt16: UInt32]) {
        let connection = try RawConnection(port: port)
        connection.send(preface + frame(.settings, stream: 0, []))
        var pending: [UInt8] = []
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            guard let bytes = connection.receive(), !bytes.isEmpty else { continue }
            for frame in frames(bytes, pending: &pending) where frame.type == FrameType.settings.rawValue && frame.flags & 0x1 == 0 {
                var settings: [UInt16: UInt32] = [:]
                for offset in stride(from: 0, to: frame.payload.count, by: 6) {
                    settings[UInt16(frame.payload[offset]) << 8 | UInt16(frame.payload[offset + 1])] = frame.uint32(at: offset + 2)
                }
                connection.send(Self.frame(.settings, flags: 0x1, stream: 0, []))
                return (connection, settings)
            }
        }
        throw POSIXError(.ETIMEDOUT)
    }

    static let maxConcurrentStreams: UInt16 = 0x3
}

/// Whether this process runs under ThreadSanitizer (`cluster/test-tsan`; the members it spawns
/// then do too): its runtime's entry point is linked in.
let underThreadSanitizer = dlsym(nil, "__tsan_init") != nil

/// A member's resident memory, from /proc.
func residentBytes(pid: Int32) -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
          let kibibytes = Int(line.split(separator: " ").dropFirst().first ?? "")
    else { return nil }
    return kibibytes * 1024
}

/// Samples a process's resident memory every 50 ms while `body` runs; returns the peak.
func peakResidentBytes(pid: Int32, during body: () throws -> Void) rethrows -> Int {
    /// The sampler's state, shared with its thread; the lock guards it.
    final class Peak: @unchecked Sendable {
        let lock = NSLock()
        var highest = 0
        var running = true
    }
    let peak = Peak()
    peak.highest = residentBytes(pid: pid) ?? 0
    let sampler = Thread {
        while peak.lock.withLock({ peak.running }) {
            let now = residentBytes(pid: pid) ?? 0
            peak.lock.withLock { peak.highest = max(peak.highest, now) }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }
    sampler.start()
    defer { peak.lock.withLock { peak.running = false } }
    try body()
    Thread.sleep(forTimeInterval: 0.2)
    return peak.lock.withLock { max(peak.highest, residentBytes(pid: pid) ?? 0) }
}
