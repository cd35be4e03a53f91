import NIOCore

/// Splits the bytes of one gRPC request stream into messages: each is a one-byte compression
/// flag, a four-byte big-endian length and that many bytes of protobuf (the gRPC over HTTP/2
/// "Length-Prefixed-Message"). A value with no I/O: the connection feeds it DATA frames and
/// carries out what it answers.
struct GRPCMessageReader {
    enum Failure: Error, Equatable {
        /// A message longer than the limit (gRPC's RESOURCE_EXHAUSTED).
        case tooLarge(length: Int, limit: Int)
        /// The compressed flag on a stream that negotiated no compression (gRPC's INTERNAL).
        case compressed
        /// The stream ended inside a message (gRPC's INTERNAL).
        case truncated(bytes: Int)
    }

    /// The largest message accepted, in bytes of protobuf.
    let messageBytesMax: Int
    /// Received bytes not yet part of a whole message. Invariant: shorter than one whole message.
    private var pending: ByteBuffer?

    /// Bytes received and not yet part of a whole message returned.
    var bufferedBytes: Int { pending?.readableBytes ?? 0 }

    init(messageBytesMax: Int) {
        precondition(messageBytesMax > 0)
        self.messageBytesMax = messageBytesMax
    }

    /// Takes the payload of one DATA frame and returns every message it completes, in order.
    /// The prefix of an oversized message fails at once, before its body arrives.
    mutating func append(_ bytes: ByteBuffer) throws(Failure) -> [ByteBuffer] {
        if var buffer = pending {
            var incoming = bytes
            buffer.writeBuffer(&incoming)
            pending = buffer
        } else {
            pending = bytes
        }
        var messages: [ByteBuffer] = []
        while let buffer = pending, buffer.readableBytes >= 5 {
            let flag = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self)!
            let length = Int(buffer.getInteger(at: buffer.readerIndex + 1, as: UInt32.self)!)
            guard flag == 0 else { throw .compressed }
            guard length <= messageBytesMax else { throw .tooLarge(length: length, limit: messageBytesMax) }
            guard buffer.readableBytes >= 5 + length else { break }
            messages.append(buffer.getSlice(at: buffer.readerIndex + 5, length: length)!)
            if buffer.readableBytes == 5 + length {
                pending = nil
            } else {
                pending!.moveReaderIndex(forwardBy: 5 + length)
            }
        }
        if let buffer = pending, buffer.readerIndex > 64 * 1024 {
            // Keep what a long stream leaves behind small.
            pending!.discardReadBytes()
        }
        return messages
    }

    /// Called when the client ends its side: bytes left over are a truncated message.
    func finish() throws(Failure) {
        if let pending, pending.readableBytes > 0 { throw .truncated(bytes: pending.readableBytes) }
    }

    /// `message` with the gRPC prefix, ready for a DATA frame.
    static func frame(_ message: [UInt8], allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 5 + message.count)
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt32(message.count))
        buffer.writeBytes(message)
        return buffer
    }
}

/// gRPC's percent-encoding of the `grpc-message` trailer: bytes outside printable ASCII, and
/// `%` itself, become `%XX`.
enum GRPCStatusMessage {
    static func encode(_ message: String) -> String {
        var result = ""
        result.reserveCapacity(message.utf8.count)
        for byte in message.utf8 {
            if byte >= 0x20, byte <= 0x7E, byte != UInt8(ascii: "%") {
                result.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = Array("0123456789ABCDEF".utf8)
                result.unicodeScalars.append("%")
                result.unicodeScalars.append(Unicode.Scalar(hex[Int(byte >> 4)]))
                result.unicodeScalars.append(Unicode.Scalar(hex[Int(byte & 0x0F)]))
            }
        }
        return result
    }
}
