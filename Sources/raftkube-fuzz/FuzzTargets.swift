import Checksums
import KVStore
import NIOCore
import Raft
@testable import RaftRuntime

/// The inputs every member takes from outside, each as a function of bytes that must never trap:
///
/// - `peer-message`: the peer frame decoder (`MessageCodec`) and then `RaftNode.step` of what it
///   decodes, on a follower, a candidate or a leader, with the shell's Ready loop in between.
/// - `wal-segment`: the WAL's segment scanner over a segment file, framed with valid checksums
///   and then torn or corrupted as the input says.
/// - `kv-request`: the codec of the requests a Raft entry carries (what every replica decodes
///   from a committed entry), its round trip, and `KVStore.apply` of what it decodes.
///
/// `cluster/fuzz` builds this with `-sanitize=fuzzer` (libFuzzer calls ``fuzzOneInput``, the
/// target chosen by `RAFTKUBE_FUZZ_TARGET`); a plain build is a tool that replays saved inputs
/// (`raftkube-fuzz TARGET FILE...`), for reproducing what the fuzzer found.
enum FuzzTarget: String, CaseIterable {
    case peerMessage = "peer-message"
    case walSegment = "wal-segment"
    case kvRequest = "kv-request"

    func run(_ bytes: [UInt8]) {
        switch self {
        case .peerMessage: PeerMessageFuzz.run(bytes)
        case .walSegment: WALSegmentFuzz.run(bytes)
        case .kvRequest: KVRequestFuzz.run(bytes)
        }
    }

    /// Valid inputs to start an empty corpus from: the fuzzer then mutates messages, segments
    /// and requests that reach deep into the code, instead of first guessing their layout.
    var seeds: [[UInt8]] {
        switch self {
        case .peerMessage: PeerMessageFuzz.seeds
        case .walSegment: WALSegmentFuzz.seeds
        case .kvRequest: KVRequestFuzz.seeds
        }
    }
}

enum PeerMessageFuzz {
    static let voters = Membership(voters: [1, 2, 3])

    /// Feeds the messages decoded from `bytes` to node 1 of a three-node cluster. The first byte
    /// chooses the node's role; messages are then decoded one after the other until the decoder
    /// refuses the rest. Addresses are folded into the cluster's IDs 0...4 so that messages reach
    /// `step`'s logic (0 and 1 are refused, 4 is a stranger) instead of stopping at the address check.
    static func run(_ bytes: [UInt8]) {
        guard let scenario = bytes.first else { return }
        let storage = MemoryStorage(bootstrap: voters)
        var configuration = Configuration(id: 1)
        configuration.randomSeed = 7
        configuration.preVote = scenario & 4 != 0
        configuration.checkQuorum = scenario & 8 != 0
        guard let node = try? RaftNode(configuration: configuration, storage: storage) else { return }
        switch scenario % 4 {
        case 1:
            node.campaign()
        case 2:
            node.campaign()
            for voter: NodeID in [2, 3] {
                node.step(Message(type: .requestPreVoteResponse, from: voter, to: 1, term: node.term + 1))
                node.step(Message(type: .requestVoteResponse, from: voter, to: 1, term: node.term))
            }
            _ = try? node.propose([1, 2, 3])
        default:
            break
        }
        drain(node, storage)
        var buffer = ByteBuffer(bytes: bytes.dropFirst())
        var steps = 0
        while buffer.readableBytes > 0 && steps < 64 {
            guard var message = try? MessageCodec.decodeMessage(from: &buffer) else { return }
            message.to = message.to % 2 == 0 ? 1 : message.to
            message.from %= 5
            _ = message.rejection(receiver: 1)
            node.step(message)
            if steps % 3 == 0 { node.tick() }
            drain(node, storage)
            steps += 1
        }
    }

