import NIOCore
import Raft

/// The wire format of Raft messages between peers: little-endian fixed-width integers, counts
/// before lists. Decoding checks every length against the bytes actually present and the limits,
/// so a malformed or hostile frame is an error, never a crash or a huge allocation.
public enum MessageCodec {
    /// Entries in one message beyond this are refused.
    public static let entriesPerMessageMax = 1 << 20
    /// Members in one membership beyond this are refused.
    public static let membersMax = 1 << 10

    public struct DecodingError: Error, CustomStringConvertible, Sendable {
        public var reason: String
        public var description: String { "malformed peer message: \(reason)" }
    }

    public static func encode(_ message: Message, into buffer: inout ByteBuffer) {
        buffer.writeInteger(message.type.rawValue)
        for value in [message.from, message.to, message.term, message.logTerm, message.index, message.commit, message.rejectHint, message.context] {
            buffer.writeInteger(value, endianness: .little)
        }
        buffer.writeInteger(UInt8(message.reject ? 1 : 0))
        buffer.writeInteger(UInt32(message.entries.count), endianness: .little)
        for entry in message.entries { encode(entry, into: &buffer) }
        if let snapshot = message.snapshot {
            buffer.writeInteger(UInt8(1))
            encode(snapshot.metadata, into: &buffer)
            buffer.writeInteger(UInt64(snapshot.data.count), endianness: .little)
            buffer.writeBytes(snapshot.data)
        } else {
            buffer.writeInteger(UInt8(0))
        }
    }

    public static func encode(_ entry: Entry, into buffer: inout ByteBuffer) {
        buffer.writeInteger(entry.term, endianness: .little)
        buffer.writeInteger(entry.index, endianness: .little)
        buffer.writeInteger(entry.kind.rawValue)
        buffer.writeInteger(UInt32(entry.data.count), endianness: .little)
        buffer.writeBytes(entry.data)
    }

    public static func encode(_ metadata: SnapshotMetadata, into buffer: inout ByteBuffer) {
        buffer.writeInteger(metadata.index, endianness: .little)
        buffer.writeInteger(metadata.term, endianness: .little)
        for list in [metadata.membership.voters, metadata.membership.learners] {
            buffer.writeInteger(UInt32(list.count), endianness: .little)
            for node in list { buffer.writeInteger(node, endianness: .little) }
        }
    }

    public static func decodeMessage(from buffer: inout ByteBuffer) throws(DecodingError) -> Message {
        let rawType: UInt8 = try read(&buffer)
        guard let type = MessageType(rawValue: rawType) else { throw DecodingError(reason: "unknown message type \(rawType)") }
        var message = Message(type: type)
        message.from = try read(&buffer)
        message.to = try read(&buffer)
        message.term = try read(&buffer)
        message.logTerm = try read(&buffer)
        message.index = try read(&buffer)
        message.commit = try read(&buffer)
        message.rejectHint = try read(&buffer)
        message.context = try read(&buffer)
        message.reject = (try read(&buffer) as UInt8) != 0
        let entryCount = Int(try read(&buffer) as UInt32)
        guard entryCount <= entriesPerMessageMax else { throw DecodingError(reason: "\(entryCount) entries exceed \(entriesPerMessageMax)") }
        message.entries.reserveCapacity(min(entryCount, buffer.readableBytes / 21))
        for _ in 0..<entryCount { message.entries.append(try decodeEntry(from: &buffer)) }
        let hasSnapshot: UInt8 = try read(&buffer)
        if hasSnapshot == 1 {
            let metadata = try decodeMetadata(from: &buffer)
            let count: UInt64 = try read(&buffer)
            guard count <= UInt64(buffer.readableBytes) else { throw DecodingError(reason: "snapshot of \(count) bytes, \(buffer.readableBytes) present") }
            message.snapshot = Snapshot(metadata: metadata, data: buffer.readBytes(length: Int(count)) ?? [])
        } else if hasSnapshot != 0 {
            throw DecodingError(reason: "bad snapshot flag \(hasSnapshot)")
        }
        return message
    }

    public static func decodeEntry(from buffer: inout ByteBuffer) throws(DecodingError) -> Entry {
        let term: UInt64 = try read(&buffer)
        let index: UInt64 = try read(&buffer)
        let rawKind: UInt8 = try read(&buffer)
        guard let kind = EntryKind(rawValue: rawKind) else { throw DecodingError(reason: "unknown entry kind \(rawKind)") }
        let count = Int(try read(&buffer) as UInt32)
        guard count <= buffer.readableBytes else { throw DecodingError(reason: "entry of \(count) bytes, \(buffer.readableBytes) present") }
        return Entry(term: term, index: index, kind: kind, data: buffer.readBytes(length: count) ?? [])
    }

    public static func decodeMetadata(from buffer: inout ByteBuffer) throws(DecodingError) -> SnapshotMetadata {
        let index: UInt64 = try read(&buffer)
        let term: UInt64 = try read(&buffer)
        var lists: [[NodeID]] = []
        for _ in 0..<2 {
            let count = Int(try read(&buffer) as UInt32)
            guard count <= membersMax else { throw DecodingError(reason: "\(count) members exceed \(membersMax)") }
            var list: [NodeID] = []
            for _ in 0..<count { list.append(try read(&buffer)) }
            lists.append(list)
        }
        return SnapshotMetadata(index: index, term: term, membership: Membership(voters: lists[0], learners: lists[1]))
    }

    private static func read<Value: FixedWidthInteger>(_ buffer: inout ByteBuffer) throws(DecodingError) -> Value {
        guard let value = buffer.readInteger(endianness: .little, as: Value.self) else {
            throw DecodingError(reason: "truncated: \(Value.self) expected, \(buffer.readableBytes) bytes left")
        }
        return value
    }
}
