import Raft

/// Everything a ``RaftRuntime`` needs, validated when it starts.
public struct RuntimeConfiguration: Sendable {
    public var id: NodeID
    /// Where the WAL and snapshots live (`<dataDirectory>/wal`, `<dataDirectory>/snap`).
    public var dataDirectory: String
    public var listen: PeerAddress
    /// Addresses of the members known at start (this node's included). For a new cluster these
    /// are the initial voters; a joining node lists the members it can reach.
    public var peers: [NodeID: PeerAddress]
    /// Start a new cluster whose voters are `peers` (ignored when the data directory holds a log).
    public var bootstrap: Bool
    /// Milliseconds between ticks (etcd's default is 100).
    public var heartbeatIntervalMs: Int = 100
    /// Ticks without a leader before an election (etcd's default is 10).
    public var electionTimeoutTicks: Int = 10
    /// Take a state machine snapshot and compact the log every this many applied entries.
    public var snapshotIntervalEntries: UInt64 = 10_000
    /// Entries kept below a snapshot, so that slightly lagging followers need no snapshot.
    public var compactionMarginEntries: UInt64 = 1_000
    /// How long `propose`, `readBarrier` and membership changes wait before `timedOut`.
    public var requestTimeoutMs: Int = 5_000
    /// Largest proposal accepted (etcd's request limit is 1.5 MiB).
    public var proposalBytesMax: Int = 3 << 19
    /// Requests waiting for their outcome; past it new ones are refused as `overloaded`.
    public var pendingRequestsMax: Int = 16_384
    /// Transport events queued for the loop; past it, inbound messages are dropped (Raft retries).
    public var inboundQueueMax: Int = 16_384
    /// Core limits (message bytes, in-flight window, uncommitted bytes...).
    public var raft: Configuration
    public var transport = TransportLimits()
    /// TLS for peer connections (nil: plaintext, for tests and loopback-only use).
    public var peerSecurity: ChannelSecurity?

    public init(id: NodeID, dataDirectory: String, listen: PeerAddress, peers: [NodeID: PeerAddress], bootstrap: Bool) {
        self.id = id
        self.dataDirectory = dataDirectory
        self.listen = listen
        self.peers = peers
        self.bootstrap = bootstrap
        raft = Configuration(id: id)
    }

    public func validate() throws {
        var core = raft
        core.id = id
        core.electionTimeoutTicks = electionTimeoutTicks
        try core.validate()
        try transport.validate()
        func fail(_ field: String, _ reason: String) -> ConfigurationError { ConfigurationError(field: field, reason: reason) }
        if heartbeatIntervalMs < 1 { throw fail("heartbeatIntervalMs", "must be at least 1") }
        if snapshotIntervalEntries < 1 { throw fail("snapshotIntervalEntries", "must be at least 1") }
        if requestTimeoutMs < 1 { throw fail("requestTimeoutMs", "must be at least 1") }
        if proposalBytesMax < 1 || proposalBytesMax + 32 > raft.entryBytesMax { throw fail("proposalBytesMax", "must be positive and fit in raft.entryBytesMax") }
        if pendingRequestsMax < 1 || inboundQueueMax < 1 { throw fail("pendingRequestsMax", "limits must be positive") }
        if bootstrap && peers[id] == nil { throw fail("peers", "a new cluster's peers must include this node (\(id))") }
    }
}
