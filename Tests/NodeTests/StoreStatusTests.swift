import EtcdServer
import GRPCCore
import KVStore
import RaftRuntime
import Store
import Testing

/// `StoreError` on the wire: etcd's gRPC codes and messages, and back (what a follower does with
/// its leader's answer, and what an etcd endpoint's statuses become).
@Suite("Store errors as gRPC statuses")
struct StoreStatusTests {
    static let named: [StoreError] = KVError.allCases.map(StoreError.init) + [
        .noLeader, .timedOut, .leaderLost, .proposalDropped, .overloaded, .stopped, .notMember, .membershipChangeInProgress,
        .learnerNotCaughtUp, .memberNotFound, .invalidPeerURLs, .peerURLsExist, .memberIDExists, .notLearner, .badLeaderTransferee,
    ]

    @Test("every error etcd names comes back as itself from its status")
    func roundTrip() {
        for error in Self.named {
            #expect(StoreError(status: error.status) == error, "\(error)")
        }
        #expect(Set(Self.named.map(\.message)).count == Self.named.count)
    }

    @Test("etcd's codes")
    func codes() {
        #expect(StoreError.compacted(compactRevision: 7).status.code == .outOfRange)
        #expect(StoreError.futureRevision.status.code == .outOfRange)
        #expect(StoreError.requestTooLarge.status.code == .invalidArgument)
        #expect(StoreError.requestTooLarge.status.message == "etcdserver: request is too large")
        #expect(StoreError.refused(.leaseNotFound).status.code == .notFound)
        #expect(StoreError.refused(.noSpace).status.code == .resourceExhausted)
        #expect(StoreError.refused(.corrupt).status.code == .dataLoss)
        #expect(StoreError.noLeader.status == RPCError(code: .unavailable, message: "etcdserver: no leader"))
        #expect(StoreError.memberNotFound.status.code == .notFound)
        #expect(StoreError.peerURLsExist.status.code == .failedPrecondition)
        #expect(StoreError.overloaded.status.code == .resourceExhausted)
    }

    @Test("statuses with words this client does not know keep their class")
    func unknownWords() {
        #expect(StoreError(status: RPCError(code: .unavailable, message: "connection reset")) == .unavailable("connection reset"))
        #expect(StoreError(status: RPCError(code: .unavailable, message: "x")).isRetryable)
        #expect(StoreError(status: RPCError(code: .invalidArgument, message: "etcdserver: something new")).status.code == .invalidArgument)
        #expect(StoreError(status: RPCError(code: .resourceExhausted, message: "grpc: received message larger than max (5 vs. 4)")) == .requestTooLarge)
        #expect(StoreError(status: RPCError(code: .failedPrecondition, message: "etcdserver: leader changed")) == .rejected("leader changed"))
        #expect(StoreError(status: RPCError(code: .internalError, message: "boom")) == .internalError("boom"))
    }

    @Test("the runtime's refusals in the store's terms")
    func runtimeErrors() {
        #expect(StoreError(RaftRuntimeError.notLeader(leader: 3)) == .noLeader)
        #expect(StoreError(RaftRuntimeError.membershipChangeInProgress("membership change at index 9 not yet committed")) == .membershipChangeInProgress)
        #expect(StoreError(RaftRuntimeError.tooLarge(bytes: 10, limit: 5)) == .requestTooLarge)
        #expect(StoreError.from(RaftRuntimeError.timedOut) == .timedOut)
        #expect(StoreError.from(RPCError(code: .unavailable, message: "etcdserver: no leader")) == .noLeader)
        #expect(StoreError.from(CancellationError()) == .stopped)
        #expect(!StoreError.timedOut.isRetryable)
        #expect(StoreError.membershipChangeInProgress.isRetryable)
    }
}
