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

    /// The gRPC status codes etcd answers these with.
    public enum GRPCCode: String, Sendable, Hashable {
        case invalidArgument = "InvalidArgument"
        case outOfRange = "OutOfRange"
        case notFound = "NotFound"
        case failedPrecondition = "FailedPrecondition"
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

    public init(
        txnOperationsMax: Int = 128, txnNestingDepthMax: Int = 16, requestBytesMax: Int = 1_572_864,
        rangeKeysMax: Int = 0, leaseTTLSecondsMin: Int64 = 2, leaseTTLSecondsMax: Int64 = 9_000_000_000,
        leaseIDsPerRequestMax: Int = 1000, watchReplayEventsMax: Int = 10_000
    ) {
        self.txnOperationsMax = txnOperationsMax
        self.txnNestingDepthMax = txnNestingDepthMax
        self.requestBytesMax = requestBytesMax
        self.rangeKeysMax = rangeKeysMax
        self.leaseTTLSecondsMin = leaseTTLSecondsMin
        self.leaseTTLSecondsMax = leaseTTLSecondsMax
        self.leaseIDsPerRequestMax = leaseIDsPerRequestMax
        self.watchReplayEventsMax = watchReplayEventsMax
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
        return nil
    }
}
