/// Why bytes are not a valid encoded ``KVRequest``. Decoding never traps: anything a peer or a
/// corrupt log could hand over ends in one of these.
public enum KVCodecError: Error, Sendable, Hashable, CustomStringConvertible {
    case truncated(offset: Int)
    case unsupportedFormat(UInt8)
    case invalidTag(field: String, tag: UInt8)
    case invalidBool(offset: Int)
    case countTooLarge(field: String, count: Int)
    case nestingTooDeep(limit: Int)
    case trailingBytes(count: Int)
    case invalidText(field: String)

    public var description: String {
        switch self {
        case .truncated(let offset): "request truncated at byte \(offset)"
        case .unsupportedFormat(let format): "unsupported request format \(format)"
        case .invalidTag(let field, let tag): "invalid \(field) tag \(tag)"
        case .invalidBool(let offset): "invalid boolean at byte \(offset)"
        case .countTooLarge(let field, let count): "\(field) count \(count) exceeds the bytes left"
        case .nestingTooDeep(let limit): "txns nested deeper than \(limit)"
        case .trailingBytes(let count): "\(count) bytes after the end of the request"
        case .invalidText(let field): "\(field) is not valid UTF-8"
        }
    }
}

/// Writes the fixed layout: integers big-endian, byte strings and lists prefixed with a 32-bit
/// count, booleans as one byte 0 or 1. Every field is always present, so the encoding of a
/// value is unique and any truncation of it is detectably short.
struct BinaryWriter {
    var bytes: [UInt8] = []

    mutating func write(_ value: UInt8) {
        bytes.append(value)
    }

    mutating func write(_ value: Bool) {
        bytes.append(value ? 1 : 0)
    }

    mutating func write(_ value: Int64) {
        let bits = UInt64(bitPattern: value)
        for shift in stride(from: 56, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: bits >> UInt64(shift)))
        }
    }

    mutating func writeCount(_ count: Int) {
        precondition(count >= 0 && count <= Int(UInt32.max), "count out of range")
        let value = UInt32(count)
        for shift in stride(from: 24, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift)))
        }
    }

    mutating func write(_ value: [UInt8]) {
        writeCount(value.count)
        bytes.append(contentsOf: value)
    }
}

/// Reads what ``BinaryWriter`` wrote, checking every length against the bytes left.
struct BinaryReader {
    let bytes: [UInt8]
    private(set) var offset = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    var remaining: Int { bytes.count - offset }

    mutating func readByte() throws(KVCodecError) -> UInt8 {
        guard remaining >= 1 else { throw .truncated(offset: offset) }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func readBool() throws(KVCodecError) -> Bool {
        let start = offset
        switch try readByte() {
        case 0: return false
        case 1: return true
        default: throw .invalidBool(offset: start)
        }
    }

    mutating func readInt64() throws(KVCodecError) -> Int64 {
        guard remaining >= 8 else { throw .truncated(offset: offset) }
        var bits: UInt64 = 0
        for index in offset..<(offset + 8) {
            bits = bits << 8 | UInt64(bytes[index])
        }
        offset += 8
        return Int64(bitPattern: bits)
    }

    /// A list or byte count, refused when the elements could not fit in the bytes left (each
    /// element takes at least `elementBytesMin`), so garbage never makes us allocate much.
    mutating func readCount(field: String, elementBytesMin: Int) throws(KVCodecError) -> Int {
        guard remaining >= 4 else { throw .truncated(offset: offset) }
        var value: UInt32 = 0
        for index in offset..<(offset + 4) {
            value = value << 8 | UInt32(bytes[index])
        }
        offset += 4
        let count = Int(value)
        guard count <= remaining / max(elementBytesMin, 1) else {
            if elementBytesMin <= 1 { throw .truncated(offset: offset) }
            throw .countTooLarge(field: field, count: count)
        }
        return count
    }

    mutating func readText(field: String) throws(KVCodecError) -> String {
        guard let text = String(validating: try readBytes(), as: UTF8.self) else { throw .invalidText(field: field) }
        return text
    }

    mutating func readBytes() throws(KVCodecError) -> [UInt8] {
        let count = try readCount(field: "bytes", elementBytesMin: 1)
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }
}

extension KVRequest {
    /// The format byte that starts every encoded request, so the layout can change later.
    static let formatVersion: UInt8 = 1

