/// Why a message from a peer is refused before it reaches ``RaftNode/step(_:)``.
///
/// Decoders check a frame's shape (lengths, enum values); these are the checks of its meaning
/// that do not depend on the receiver's state. A message that fails one cannot have been sent by
/// a correct member: it is dropped whole, and the receiver's state does not change.
public enum MessageRejection: Error, Sendable, Hashable, CustomStringConvertible {
    /// `from` is ``noNode`` or the receiver itself, or `to` is not the receiver.
    case badAddress(from: NodeID, to: NodeID)
    /// A term above ``Message/termMax`` (one more election would overflow it).
    case termOutOfRange(UInt64)
    /// An index field above ``Message/indexMax`` (`index + 1` would overflow, or a length would).
    case indexOutOfRange(field: String, value: UInt64)
    /// Entries on a message type that carries none.
    case unexpectedEntries(MessageType)
    /// Appended entries must be numbered `index + 1`, `index + 2`, ... without gaps.
    case entriesNotContiguous(position: Int, expected: UInt64, found: UInt64)
    /// Entry terms must not fall below `logTerm` nor decrease, and none may be above the
    /// message's term (a leader appends only entries of its term or older ones).
    case entryTermOutOfOrder(position: Int, term: UInt64)
    /// `logTerm` above the message's term.
    case logTermAboveTerm(logTerm: UInt64, term: UInt64)
    /// A rejection's hint must be at or below the rejected index.
    case rejectHintAboveIndex(hint: UInt64, index: UInt64)
    /// A snapshot on a message type that carries none, or a snapshot message without one.
    case unexpectedSnapshot(MessageType)
    /// Snapshot metadata that no leader could send.
    case invalidSnapshotMetadata(String)

    public var description: String {
        switch self {
        case .badAddress(let from, let to): "bad address: from \(from) to \(to)"
        case .termOutOfRange(let term): "term \(term) above \(Message.termMax)"
        case .indexOutOfRange(let field, let value): "\(field) \(value) above \(Message.indexMax)"
        case .unexpectedEntries(let type): "entries on a \(type) message"
        case .entriesNotContiguous(let position, let expected, let found):
            "entry \(position) has index \(found), expected \(expected)"
        case .entryTermOutOfOrder(let position, let term): "entry \(position) has term \(term) out of order"
        case .logTermAboveTerm(let logTerm, let term): "logTerm \(logTerm) above term \(term)"
        case .rejectHintAboveIndex(let hint, let index): "reject hint \(hint) above index \(index)"
        case .unexpectedSnapshot(let type): "snapshot presence wrong for a \(type) message"
        case .invalidSnapshotMetadata(let reason): "invalid snapshot metadata: \(reason)"
        }
    }
}

extension Message {
    /// The highest term a peer may name: 2^63 - 1. No cluster gets near it, and it leaves room
    /// for every `term + 1` the core computes.
    public static let termMax = UInt64(Int64.max)
    /// The highest log index (`index`, `commit`, `rejectHint`, entry and snapshot indexes) a peer
    /// may name: 2^63 - 1, so that `index + 1`, `index + count` and `Int(index)` never overflow.
    public static let indexMax = UInt64(Int64.max)

    /// The reason `receiver` must drop this message, or nil if it may be stepped.
    ///
    /// Rules: the sender is neither ``noNode`` nor the receiver, and `to` is the receiver; terms
    /// (`term`, `logTerm`, entry and snapshot terms) are at most ``termMax`` and indexes at most
    /// ``indexMax``; only `append` and `propose` carry entries, and an append's entries are
    /// numbered `index + 1, index + 2, ...` with terms from `logTerm` up to `term`, never
    /// decreasing; `logTerm <= term` wherever it names a log position; a rejection's hint is at
    /// or below its index; exactly the `snapshot` type carries a snapshot, at an index in
    /// `1...indexMax`, of a term in `1...term`, with at least one voter and no ``noNode`` member.
    /// A `transferLeadership` message's `index` names a node, so it is not bounded.
    public func rejection(receiver: NodeID) -> MessageRejection? {
        guard from != noNode, from != receiver, to == receiver else { return .badAddress(from: from, to: to) }
        if term > Message.termMax { return .termOutOfRange(term) }
        if logTerm > Message.termMax { return .termOutOfRange(logTerm) }
        if type != .transferLeadership && index > Message.indexMax {
            return .indexOutOfRange(field: "index", value: index)
        }
        if commit > Message.indexMax { return .indexOutOfRange(field: "commit", value: commit) }
        if rejectHint > Message.indexMax { return .indexOutOfRange(field: "rejectHint", value: rejectHint) }

        switch type {
        case .append:
            if logTerm > term { return .logTermAboveTerm(logTerm: logTerm, term: term) }
            var previousTerm = logTerm
            for (position, entry) in entries.enumerated() {
                // index <= indexMax, so this cannot overflow; the entry check below keeps it so.
                let expected = index + 1 + UInt64(position)
                guard entry.index == expected, entry.index <= Message.indexMax else {
                    return .entriesNotContiguous(position: position, expected: expected, found: entry.index)
                }
                guard entry.term >= previousTerm, entry.term <= term else {
                    return .entryTermOutOfOrder(position: position, term: entry.term)
                }
                previousTerm = entry.term
            }
        case .propose:
            break  // Forwarded proposals carry unnumbered entries; the leader numbers them.
        default:
            if !entries.isEmpty { return .unexpectedEntries(type) }
        }

        switch type {
        case .appendResponse where reject:
            if rejectHint > index { return .rejectHintAboveIndex(hint: rejectHint, index: index) }
            if logTerm > term { return .logTermAboveTerm(logTerm: logTerm, term: term) }
        case .requestVote, .requestPreVote:
            if logTerm > term { return .logTermAboveTerm(logTerm: logTerm, term: term) }
        default:
            break
        }

        if type == .snapshot {
            guard let snapshot else { return .unexpectedSnapshot(type) }
            let metadata = snapshot.metadata
            if metadata.index == 0 || metadata.index > Message.indexMax {
                return .invalidSnapshotMetadata("index \(metadata.index) outside 1...\(Message.indexMax)")
            }
            if metadata.term == 0 || metadata.term > term {
                return .invalidSnapshotMetadata("term \(metadata.term) outside 1...\(term)")
            }
            if metadata.membership.voters.isEmpty {
                return .invalidSnapshotMetadata("no voters")
            }
            if metadata.membership.contains(noNode) {
                return .invalidSnapshotMetadata("member \(noNode)")
            }
        } else if snapshot != nil {
            return .unexpectedSnapshot(type)
        }
        return nil
    }
}
