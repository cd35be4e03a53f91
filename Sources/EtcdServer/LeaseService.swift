import EtcdAPI
import Foundation
import GRPCCore
import KVStore

/// etcd's Lease service: grant and revoke through the log; keep-alive and time-to-live on the
/// leader's clock (``LeaseKeeper``); expiry proposed by the leader.
struct LeaseService: Etcdserverpb_Lease.SimpleServiceProtocol {
    let member: StoreMember
    let keeper: LeaseKeeper

    func leaseGrant(request: Etcdserverpb_LeaseGrantRequest, context: ServerContext) async throws -> Etcdserverpb_LeaseGrantResponse {
        guard case .leaseGrant(let granted) = try await member.write(.leaseGrant(LeaseGrantRequest(ttl: request.ttl, id: request.id))) else {
            throw member.unexpected()
        }
        var result = Etcdserverpb_LeaseGrantResponse()
        result.header = Convert.header(granted.header, member.headerContext())
        result.id = granted.id
        result.ttl = granted.ttl
        return result
    }

    func leaseRevoke(request: Etcdserverpb_LeaseRevokeRequest, context: ServerContext) async throws -> Etcdserverpb_LeaseRevokeResponse {
        guard case .leaseRevoke(let revoked) = try await member.write(.leaseRevoke(LeaseRevokeRequest(id: request.id))) else {
            throw member.unexpected()
        }
        var result = Etcdserverpb_LeaseRevokeResponse()
        result.header = Convert.header(revoked.header, member.headerContext())
        return result
    }

    /// Keep-alives are answered on the leader, which keeps time for leases; a follower forwards
    /// each one to the leader, as etcd does, over the one keep-alive stream it keeps to the leader
    /// for all its clients (``LeaderLink``).
    func leaseKeepAlive(request: RPCAsyncSequence<Etcdserverpb_LeaseKeepAliveRequest, any Error>, response: RPCWriter<Etcdserverpb_LeaseKeepAliveResponse>, context: ServerContext) async throws {
        for try await keepAlive in request {
            let answer = try await member.onLeader {
                let ttl = try keeper.renew(keepAlive.id)
                var answer = Etcdserverpb_LeaseKeepAliveResponse()
                answer.header = member.header()
                answer.id = keepAlive.id
                // TTL 0 tells the client the lease is gone, as etcd does.
                answer.ttl = ttl ?? 0
                return answer
            } forward: { client in
                try await member.leaderLink.keepAlive(keepAlive, client: client)
            }
            try await response.write(answer)
        }
    }

    func leaseTimeToLive(request: Etcdserverpb_LeaseTimeToLiveRequest, context: ServerContext) async throws -> Etcdserverpb_LeaseTimeToLiveResponse {
        try await member.barrier()
        let found = try member.stateMachine.read { try $0.leaseTimeToLive(id: request.id, keys: request.keys) }
        var result = Etcdserverpb_LeaseTimeToLiveResponse()
        result.id = request.id
        switch found {
        case .success(let lease):
            result.header = Convert.header(lease.header, member.headerContext())
            result.ttl = keeper.remaining(request.id) ?? lease.ttl
            result.grantedTtl = lease.grantedTTL
            result.keys = lease.keys.map { Data($0) }
        case .failure(.leaseNotFound):
            // etcd answers an unknown lease with TTL -1 rather than an error.
            result.header = member.header()
            result.ttl = -1
        case .failure(let error):
            throw Convert.error(error)
        }
        return result
    }

    func leaseLeases(request: Etcdserverpb_LeaseLeasesRequest, context: ServerContext) async throws -> Etcdserverpb_LeaseLeasesResponse {
        let leases = try member.stateMachine.read { try $0.leases() }
        var result = Etcdserverpb_LeaseLeasesResponse()
        result.header = member.header()
        result.leases = leases.map { lease in
            var status = Etcdserverpb_LeaseStatus()
            status.id = lease.id
            return status
        }
        return result
    }
}