    /// The deterministic binary form carried in a Raft entry.
    public func encoded() -> [UInt8] {
        var writer = BinaryWriter()
        writer.write(KVRequest.formatVersion)
        switch self {
        case .range(let request):
            writer.write(UInt8(0))
            request.encode(into: &writer)
        case .put(let request):
            writer.write(UInt8(1))
            request.encode(into: &writer)
        case .deleteRange(let request):
            writer.write(UInt8(2))
            request.encode(into: &writer)
        case .txn(let request):
            writer.write(UInt8(3))
            request.encode(into: &writer)
        case .compaction(let request):
            writer.write(UInt8(4))
            writer.write(request.revision)
            writer.write(request.physical)
        case .leaseGrant(let request):
            writer.write(UInt8(5))
            writer.write(request.ttl)
            writer.write(request.id)
        case .leaseRevoke(let request):
            writer.write(UInt8(6))
            writer.write(request.id)
        case .leaseCheckpoint(let request):
            writer.write(UInt8(7))
            writer.writeCount(request.checkpoints.count)
            for checkpoint in request.checkpoints {
                writer.write(checkpoint.id)
                writer.write(checkpoint.remainingTTL)
            }
        case .leaseExpire(let request):
            writer.write(UInt8(8))
            writer.writeCount(request.ids.count)
            for id in request.ids {
                writer.write(id)
            }
        case .memberAttributes(let member):
            writer.write(UInt8(9))
            writer.write(Int64(bitPattern: member.id))
            writer.write(Array(member.name.utf8))
            for list in [member.peerURLs, member.clientURLs] {
                writer.writeCount(list.count)
                for url in list { writer.write(Array(url.utf8)) }
            }
            writer.write(member.removed)
        case .alarm(let request):
            writer.write(UInt8(10))
            writer.write(request.action.rawValue)
            writer.write(Int64(bitPattern: request.member.memberID))
            writer.write(request.member.alarm.rawValue)
        }
        return writer.bytes
    }

