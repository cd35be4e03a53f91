import NIOCore
import NIOPosix

/// Hand-written frames for a member's plaintext peer port, for tests that play a faulty or
/// hostile peer. Raw bytes on purpose: a test can send what no correct encoder would.
///
/// Layout (see `PeerTransport` and `MessageCodec`): `u32 length | u8 kind | payload`, little
/// endian; kind 0 is a batch, `u32 count` then each message: `u8 type`, eight `u64`s (from, to,
/// term, logTerm, index, commit, rejectHint, context), `u8 reject`, `u32 entry count` and the
/// entries (`u64 term | u64 index | u8 kind | u32 length | data`), then `u8 hasSnapshot` and, if 1,
/// `u64 index | u64 term | u32 voters | u64... | u32 learners | u64... | u64 length | data`.
public enum PeerFrames {
    public struct RawEntry: Sendable {
        public var term: UInt64
        public var index: UInt64
        public var data: [UInt8]

        public init(term: UInt64, index: UInt64, data: [UInt8] = []) {
            self.term = term
            self.index = index
            self.data = data
        }
    }

    public struct RawSnapshot: Sendable {
        public var index: UInt64
        public var term: UInt64
        public var voters: [UInt64]
        public var data: [UInt8]

        public init(index: UInt64, term: UInt64, voters: [UInt64], data: [UInt8]) {
            self.index = index
            self.term = term
            self.voters = voters
            self.data = data
        }
    }

    /// Message type numbers (`Raft.MessageType`).
    public enum Kind: UInt8, Sendable {
        case append = 0, appendResponse = 1, requestVote = 2, heartbeat = 6, snapshot = 8, readIndexResponse = 12
    }

    /// One encoded message.
    public static func message(
        _ type: Kind, from: UInt64, to: UInt64, term: UInt64, logTerm: UInt64 = 0, index: UInt64 = 0,
        commit: UInt64 = 0, reject: Bool = false, rejectHint: UInt64 = 0, context: UInt64 = 0,
        entries: [RawEntry] = [], snapshot: RawSnapshot? = nil
    ) -> [UInt8] {
        var bytes: [UInt8] = [type.rawValue]
        for value in [from, to, term, logTerm, index, commit, rejectHint, context] { append(value, to: &bytes) }
        bytes.append(reject ? 1 : 0)
        append(UInt32(entries.count), to: &bytes)
        for entry in entries {
            append(entry.term, to: &bytes)
            append(entry.index, to: &bytes)
            bytes.append(0)
            append(UInt32(entry.data.count), to: &bytes)
            bytes += entry.data
        }
        if let snapshot {
            bytes.append(1)
            append(snapshot.index, to: &bytes)
            append(snapshot.term, to: &bytes)
            append(UInt32(snapshot.voters.count), to: &bytes)
            for voter in snapshot.voters { append(voter, to: &bytes) }
            append(UInt32(0), to: &bytes)
            append(UInt64(snapshot.data.count), to: &bytes)
            bytes += snapshot.data
        } else {
            bytes.append(0)
        }
        return bytes
    }

    /// A batch frame holding `messages` (each from ``message(_:from:to:term:logTerm:index:commit:reject:rejectHint:context:entries:snapshot:)``).
    public static func batch(_ messages: [[UInt8]]) -> [UInt8] {
        var payload: [UInt8] = [0]
        append(UInt32(messages.count), to: &payload)
        for message in messages { payload += message }
        var frame: [UInt8] = []
        append(UInt32(payload.count), to: &frame)
        return frame + payload
    }

    /// A member's snapshot payload (`RuntimeSnapshot`): no peer addresses, then the state
    /// machine's bytes.
    public static func runtimeSnapshot(stateMachineData: [UInt8]) -> [UInt8] {
        [0, 0, 0, 0] + stateMachineData
    }

    /// Connects to 127.0.0.1:`port`, writes `bytes`, waits `lingerMs` for the member to read
    /// them, and closes. Throws if the connection fails.
    public static func send(_ bytes: [UInt8], port: Int, lingerMs: Int64 = 300) async throws {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.milliseconds(2_000))
            .connect(host: "127.0.0.1", port: port)
            .get()
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
        try await Task.sleep(for: .milliseconds(lingerMs))
        try? await channel.close().get()
    }

    private static func append<Value: FixedWidthInteger>(_ value: Value, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
}
