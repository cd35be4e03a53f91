/// A member's identity. `0` is reserved to mean "none" (no leader, no vote).
public typealias NodeID = UInt64

/// The identity that means "no node": no leader known, no vote cast.
public let noNode: NodeID = 0

/// What an entry carries: application data, or a membership change the core itself interprets.
public enum EntryKind: UInt8, Sendable, Hashable {
    /// Opaque application data (an empty one is the no-op a new leader appends).
    case normal = 0
    /// An encoded ``MembershipChange``; it takes effect as soon as it is in a node's log (thesis 4.1).
    case membershipChange = 1
}

/// One record of the replicated log.
public struct Entry: Sendable, Hashable {
    public var term: UInt64
    public var index: UInt64
    public var kind: EntryKind
    public var data: [UInt8]

    public init(term: UInt64, index: UInt64, kind: EntryKind = .normal, data: [UInt8] = []) {
        self.term = term
        self.index = index
        self.kind = kind
        self.data = data
    }

    /// The size that counts against message, in-flight and uncommitted-bytes limits:
    /// the payload plus a fixed allowance for the header.
    public var byteCount: Int { data.count + Entry.headerBytes }

    /// The allowance for an entry's term, index and kind when counting bytes.
    public static let headerBytes = 24

    /// The longest prefix of `entries` whose ``byteCount``s add up to at most `maxBytes`, but
    /// always at least one entry: the size rule of every read of the log.
    public static func prefix<Entries: Collection<Entry>>(of entries: Entries, maxBytes: Int, alreadyBytes: Int = 0, alreadyCount: Int = 0) -> [Entry] {
        var result: [Entry] = []
        var bytes = alreadyBytes
        for entry in entries {
            if alreadyCount + result.count > 0 && bytes + entry.byteCount > maxBytes { break }
            bytes += entry.byteCount
            result.append(entry)
        }
        return result
    }
}

/// The state every node must make durable before it sends the messages that depend on it.
///
/// Invariant: `commit` never exceeds the last index of the log that was persisted with it.
public struct HardState: Sendable, Hashable {
    public var term: UInt64
    /// Whom this node voted for in `term`, or ``noNode``.
    public var vote: NodeID
    public var commit: UInt64

    public init(term: UInt64 = 0, vote: NodeID = noNode, commit: UInt64 = 0) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }
}

/// What a node is doing in the current term.
public enum Role: String, Sendable, Hashable {
    case follower
    /// Probing whether an election could be won before disturbing anyone (thesis 9.6).
    case preCandidate
    case candidate
    case leader
}

/// Volatile state that a shell may want to report; it need not be persisted.
public struct SoftState: Sendable, Hashable {
    public var leader: NodeID
    public var role: Role

    public init(leader: NodeID, role: Role) {
        self.leader = leader
        self.role = role
    }
}

/// A cluster configuration: who votes, and who only receives the log.
///
/// Both lists are kept sorted so that every iteration over them is deterministic.
public struct Membership: Sendable, Hashable, CustomStringConvertible {
    public private(set) var voters: [NodeID]
    public private(set) var learners: [NodeID]

    public init(voters: [NodeID] = [], learners: [NodeID] = []) {
        self.voters = Array(Set(voters)).sorted()
        self.learners = Array(Set(learners).subtracting(voters)).sorted()
    }

    public var isEmpty: Bool { voters.isEmpty && learners.isEmpty }
    public var members: [NodeID] { (voters + learners).sorted() }
    public func isVoter(_ node: NodeID) -> Bool { voters.contains(node) }
    public func isLearner(_ node: NodeID) -> Bool { learners.contains(node) }
    public func contains(_ node: NodeID) -> Bool { isVoter(node) || isLearner(node) }
    /// The number of voters that form a majority.
    public var quorum: Int { voters.count / 2 + 1 }

