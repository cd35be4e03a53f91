/// Everything the core asks its shell to do, handed out by ``RaftNode/ready()`` and
/// acknowledged by ``RaftNode/advance(_:)``.
///
/// A shell handles one `Ready` in this order:
/// 1. Send ``messages`` (they may go before or while persisting: thesis 10.2.1 lets a leader
///    replicate in parallel with its own disk write, because it counts itself toward a commit
///    only once `advance` reports its entries durable).
/// 2. Persist ``snapshot`` (if any), then ``entries`` (which replace any stored entries from
///    `entries[0].index` on), then ``hardState``; if ``mustSync``, fsync before going on.
/// 3. Send ``messagesAfterPersist``: votes and acknowledgements that promise durability.
/// 4. Restore the state machine from ``snapshot`` (if any), then apply ``committedEntries`` in order.
///    Serve each ``readStates`` request once the state machine has applied its index.
/// 5. Call ``RaftNode/advance(_:)`` with this `Ready`.
public struct Ready: Sendable {
    /// Set when the leader or role changed since the previous `Ready`. Need not be persisted.
    public var softState: SoftState?
    /// Set when term, vote or commit changed. Persist before sending ``messagesAfterPersist``.
    public var hardState: HardState?
    /// New log entries to persist. They may overwrite stored entries with the same or higher indexes.
    public var entries: [Entry]
    /// A snapshot received from the leader, to persist and restore before applying anything else.
    public var snapshot: Snapshot?
    /// True when the durable state changed in a way that must be fsynced before the messages in
    /// ``messagesAfterPersist`` are sent (new entries, a new term or vote, a snapshot). A commit-index
    /// change alone does not need a sync: a lost commit index is recomputed.
    public var mustSync: Bool
    /// Messages that do not depend on this `Ready` being durable: the leader's appends and heartbeats.
    public var messages: [Message]
    /// Messages that may be sent only after this `Ready` is durable: votes, append acknowledgements,
    /// and anything a non-leader sends.
    public var messagesAfterPersist: [Message]
    /// Entries committed by a quorum, to apply in order. Invariant: each index is above every
    /// index handed out before, and every entry here is in ``entries`` or already persisted.
    public var committedEntries: [Entry]
    /// Answers to ReadIndex requests, in the order they were confirmed.
    public var readStates: [ReadState]

    /// Whether there is anything to do at all.
    public var isEmpty: Bool {
        softState == nil && hardState == nil && entries.isEmpty && snapshot == nil && messages.isEmpty
            && messagesAfterPersist.isEmpty && committedEntries.isEmpty && readStates.isEmpty
    }

    /// Every message of this `Ready`, in the order a shell that does not overlap may send them.
    public var allMessages: [Message] { messages + messagesAfterPersist }
}