    static var seeds: [[UInt8]] {
        // The leader of scenario 2 is in term 2 with entries up to 5; the follower in term 0.
        let messages: [Message] = [
            Message(type: .append, from: 2, to: 1, term: 2, logTerm: 1, index: 3, entries: [Entry(term: 2, index: 4, data: [1])], commit: 3),
            Message(type: .appendResponse, from: 2, to: 1, term: 2, index: 5),
            Message(type: .appendResponse, from: 3, to: 1, term: 2, index: 4, reject: true, rejectHint: 3),
            Message(type: .heartbeat, from: 2, to: 1, term: 2, commit: 3, context: 1),
            Message(type: .heartbeatResponse, from: 2, to: 1, term: 2, context: 1),
            Message(type: .requestVote, from: 3, to: 1, term: 3, logTerm: 2, index: 5),
            Message(type: .snapshot, from: 2, to: 1, term: 2, snapshot: Snapshot(
                metadata: SnapshotMetadata(index: 9, term: 2, membership: voters), data: [1, 2, 3])),
            Message(type: .propose, from: 2, to: 1, term: 2, entries: [Entry(term: 0, index: 0, data: [7])]),
            Message(type: .readIndex, from: 3, to: 1, term: 2, context: 5),
            Message(type: .timeoutNow, from: 2, to: 1, term: 2),
        ]
        var seeds: [[UInt8]] = []
        for scenario: UInt8 in [0, 1, 2, 6, 14] {
            for message in messages {
                var buffer = ByteBuffer()
                MessageCodec.encode(message, into: &buffer)
                seeds.append([scenario] + Array(buffer.readableBytesView))
            }
        }
        return seeds
    }

    /// The shell's side of the Ready contract: persist, then advance.
    static func drain(_ node: RaftNode<MemoryStorage>, _ storage: MemoryStorage) {
        var rounds = 0
        while node.hasReady() && rounds < 16 {
            let ready = node.ready()
            if let snapshot = ready.snapshot { storage.applySnapshot(snapshot) }
            storage.append(ready.entries)
            if let hardState = ready.hardState { storage.setHardState(hardState) }
            node.advance(ready)
            rounds += 1
        }
    }
}

enum WALSegmentFuzz {
    /// Builds a segment from `bytes`: a valid header, then records `[u8 type][u8 length][payload]`
    /// framed with valid checksums; the first byte then says whether to scan it as the last
    /// segment and whether to tear (zero) or flip bytes at positions the input names. Raw bytes
    /// (first byte odd) go to the scanner as they are, to reach every refusal too.
    static func run(_ bytes: [UInt8]) {
        guard let mode = bytes.first else { return }
        let isLast = mode & 2 != 0
        if mode & 1 == 1 {
            _ = try? SegmentScanner.scan(Array(bytes.dropFirst()), file: "fuzz", isLastSegment: isLast, recordBytesMax: 1 << 16)
            return
        }
        var segment: [UInt8] = []
        var checksum: UInt32 = 0
        WALRecord.segmentHeader(SegmentHeader(sequence: 1, firstIndex: 1, previousChecksum: 0)).appendFrame(to: &segment, checksum: &checksum)
        var position = 1
        while position + 2 <= bytes.count - 4 {
            let type = bytes[position] % 5
            let length = min(Int(bytes[position + 1]), bytes.count - position - 2)
            let payload = Array(bytes[(position + 2)..<(position + 2 + length)])
            position += 2 + length
            let start = segment.count
            append(UInt32(payload.count), to: &segment)
            segment.append(type)
            append(UInt32(0), to: &segment)
            segment += payload
            var crc = CRC32C.update(checksum, with: segment[(start + 4)..<(start + 5)])
            crc = CRC32C.update(crc, with: segment[(start + 9)...])
            for byte in 0..<4 { segment[start + 5 + byte] = UInt8(truncatingIfNeeded: crc >> UInt32(byte * 8)) }
            checksum = crc
        }
        // The last four bytes: where to tear or flip, and how.
        if bytes.count >= 5, !segment.isEmpty {
            let tail = bytes.suffix(4).map(Int.init)
            let offset = (tail[0] << 8 | tail[1]) % segment.count
            if mode & 4 != 0 {
                for index in offset..<segment.count { segment[index] = 0 }
            } else if mode & 8 != 0 {
                segment[offset] ^= UInt8(truncatingIfNeeded: tail[2] | 1)
            }
            segment += [UInt8](repeating: 0, count: tail[3])
        }
        guard let scan = try? SegmentScanner.scan(segment, file: "fuzz", isLastSegment: isLast, recordBytesMax: 1 << 16) else { return }
        precondition(scan.validEnd <= scan.dataEnd || scan.records.isEmpty || scan.validEnd <= segment.count,
                     "valid end \(scan.validEnd) beyond the segment")
        var previous = -1
        for record in scan.records {
            precondition(record.offset > previous && record.offset < scan.validEnd, "records out of order")
            previous = record.offset
        }
    }