    /// The membership after `change`, or a reason why the change does not make sense here.
    public func applying(_ change: MembershipChange) -> Result<Membership, MembershipChangeRejection> {
        switch change.kind {
        case .addVoter:
            if isVoter(change.node) { return .failure(.alreadyVoter(change.node)) }
            return .success(Membership(voters: voters + [change.node], learners: learners.filter { $0 != change.node }))
        case .addLearner:
            if isVoter(change.node) { return .failure(.alreadyVoter(change.node)) }
            if isLearner(change.node) { return .failure(.alreadyLearner(change.node)) }
            return .success(Membership(voters: voters, learners: learners + [change.node]))
        case .promoteLearner:
            if !isLearner(change.node) { return .failure(.notLearner(change.node)) }
            return .success(Membership(voters: voters + [change.node], learners: learners.filter { $0 != change.node }))
        case .removeNode:
            if !contains(change.node) { return .failure(.notMember(change.node)) }
            if voters == [change.node] { return .failure(.wouldRemoveLastVoter) }
            return .success(Membership(voters: voters.filter { $0 != change.node }, learners: learners.filter { $0 != change.node }))
        }
    }

    public var description: String { "voters=\(voters) learners=\(learners)" }
}

/// One single-server membership change (thesis 4.1): at most one is uncommitted at a time.
public struct MembershipChange: Sendable, Hashable {
    public enum Kind: UInt8, Sendable, Hashable {
        case addVoter = 0
        case addLearner = 1
        case promoteLearner = 2
        case removeNode = 3
    }

    public var kind: Kind
    public var node: NodeID
    /// Opaque bytes for the shell, for example the new member's address.
    public var context: [UInt8]

    public init(_ kind: Kind, node: NodeID, context: [UInt8] = []) {
        self.kind = kind
        self.node = node
        self.context = context
    }

    /// Layout: one byte of kind, eight bytes of node (little endian), then the context.
    public func encoded() -> [UInt8] {
        var bytes: [UInt8] = [kind.rawValue]
        bytes.reserveCapacity(9 + context.count)
        appendLittleEndian(node, to: &bytes)
        bytes += context
        return bytes
    }

    /// Decodes what ``encoded()`` wrote; `nil` for bytes that are not a change.
    public static func decode(_ bytes: [UInt8]) -> MembershipChange? {
        guard bytes.count >= 9, let kind = Kind(rawValue: bytes[0]) else { return nil }
        let node = readLittleEndian(bytes, at: 1)
        guard node != noNode else { return nil }
        return MembershipChange(kind, node: node, context: Array(bytes[9...]))
    }
}

/// Why a membership change was refused.
public enum MembershipChangeRejection: Error, Sendable, Hashable, CustomStringConvertible {
    case alreadyVoter(NodeID)
    case alreadyLearner(NodeID)
    case notLearner(NodeID)
    case notMember(NodeID)
    case wouldRemoveLastVoter

    public var description: String {
        switch self {
        case .alreadyVoter(let node): "node \(node) is already a voter"
        case .alreadyLearner(let node): "node \(node) is already a learner"
        case .notLearner(let node): "node \(node) is not a learner"
        case .notMember(let node): "node \(node) is not a member"
        case .wouldRemoveLastVoter: "the last voter cannot be removed"
        }
    }
}

/// Where a snapshot sits in the log, and the configuration in force there.
public struct SnapshotMetadata: Sendable, Hashable {
    public var index: UInt64
    public var term: UInt64
    public var membership: Membership

    public init(index: UInt64 = 0, term: UInt64 = 0, membership: Membership = Membership()) {
        self.index = index
        self.term = term
        self.membership = membership
    }
}

/// The state machine's state at `metadata.index`, standing in for every entry up to it.
public struct Snapshot: Sendable, Hashable {
    public var metadata: SnapshotMetadata
    public var data: [UInt8]

    public init(metadata: SnapshotMetadata = SnapshotMetadata(), data: [UInt8] = []) {
        self.metadata = metadata
        self.data = data
    }

    public var isEmpty: Bool { metadata.index == 0 }
}

/// The answer to a ``RaftNode/readIndex(context:)`` request: once the local state machine
/// has applied `index`, a read that began before the request may be served from it.
public struct ReadState: Sendable, Hashable {
    public var index: UInt64
    public var context: UInt64

    public init(index: UInt64, context: UInt64) {
        self.index = index
        self.context = context
    }
}

@inline(__always)
func appendLittleEndian(_ value: UInt64, to bytes: inout [UInt8]) {
    for shift in stride(from: 0, to: 64, by: 8) {
        bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift)))
    }
}

@inline(__always)
func readLittleEndian(_ bytes: [UInt8], at offset: Int) -> UInt64 {
    var value: UInt64 = 0
    for byteIndex in 0..<8 {
        value |= UInt64(bytes[offset + byteIndex]) << UInt64(byteIndex * 8)
    }
    return value
}