    /// Decodes what ``encoded()`` produced; any other input throws ``KVCodecError``.
    public static func decode(_ bytes: [UInt8], limits: KVLimits = .default) throws(KVCodecError) -> KVRequest {
        var reader = BinaryReader(bytes)
        let format = try reader.readByte()
        guard format == formatVersion else { throw .unsupportedFormat(format) }
        let tag = try reader.readByte()
        let request: KVRequest
        switch tag {
        case 0: request = .range(try RangeRequest(from: &reader))
        case 1: request = .put(try PutRequest(from: &reader))
        case 2: request = .deleteRange(try DeleteRangeRequest(from: &reader))
        case 3: request = .txn(try TxnRequest(from: &reader, depth: 1, depthMax: limits.txnNestingDepthMax))
        case 4: request = .compaction(CompactionRequest(revision: try reader.readInt64(), physical: try reader.readBool()))
        case 5: request = .leaseGrant(LeaseGrantRequest(ttl: try reader.readInt64(), id: try reader.readInt64()))
        case 6: request = .leaseRevoke(LeaseRevokeRequest(id: try reader.readInt64()))
        case 7:
            let count = try reader.readCount(field: "checkpoints", elementBytesMin: 16)
            var checkpoints: [LeaseCheckpoint] = []
            checkpoints.reserveCapacity(count)
            for _ in 0..<count {
                checkpoints.append(LeaseCheckpoint(id: try reader.readInt64(), remainingTTL: try reader.readInt64()))
            }
            request = .leaseCheckpoint(LeaseCheckpointRequest(checkpoints: checkpoints))
        case 8:
            let count = try reader.readCount(field: "lease ids", elementBytesMin: 8)
            var ids: [Int64] = []
            ids.reserveCapacity(count)
            for _ in 0..<count {
                ids.append(try reader.readInt64())
            }
            request = .leaseExpire(LeaseExpireRequest(ids: ids))
        case 9:
            let id = UInt64(bitPattern: try reader.readInt64())
            let name = try reader.readText(field: "member name")
            var lists: [[String]] = []
            for field in ["peer URLs", "client URLs"] {
                let count = try reader.readCount(field: field, elementBytesMin: 4)
                var urls: [String] = []
                for _ in 0..<count { urls.append(try reader.readText(field: field)) }
                lists.append(urls)
            }
            request = .memberAttributes(MemberAttributes(id: id, name: name, peerURLs: lists[0], clientURLs: lists[1], removed: try reader.readBool()))
        case 10:
            let actionTag = try reader.readByte()
            guard let action = AlarmRequest.Action(rawValue: actionTag) else { throw .invalidTag(field: "alarm action", tag: actionTag) }
            let memberID = UInt64(bitPattern: try reader.readInt64())
            let alarmTag = try reader.readByte()
            guard let alarm = AlarmType(rawValue: alarmTag) else { throw .invalidTag(field: "alarm type", tag: alarmTag) }
            request = .alarm(AlarmRequest(action: action, member: AlarmMember(memberID: memberID, alarm: alarm)))
        default:
            throw .invalidTag(field: "request", tag: tag)
        }
        guard reader.remaining == 0 else { throw .trailingBytes(count: reader.remaining) }
        return request
    }
}

extension RangeRequest {
    func encode(into writer: inout BinaryWriter) {
        writer.write(key)
        writer.write(rangeEnd)
        writer.write(limit)
        writer.write(revision)
        writer.write(sortOrder.rawValue)
        writer.write(sortTarget.rawValue)
        writer.write(serializable)
        writer.write(keysOnly)
        writer.write(countOnly)
        writer.write(minModRevision)
        writer.write(maxModRevision)
        writer.write(minCreateRevision)
        writer.write(maxCreateRevision)
    }

    init(from reader: inout BinaryReader) throws(KVCodecError) {
        let key = try reader.readBytes()
        let rangeEnd = try reader.readBytes()
        let limit = try reader.readInt64()
        let revision = try reader.readInt64()
        let orderTag = try reader.readByte()
        guard let sortOrder = SortOrder(rawValue: orderTag) else { throw .invalidTag(field: "sort order", tag: orderTag) }
        let targetTag = try reader.readByte()
        guard let sortTarget = SortTarget(rawValue: targetTag) else {
            throw .invalidTag(field: "sort target", tag: targetTag)
        }
        self.init(
            key: key, rangeEnd: rangeEnd, limit: limit, revision: revision, sortOrder: sortOrder, sortTarget: sortTarget,
            serializable: try reader.readBool(), keysOnly: try reader.readBool(), countOnly: try reader.readBool(),
            minModRevision: try reader.readInt64(), maxModRevision: try reader.readInt64(),
            minCreateRevision: try reader.readInt64(), maxCreateRevision: try reader.readInt64()
        )
    }
}

extension PutRequest {
    func encode(into writer: inout BinaryWriter) {
        writer.write(key)
        writer.write(value)
        writer.write(lease)
        writer.write(prevKv)
        writer.write(ignoreValue)
        writer.write(ignoreLease)
    }

    init(from reader: inout BinaryReader) throws(KVCodecError) {
        self.init(
            key: try reader.readBytes(), value: try reader.readBytes(), lease: try reader.readInt64(),
            prevKv: try reader.readBool(), ignoreValue: try reader.readBool(), ignoreLease: try reader.readBool()
        )
    }
}

extension DeleteRangeRequest {
    func encode(into writer: inout BinaryWriter) {
        writer.write(key)
        writer.write(rangeEnd)
        writer.write(prevKv)
    }

