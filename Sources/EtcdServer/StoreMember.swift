import GRPCCore
import KVStore
import Raft
import RaftRuntime

/// One store member: the Raft runtime, the keyspace it drives, and what the etcd services need
/// to answer (names and URLs of members, request limits).
public struct StoreMember: Sendable {
    public let runtime: RaftRuntime
    public let stateMachine: KVStateMachine
    public let clusterID: UInt64
    public let names: [NodeID: String]
    public let peerURLs: [NodeID: String]
    public let clientURLs: [NodeID: String]
    public let watches: WatchBroker
    /// etcd's default request limit (1.5 MiB).
    public var requestBytesMax = 3 << 19

    public init(runtime: RaftRuntime, stateMachine: KVStateMachine, watches: WatchBroker, clusterID: UInt64, names: [NodeID: String], peerURLs: [NodeID: String], clientURLs: [NodeID: String]) {
        self.runtime = runtime
        self.watches = watches
        self.stateMachine = stateMachine
        self.clusterID = clusterID
        self.names = names
        self.peerURLs = peerURLs
        self.clientURLs = clientURLs
    }

    func headerContext() async -> HeaderContext {
        let term = (try? await runtime.status().term) ?? 0
        return HeaderContext(clusterID: clusterID, memberID: runtime.id, raftTerm: term)
    }

    /// Proposes a request through the log and returns the store's typed answer.
    func write(_ request: KVRequest) async throws -> KVResponse {
        if let problem = request.validate() { throw Convert.error(problem) }
        let encoded = request.encoded()
        if encoded.count > requestBytesMax { throw RPCError(code: .invalidArgument, message: KVError.requestTooLarge.message) }
        let result: AppliedResult
        do {
            result = try await runtime.propose(encoded)
        } catch let error as RaftRuntimeError {
            throw Self.status(error)
        }
        guard let response = stateMachine.takeResponse(index: result.index) else { throw unexpected() }
        if case .error(let error) = response { throw Convert.error(error) }
        return response
    }

    func barrier() async throws {
        do {
            try await runtime.readBarrier()
        } catch let error as RaftRuntimeError {
            throw Self.status(error)
        }
    }

    func unexpected() -> RPCError {
        RPCError(code: .internalError, message: "etcdserver: unexpected response")
    }

    /// etcd's status codes and messages for the runtime's errors.
    static func status(_ error: RaftRuntimeError) -> RPCError {
        switch error {
        case .noLeader, .notLeader: RPCError(code: .unavailable, message: "etcdserver: no leader")
        case .timedOut: RPCError(code: .unavailable, message: "etcdserver: request timed out")
        case .tooLarge: RPCError(code: .invalidArgument, message: KVError.requestTooLarge.message)
        case .overloaded: RPCError(code: .resourceExhausted, message: "etcdserver: too many requests")
        case .stopped: RPCError(code: .unavailable, message: "etcdserver: server stopped")
        case .proposalDropped: RPCError(code: .unavailable, message: "etcdserver: request cancelled")
        case .notMember: RPCError(code: .failedPrecondition, message: "etcdserver: the member has been permanently removed from the cluster")
        case .rejected(let reason): RPCError(code: .failedPrecondition, message: "etcdserver: \(reason)")
        }
    }
}
