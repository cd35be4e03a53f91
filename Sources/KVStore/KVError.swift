/// A request etcd would refuse, with etcd's gRPC status message and code. Applying such a request
/// changes nothing and is answered identically on every replica, so these are values, never thrown.
public enum KVError: Error, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case emptyKey
    case keyNotFound
    case valueProvided
    case leaseProvided
    case tooManyOperations
    case duplicateKey
    case compacted
    case futureRevision
    case leaseNotFound
    case leaseExists
    case leaseTTLTooLarge
    case requestTooLarge
    /// A range (alone or in a txn) whose keys and values exceed ``KVLimits/rangeResultBytesMax``.
    case responseTooLarge
    /// A lease grant past ``KVLimits/leasesMax`` (etcd has no such cap; a member's memory needs one).
    case tooManyLeases
    /// A write that adds data while a NOSPACE alarm stands (etcd's `ErrNoSpace`).
    case noSpace
    /// A write while a CORRUPT alarm stands (etcd's `ErrCorrupt`).
    case corrupt

    /// The gRPC status codes etcd answers these with.
    public enum GRPCCode: String, Sendable, Hashable {
        case invalidArgument = "InvalidArgument"
        case outOfRange = "OutOfRange"
        case notFound = "NotFound"
        case failedPrecondition = "FailedPrecondition"
        case resourceExhausted = "ResourceExhausted"
        case dataLoss = "DataLoss"
    }

    /// etcd's exact gRPC status message (`rpctypes`), the text etcdctl prints.
    public var message: String {
        switch self {
        case .emptyKey: "etcdserver: key is not provided"
        case .keyNotFound: "etcdserver: key not found"
        case .valueProvided: "etcdserver: value is provided"
        case .leaseProvided: "etcdserver: lease is provided"
        case .tooManyOperations: "etcdserver: too many operations in txn request"
        case .duplicateKey: "etcdserver: duplicate key given in txn request"
        case .compacted: "etcdserver: mvcc: required revision has been compacted"
        case .futureRevision: "etcdserver: mvcc: required revision is a future revision"
        case .leaseNotFound: "etcdserver: requested lease not found"
        case .leaseExists: "etcdserver: lease already exists"
        case .leaseTTLTooLarge: "etcdserver: too large lease TTL"
        case .requestTooLarge: "etcdserver: request is too large"
        case .responseTooLarge: "etcdserver: range response is too large (narrow the range or page it with limit)"
        case .tooManyLeases: "etcdserver: too many leases (revoke unused ones or reuse a lease for several keys)"
        case .noSpace: "etcdserver: mvcc: database space exceeded"
        case .corrupt: "etcdserver: corrupt cluster"
        }
    }

    /// The message without the `etcdserver: ` prefix, as etcd's mvcc and lease packages word it
    /// (`mvcc: required revision has been compacted`).
    public var storeMessage: String {
        let prefix = "etcdserver: "
        return message.hasPrefix(prefix) ? String(message.dropFirst(prefix.count)) : message
    }

    public var grpcCode: GRPCCode {
        switch self {
        case .emptyKey, .keyNotFound, .valueProvided, .leaseProvided, .tooManyOperations, .duplicateKey,
             .requestTooLarge:
            .invalidArgument
        case .compacted, .futureRevision, .leaseTTLTooLarge: .outOfRange
        case .leaseNotFound: .notFound
        case .leaseExists: .failedPrecondition
        case .responseTooLarge, .tooManyLeases, .noSpace: .resourceExhausted
        case .corrupt: .dataLoss
        }
    }

    public var description: String { message }
}