    static var seeds: [[UInt8]] {
        // Entry (type 2), hard state (3) and snapshot marker (4) records, framed, torn, flipped.
        let entry: [UInt8] = [2, 18] + [UInt8](repeating: 0, count: 7) + [1] + [1] + [UInt8](repeating: 0, count: 7) + [0, 9]
        let hardState: [UInt8] = [3, 24] + [1] + [UInt8](repeating: 0, count: 7) + [2] + [UInt8](repeating: 0, count: 7) + [1] + [UInt8](repeating: 0, count: 7)
        let marker: [UInt8] = [4, 16] + [5] + [UInt8](repeating: 0, count: 7) + [1] + [UInt8](repeating: 0, count: 7)
        let tail: [UInt8] = [0, 40, 0x10, 3]
        return [0, 2, 4, 6, 8, 10].map { mode in [mode] + entry + hardState + entry + marker + tail }
    }

    static func append(_ value: UInt32, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
}

enum KVRequestFuzz {
    /// One in-memory store for a run of inputs, replaced now and then so that it stays small.
    nonisolated(unsafe) static var store: KVStore?
    nonisolated(unsafe) static var index: UInt64 = 0

    static var seeds: [[UInt8]] {
        let key: [UInt8] = [0x61]
        let requests: [KVRequest] = [
            .put(PutRequest(key: key, value: [1], prevKv: true)),
            .range(RangeRequest(key: key, rangeEnd: [0], limit: 10, sortOrder: .descend, sortTarget: .mod)),
            .deleteRange(DeleteRangeRequest(key: key, rangeEnd: [0x7A], prevKv: true)),
            .txn(TxnRequest(compare: [Compare(key: key, target: .version(1), result: .equal)],
                            success: [.put(PutRequest(key: key, value: [2])), .range(RangeRequest(key: key, limit: 1))],
                            failure: [.deleteRange(DeleteRangeRequest(key: key))])),
            .compaction(CompactionRequest(revision: 2)),
            .leaseGrant(LeaseGrantRequest(ttl: 60)),
            .leaseGrant(LeaseGrantRequest(ttl: 60, id: 7)),
            .leaseRevoke(LeaseRevokeRequest(id: 7)),
            .put(PutRequest(key: key, value: [3], lease: 7)),
        ]
        return requests.map { $0.encoded() }
    }

    static func run(_ bytes: [UInt8]) {
        guard let request = try? KVRequest.decode(bytes) else { return }
        let encoded = request.encoded()
        guard let again = try? KVRequest.decode(encoded) else {
            preconditionFailure("a decoded request does not decode after encoding: \(request)")
        }
        precondition(again == request, "the codec does not round-trip: \(request) became \(again)")
        _ = request.validate(encodedBytes: encoded.count)
        if store == nil || index % 2_000 == 0 {
            store?.close()
            store = try? KVStore.open(path: ":memory:")
        }
        guard let store else { return }
        index += 1
        // A request that a client cannot send (lease expiry and checkpoints come from the
        // leader) is still applied: a peer's entries must not trap apply either.
        _ = try? store.apply([(index: index, request: request)])
        if case .range(let range) = request { _ = try? store.range(range) }
    }
}