    init(from reader: inout BinaryReader) throws(KVCodecError) {
        self.init(key: try reader.readBytes(), rangeEnd: try reader.readBytes(), prevKv: try reader.readBool())
    }
}

extension Compare {
    func encode(into writer: inout BinaryWriter) {
        writer.write(result.rawValue)
        switch target {
        case .version(let operand):
            writer.write(UInt8(0))
            writer.write(operand)
        case .createRevision(let operand):
            writer.write(UInt8(1))
            writer.write(operand)
        case .modRevision(let operand):
            writer.write(UInt8(2))
            writer.write(operand)
        case .value(let operand):
            writer.write(UInt8(3))
            writer.write(operand)
        case .lease(let operand):
            writer.write(UInt8(4))
            writer.write(operand)
        }
        writer.write(key)
        writer.write(rangeEnd)
    }

    init(from reader: inout BinaryReader) throws(KVCodecError) {
        let resultTag = try reader.readByte()
        guard let result = Result(rawValue: resultTag) else { throw .invalidTag(field: "compare result", tag: resultTag) }
        let targetTag = try reader.readByte()
        let target: Target
        switch targetTag {
        case 0: target = .version(try reader.readInt64())
        case 1: target = .createRevision(try reader.readInt64())
        case 2: target = .modRevision(try reader.readInt64())
        case 3: target = .value(try reader.readBytes())
        case 4: target = .lease(try reader.readInt64())
        default: throw .invalidTag(field: "compare target", tag: targetTag)
        }
        self.init(key: try reader.readBytes(), rangeEnd: try reader.readBytes(), target: target, result: result)
    }
}

extension TxnRequest {
    func encode(into writer: inout BinaryWriter) {
        writer.writeCount(compare.count)
        for condition in compare {
            condition.encode(into: &writer)
        }
        for branch in [success, failure] {
            writer.writeCount(branch.count)
            for operation in branch {
                switch operation {
                case .range(let request):
                    writer.write(UInt8(0))
                    request.encode(into: &writer)
                case .put(let request):
                    writer.write(UInt8(1))
                    request.encode(into: &writer)
                case .deleteRange(let request):
                    writer.write(UInt8(2))
                    request.encode(into: &writer)
                case .txn(let request):
                    writer.write(UInt8(3))
                    request.encode(into: &writer)
                }
            }
        }
    }

    init(from reader: inout BinaryReader, depth: Int, depthMax: Int) throws(KVCodecError) {
        guard depth <= depthMax else { throw .nestingTooDeep(limit: depthMax) }
        // The smallest compare is 2 tags, an empty value and two empty byte strings: 14 bytes.
        let compareCount = try reader.readCount(field: "compares", elementBytesMin: 14)
        var compare: [Compare] = []
        compare.reserveCapacity(compareCount)
        for _ in 0..<compareCount {
            compare.append(try Compare(from: &reader))
        }
        var branches: [[RequestOp]] = []
        for name in ["success", "failure"] {
            // The smallest operation is a delete with an empty key and range end: 1 + 4 + 4 + 1 bytes.
            let count = try reader.readCount(field: name, elementBytesMin: 10)
            var branch: [RequestOp] = []
            branch.reserveCapacity(count)
            for _ in 0..<count {
                let tag = try reader.readByte()
                switch tag {
                case 0: branch.append(.range(try RangeRequest(from: &reader)))
                case 1: branch.append(.put(try PutRequest(from: &reader)))
                case 2: branch.append(.deleteRange(try DeleteRangeRequest(from: &reader)))
                case 3: branch.append(.txn(try TxnRequest(from: &reader, depth: depth + 1, depthMax: depthMax)))
                default: throw .invalidTag(field: "request op", tag: tag)
                }
            }
            branches.append(branch)
        }
        self.init(compare: compare, success: branches[0], failure: branches[1])
    }
}
