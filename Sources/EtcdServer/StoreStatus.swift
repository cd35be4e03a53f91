import GRPCCore
import KVStore
import RaftRuntime
import Store

/// The store's typed errors on the wire: etcd's gRPC status codes and messages for each, and
/// back (a status from a forwarded call, or from an etcd endpoint, read into the same error).
extension StoreError {
    /// The runtime's refusals in the store's terms.
    public init(_ error: RaftRuntimeError) {
        switch error {
        case .noLeader, .notLeader: self = .noLeader
        case .timedOut: self = .timedOut
        case .tooLarge: self = .requestTooLarge
        case .overloaded: self = .overloaded
        case .stopped: self = .stopped
        case .proposalDropped: self = .proposalDropped
        case .leaderLost: self = .leaderLost
        case .notMember: self = .notMember
        case .learnerNotCaughtUp: self = .learnerNotCaughtUp
        case .membershipChangeInProgress: self = .membershipChangeInProgress
        case .rejected(let reason): self = .rejected(reason)
        }
    }

    /// Any error met inside a member, typed: the store's and the runtime's as they are, a gRPC
    /// status (from a call forwarded to the leader) read back, cancellation as a stop, anything
    /// else (SQLite) as an internal error with its description.
    public static func from(_ error: any Error) -> StoreError {
        switch error {
        case let error as StoreError: error
        case let error as RaftRuntimeError: StoreError(error)
        case let error as RPCError: StoreError(status: error)
        case is CancellationError: .stopped
        default: .internalError("\(error)")
        }
    }

    /// The gRPC status etcd answers with (etcd's `rpctypes`).
    public var status: RPCError {
        RPCError(code: statusCode, message: message)
    }

    var statusCode: RPCError.Code {
        switch self {
        case .compacted, .futureRevision: .outOfRange
        case .refused(let error): Self.code(error.grpcCode)
        case .requestTooLarge, .invalidPeerURLs, .invalidRequest: .invalidArgument
        case .noLeader, .timedOut, .leaderLost, .proposalDropped, .stopped, .unavailable: .unavailable
        case .overloaded, .watchRefused, .watchTooSlow: .resourceExhausted
        case .notMember, .membershipChangeInProgress, .learnerNotCaughtUp, .peerURLsExist, .memberIDExists, .notLearner,
             .badLeaderTransferee, .rejected:
            .failedPrecondition
        case .memberNotFound: .notFound
        case .internalError: .internalError
        }
    }

    static func code(_ code: KVError.GRPCCode) -> RPCError.Code {
        switch code {
        case .invalidArgument: .invalidArgument
        case .outOfRange: .outOfRange
        case .notFound: .notFound
        case .failedPrecondition: .failedPrecondition
        case .resourceExhausted: .resourceExhausted
        case .dataLoss: .dataLoss
        }
    }

    /// Every error whose message names it exactly, by message (etcd's messages are stable: its
    /// own clients match on them too).
    private static let byMessage: [String: StoreError] = {
        var known: [StoreError] = KVError.allCases.map(StoreError.init)
        known += [.noLeader, .timedOut, .leaderLost, .proposalDropped, .overloaded, .stopped, .notMember,
                  .membershipChangeInProgress, .learnerNotCaughtUp, .memberNotFound, .invalidPeerURLs, .peerURLsExist,
                  .memberIDExists, .notLearner, .badLeaderTransferee]
        return Dictionary(known.map { ($0.message, $0) }, uniquingKeysWith: { first, _ in first })
    }()

    /// A gRPC status read back into the error it stands for: by etcd's exact message, else by
    /// code (unavailable stays retryable, invalid argument a client's error; the rest are
    /// internal errors with their message).
    public init(status: RPCError) {
        if let known = Self.byMessage[status.message] {
            self = known
            return
        }
        switch status.code {
        case .unavailable, .deadlineExceeded: self = .unavailable(status.message)
        case .invalidArgument: self = .invalidRequest(status.message)
        case .resourceExhausted: self = status.message.contains("larger than max") ? .requestTooLarge : .overloaded
        case .failedPrecondition: self = .rejected(status.message.hasPrefix("etcdserver: ") ? String(status.message.dropFirst(12)) : status.message)
        default: self = .internalError(status.message)
        }
    }
}
