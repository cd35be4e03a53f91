import EtcdAPI
import Foundation
import GRPCCore
import KVStore
import Store

/// etcd's Lease service over the store: grant and revoke through the log; keep-alive and
/// time-to-live on the leader's clock (``LeaseKeeper``); expiry proposed by the leader.
struct LeaseService: Etcdserverpb_Lease.SimpleServiceProtocol {
    let store: EmbeddedStore
    var member: StoreMember { store.member }

    func leaseGrant(request: Etcdserverpb_LeaseGrantRequest, context: ServerContext) async throws -> Etcdserverpb_LeaseGrantResponse {
        let granted = try await store.leaseGrant(ttl: request.ttl, id: request.id)
        var result = Etcdserverpb_LeaseGrantResponse()
        result.header = Convert.header(granted.header, member.headerContext())
        result.id = granted.id
        result.ttl = granted.ttl
        return result
    }

    func leaseRevoke(request: Etcdserverpb_LeaseRevokeRequest, context: ServerContext) async throws -> Etcdserverpb_LeaseRevokeResponse {
        let revoked = try await store.leaseRevoke(id: request.id)
        var result = Etcdserverpb_LeaseRevokeResponse()
        result.header = Convert.header(revoked.header, member.headerContext())
        return result
    }

    func leaseKeepAlive(request: RPCAsyncSequence<Etcdserverpb_LeaseKeepAliveRequest, any Error>, response: RPCWriter<Etcdserverpb_LeaseKeepAliveResponse>, context: ServerContext) async throws {
        for try await keepAlive in request {
            var answer = Etcdserverpb_LeaseKeepAliveResponse()
            answer.ttl = try await store.leaseKeepAlive(id: keepAlive.id)
            answer.header = member.header()
            answer.id = keepAlive.id
            try await response.write(answer)
        }
    }

    func leaseTimeToLive(request: Etcdserverpb_LeaseTimeToLiveRequest, context: ServerContext) async throws -> Etcdserverpb_LeaseTimeToLiveResponse {
        var result = Etcdserverpb_LeaseTimeToLiveResponse()
        result.id = request.id
        if let lease = try await store.leaseTimeToLive(id: request.id, keys: request.keys) {
            result.header = Convert.header(lease.header, member.headerContext())
            result.ttl = lease.ttl
            result.grantedTtl = lease.grantedTTL
            result.keys = lease.keys.map { Data($0) }
        } else {
            // etcd answers an unknown lease with TTL -1 rather than an error.
            result.header = member.header()
            result.ttl = -1
        }
        return result
    }

    func leaseLeases(request: Etcdserverpb_LeaseLeasesRequest, context: ServerContext) async throws -> Etcdserverpb_LeaseLeasesResponse {
        var result = Etcdserverpb_LeaseLeasesResponse()
        result.header = member.header()
        result.leases = try await store.leases().map { id in
            var status = Etcdserverpb_LeaseStatus()
            status.id = id
            return status
        }
        return result
    }
}
