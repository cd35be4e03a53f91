import Raft

/// A command the state machine applies: the payload a caller proposed, at its place in the log.
public struct AppliedCommand: Sendable, Hashable {
    public var index: UInt64
    public var term: UInt64
    public var data: [UInt8]
    /// This member proposed the command and a caller here waits for its response. Only then is
    /// a response worth keeping beyond `apply`: every other replica applies it for the state.
    public var awaitedHere: Bool

    public init(index: UInt64, term: UInt64, data: [UInt8], awaitedHere: Bool = false) {
        self.index = index
        self.term = term
        self.data = data
        self.awaitedHere = awaitedHere
    }
}

/// What a caller of ``RaftRuntime/propose(_:)`` gets back once its command is applied locally.
public struct AppliedResult: Sendable, Hashable {
    public var index: UInt64
    public var term: UInt64
    /// What the state machine returned for the command.
    public var response: [UInt8]
}

/// The replicated state machine that a ``RaftRuntime`` drives.
///
/// `apply` must be deterministic: every replica that applies the same commands in the same order
/// ends with the same state and returns the same responses. The runtime calls `apply`,
/// `restore` and `persist` one at a time from its disk thread (never concurrently with each
/// other); `snapshot` may run on another thread at the same time when ``persist()`` returns an
/// index, so such a state machine must lock.
public protocol StateMachine: AnyObject, Sendable {
    /// Applies committed commands in log order; returns one response per command. A state
    /// machine restored from a later state than its snapshot's index (see ``persist()``) gets the
    /// commands it already holds again and must skip them (by index), answering them empty.
    func apply(_ commands: [AppliedCommand]) throws -> [[UInt8]]
    /// The state after the last applied command, for a Raft snapshot.
    func snapshot() throws -> [UInt8]
    /// Replaces the whole state with a snapshot taken at `index`.
    func restore(_ data: [UInt8], index: UInt64) throws
    /// The highest index whose effects the state machine has made durable on its own (0 if it
    /// keeps nothing on disk). On restart the runtime replays the log from the next index.
    var durableAppliedIndex: UInt64 { get }
    /// Makes everything applied so far durable and returns the index it reached, or nil when the
    /// state machine keeps nothing on disk. When it returns an index, the runtime's snapshots
    /// refer to the state machine's own storage instead of copying it (etcd's way: a snapshot
    /// costs a sync, not a copy of the whole state), and `snapshot()` is called only when a
    /// follower needs the state; it may then return a later state than the snapshot's index
    /// (see ``apply(_:)``'s skipping rule).
    func persist() throws -> UInt64?
    /// Throws if `data`, a snapshot at `index` received from a peer, is not one ``restore(_:index:)``
    /// could take. The runtime calls it, on a network thread and concurrently with everything
    /// else, before the snapshot reaches Raft, and drops the message if it throws: a snapshot is
    /// made durable before it is restored, so a bad one would otherwise fail the member on every
    /// restart. It must not touch the state machine's state.
    func validateSnapshot(_ data: [UInt8], index: UInt64) throws

    // Snapshots as files. A snapshot that travels between members goes from a file on the
    // sender to a file on the receiver, in chunks, so that its size costs disk, not memory. The
    // defaults go through the byte-array methods above (for state machines small enough to hold
    // whole); a state machine with large state writes, checks and restores its files directly.

    /// Writes the current state (what ``snapshot()`` returns) to a new file at `path`, synced to
    /// disk. Called off the runtime's threads, concurrently with everything else, when a
    /// follower needs the state.
    func writeSnapshot(toFile path: String) throws
    /// ``validateSnapshot(_:index:)`` for a snapshot whose state is the file at `path`.
    func validateSnapshot(file path: String, index: UInt64) throws
    /// ``restore(_:index:)`` from the file at `path` (which stays where it is: the runtime keeps
    /// it until a later snapshot replaces it).
    func restore(file path: String, index: UInt64) throws
}

extension StateMachine {
    public func persist() throws -> UInt64? { nil }
    public func validateSnapshot(_ data: [UInt8], index: UInt64) throws {}

    public func writeSnapshot(toFile path: String) throws {
        try SnapshotImageFile.write(snapshot(), to: path)
    }

    public func validateSnapshot(file path: String, index: UInt64) throws {
        try validateSnapshot(SnapshotImageFile.read(path), index: index)
    }

    public func restore(file path: String, index: UInt64) throws {
        try restore(SnapshotImageFile.read(path), index: index)
    }
}

/// Whole-file reads and writes of snapshot images, for state machines that hold their state in
/// memory.
public enum SnapshotImageFile {
    /// Creates `path` (0600, `O_EXCL`, never through a symbolic link) with `bytes`, synced.
    public static func write(_ bytes: [UInt8], to path: String) throws {
        let file = try POSIXFile(path: path, create: true, exclusive: true)
        defer { file.close() }
        try file.write(bytes, at: 0)
        try file.synchronize()
    }

    public static func read(_ path: String) throws -> [UInt8] {
        try FileSystem.readFile(path)
    }
}

/// Why a runtime request failed. Each names its cause so that a caller can act on it.
public enum RuntimeError: Error, Sendable, Hashable, CustomStringConvertible {
    case noLeader
    case notLeader(leader: NodeID)
    case notMember
    case timedOut
    case stopped
    case tooLarge(bytes: Int, limit: Int)
    case overloaded(reason: String)
    /// The entry was replaced by another leader's before it committed; it will never apply.
    case proposalDropped
    /// This follower forwarded the request to a leader it has since lost; whether that leader
    /// replicated it before failing is unknown.
    case leaderLost
    /// A learner too far behind the leader to be promoted yet.
    case learnerNotCaughtUp(String)
    /// Another membership change has not committed yet (Raft allows one at a time): retry.
    case membershipChangeInProgress(String)
    case rejected(String)

    public var description: String {
        switch self {
        case .noLeader: "no leader"
        case .notLeader(let leader): "not leader, leader is \(leader)"
        case .notMember: "this node is not a member of the cluster"
        case .timedOut: "timed out (the outcome is unknown)"
        case .stopped: "the Raft runtime is stopped"
        case .tooLarge(let bytes, let limit): "request of \(bytes) bytes is larger than the limit of \(limit)"
        case .overloaded(let reason): "too many requests: \(reason)"
        case .proposalDropped: "proposal dropped: leadership changed before it committed"
        case .leaderLost: "the leader the request was forwarded to was lost (the outcome is unknown)"
        case .learnerNotCaughtUp(let reason), .membershipChangeInProgress(let reason), .rejected(let reason): reason
        }
    }

    init(_ error: ProposalError) {
        switch error {
        case .notLeader(let leader): self = .notLeader(leader: leader)
        case .noLeader: self = .noLeader
        case .entryTooLarge(let bytes, let limit): self = .tooLarge(bytes: bytes, limit: limit)
        case .uncommittedBytesExceeded, .tooManyPendingReads: self = .overloaded(reason: error.description)
        case .learnerNotCaughtUp: self = .learnerNotCaughtUp(error.description)
        case .membershipChangeInProgress: self = .membershipChangeInProgress(error.description)
        default: self = .rejected(error.description)
        }
    }
}

/// A peer's address, `host:port`.
public struct PeerAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`; nil when malformed.
    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else { return nil }
        let host = String(text[..<colon])
        guard !host.isEmpty else { return nil }
        self.init(host: host, port: port)
    }

    public var description: String { "\(host):\(port)" }
}

/// ``RuntimeError`` under a name that does not collide with GRPCCore's `RuntimeError`.
public typealias RaftRuntimeError = RuntimeError