/// Every size the store accepts, named. All replicas must use the same values, since some of
/// them decide what `apply` answers.
public struct KVLimits: Sendable, Hashable {
    /// Operations per compare list, success list or failure list of one txn (etcd `--max-txn-ops`).
    public var txnOperationsMax: Int
    /// How deeply txns may nest (etcd has no such limit; a decoder needs one).
    public var txnNestingDepthMax: Int
    /// An encoded request's size (etcd `--max-request-bytes`, 1.5 MiB).
    public var requestBytesMax: Int
    /// Keys in one range response; 0 for no limit beyond the request's own `limit`.
    public var rangeKeysMax: Int
    /// Lease TTLs are raised to this many seconds (etcd derives it from the election timeout).
    public var leaseTTLSecondsMin: Int64
    /// etcd's `MaxLeaseTTL`.
    public var leaseTTLSecondsMax: Int64
    /// Lease IDs in one expire or checkpoint request.
    public var leaseIDsPerRequestMax: Int
    /// Events one history replay returns at most (whole revisions are never split, so a single
    /// large revision may exceed it).
    public var watchReplayEventsMax: Int
    /// Bytes of keys and values one range may gather (alone or in a txn; with sorting or
    /// revision filters, every match counts, as they are all gathered before the `limit` cut).
    /// Past it the range fails with RESOURCE_EXHAUSTED instead of building the response. etcd's
    /// only bound is gRPC's 2 GiB message; ours is smaller on purpose: a client pages with
    /// `limit` (kube-apiserver lists in pages of 500).
    public var rangeResultBytesMax: Int
    /// Leases granted and not yet revoked or expired. Past it a grant is refused with
    /// ``KVError/tooManyLeases`` (RESOURCE_EXHAUSTED), the same answer on every replica, since
    /// the count is part of the replicated state. Bounds what the leader keeps per lease (a
    /// deadline) and what a new leader reads when it takes over.
    public var leasesMax: Int

    public init(
        txnOperationsMax: Int = 128, txnNestingDepthMax: Int = 16, requestBytesMax: Int = 1_572_864,
        rangeKeysMax: Int = 0, leaseTTLSecondsMin: Int64 = 2, leaseTTLSecondsMax: Int64 = 9_000_000_000,
        leaseIDsPerRequestMax: Int = 1000, watchReplayEventsMax: Int = 10_000, rangeResultBytesMax: Int = 64 << 20,
        leasesMax: Int = 1_000_000
    ) {
        self.txnOperationsMax = txnOperationsMax
        self.txnNestingDepthMax = txnNestingDepthMax
        self.requestBytesMax = requestBytesMax
        self.rangeKeysMax = rangeKeysMax
        self.leaseTTLSecondsMin = leaseTTLSecondsMin
        self.leaseTTLSecondsMax = leaseTTLSecondsMax
        self.leaseIDsPerRequestMax = leaseIDsPerRequestMax
        self.watchReplayEventsMax = watchReplayEventsMax
        self.rangeResultBytesMax = rangeResultBytesMax
        self.leasesMax = leasesMax
    }

    /// etcd's defaults.
    public static let `default` = KVLimits()

    /// Checks the limits make sense; the shell calls this at start-up.
    public func validate() -> String? {
        if txnOperationsMax < 1 { return "txnOperationsMax must be at least 1" }
        if txnNestingDepthMax < 1 { return "txnNestingDepthMax must be at least 1" }
        if requestBytesMax < 1024 { return "requestBytesMax must be at least 1024" }
        if rangeKeysMax < 0 { return "rangeKeysMax must not be negative" }
        if leaseTTLSecondsMin < 1 || leaseTTLSecondsMin > leaseTTLSecondsMax {
            return "leaseTTLSecondsMin must be between 1 and leaseTTLSecondsMax"
        }
        if leaseIDsPerRequestMax < 1 { return "leaseIDsPerRequestMax must be at least 1" }
        if watchReplayEventsMax < 1 { return "watchReplayEventsMax must be at least 1" }
        if rangeResultBytesMax < requestBytesMax { return "rangeResultBytesMax must be at least requestBytesMax (a range must be able to return one written key)" }
        if leasesMax < 1 { return "leasesMax must be at least 1" }
        return nil
    }
}
