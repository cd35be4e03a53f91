import EtcdAPI
import Foundation
import GRPCCore
import KVStore
import Raft
import RaftRuntime

/// The etcd v3 KV service over the Raft runtime and the store. Writes go through the log;
/// linearizable reads wait on the ReadIndex barrier and then read locally; serializable reads
/// read locally at once.
struct KVService: Etcdserverpb_KV.SimpleServiceProtocol {
    let member: StoreMember

    func range(request: Etcdserverpb_RangeRequest, context: ServerContext) async throws -> Etcdserverpb_RangeResponse {
        if !request.serializable { try await member.barrier() }
        let result = try member.stateMachine.read { try $0.range(Convert.range(request)) }
        switch result {
        case .success(let response): return Convert.rangeResponse(response, await member.headerContext())
        case .failure(let error): throw Convert.error(error)
        }
    }

    func put(request: Etcdserverpb_PutRequest, context: ServerContext) async throws -> Etcdserverpb_PutResponse {
        guard case .put(let response) = try await member.write(.put(Convert.put(request))) else { throw member.unexpected() }
        return Convert.putResponse(response, await member.headerContext())
    }

    func deleteRange(request: Etcdserverpb_DeleteRangeRequest, context: ServerContext) async throws -> Etcdserverpb_DeleteRangeResponse {
        guard case .deleteRange(let response) = try await member.write(.deleteRange(Convert.delete(request))) else { throw member.unexpected() }
        return Convert.deleteResponse(response, await member.headerContext())
    }

    func txn(request: Etcdserverpb_TxnRequest, context: ServerContext) async throws -> Etcdserverpb_TxnResponse {
        guard case .txn(let response) = try await member.write(.txn(try Convert.txn(request))) else { throw member.unexpected() }
        return Convert.txnResponse(response, await member.headerContext())
    }

    func compact(request: Etcdserverpb_CompactionRequest, context: ServerContext) async throws -> Etcdserverpb_CompactionResponse {
        guard case .compaction(let response) = try await member.write(.compaction(CompactionRequest(revision: request.revision, physical: request.physical))) else {
            throw member.unexpected()
        }
        var result = Etcdserverpb_CompactionResponse()
        result.header = Convert.header(response.header, await member.headerContext())
        return result
    }
}

/// The parts of etcd's Maintenance service that exist so far: Status and HashKV.
struct MaintenanceService: Etcdserverpb_Maintenance.SimpleServiceProtocol {
    let member: StoreMember

    func status(request: Etcdserverpb_StatusRequest, context: ServerContext) async throws -> Etcdserverpb_StatusResponse {
        let status = try await member.runtime.status()
        let (revision, size) = try member.stateMachine.read { store in (store.currentRevision, try store.databaseSizeBytes()) }
        var result = Etcdserverpb_StatusResponse()
        result.header = Convert.header(ResponseHeader(revision: revision), await member.headerContext())
        result.version = "3.5.0"
        result.dbSize = size
        result.dbSizeInUse = size
        result.leader = status.leader
        result.raftIndex = status.commitIndex
        result.raftTerm = status.term
        result.raftAppliedIndex = status.appliedIndex
        result.isLearner = status.membership.isLearner(status.id)
        return result
    }

    func hashKV(request: Etcdserverpb_HashKVRequest, context: ServerContext) async throws -> Etcdserverpb_HashKVResponse {
        let result = try member.stateMachine.read { try $0.hashKV(revision: request.revision) }
        switch result {
        case .success(let response):
            var answer = Etcdserverpb_HashKVResponse()
            answer.header = Convert.header(response.header, await member.headerContext())
            answer.hash = response.hash
            answer.compactRevision = response.compactRevision
            return answer
        case .failure(let error):
            throw Convert.error(error)
        }
    }

    func alarm(request: Etcdserverpb_AlarmRequest, context: ServerContext) async throws -> Etcdserverpb_AlarmResponse {
        var result = Etcdserverpb_AlarmResponse()
        let revision = member.stateMachine.read { $0.currentRevision }
        result.header = Convert.header(ResponseHeader(revision: revision), await member.headerContext())
        return result
    }

    func defragment(request: Etcdserverpb_DefragmentRequest, context: ServerContext) async throws -> Etcdserverpb_DefragmentResponse {
        throw RPCError(code: .unimplemented, message: "etcdserver: Defragment is not implemented yet")
    }

    func hash(request: Etcdserverpb_HashRequest, context: ServerContext) async throws -> Etcdserverpb_HashResponse {
        throw RPCError(code: .unimplemented, message: "etcdserver: Hash is not implemented yet (use HashKV)")
    }

    func snapshot(request: Etcdserverpb_SnapshotRequest, response: RPCWriter<Etcdserverpb_SnapshotResponse>, context: ServerContext) async throws {
        throw RPCError(code: .unimplemented, message: "etcdserver: Snapshot is not implemented yet")
    }

    func moveLeader(request: Etcdserverpb_MoveLeaderRequest, context: ServerContext) async throws -> Etcdserverpb_MoveLeaderResponse {
        do {
            try await member.runtime.transferLeadership(to: request.targetID)
        } catch {
            throw RPCError(code: .failedPrecondition, message: "etcdserver: \(error)")
        }
        var result = Etcdserverpb_MoveLeaderResponse()
        result.header = Convert.header(ResponseHeader(revision: member.stateMachine.read { $0.currentRevision }), await member.headerContext())
        return result
    }

    func downgrade(request: Etcdserverpb_DowngradeRequest, context: ServerContext) async throws -> Etcdserverpb_DowngradeResponse {
        throw RPCError(code: .unimplemented, message: "etcdserver: Downgrade is not supported")
    }
}

/// etcd's Cluster service: the member list (membership changes through it come later).
struct ClusterService: Etcdserverpb_Cluster.SimpleServiceProtocol {
    let member: StoreMember

    func memberList(request: Etcdserverpb_MemberListRequest, context: ServerContext) async throws -> Etcdserverpb_MemberListResponse {
        let status = try await member.runtime.status()
        var result = Etcdserverpb_MemberListResponse()
        result.header = Convert.header(ResponseHeader(revision: member.stateMachine.read { $0.currentRevision }), await member.headerContext())
        result.members = status.membership.members.map { id in
            var entry = Etcdserverpb_Member()
            entry.id = id
            entry.name = member.names[id] ?? ""
            if let peer = member.peerURLs[id] { entry.peerUrls = [peer] }
            if let client = member.clientURLs[id] { entry.clientUrls = [client] }
            entry.isLearner = status.membership.isLearner(id)
            return entry
        }
        return result
    }

    func memberAdd(request: Etcdserverpb_MemberAddRequest, context: ServerContext) async throws -> Etcdserverpb_MemberAddResponse {
        throw RPCError(code: .unimplemented, message: "etcdserver: MemberAdd is not implemented yet")
    }

    func memberRemove(request: Etcdserverpb_MemberRemoveRequest, context: ServerContext) async throws -> Etcdserverpb_MemberRemoveResponse {
        throw RPCError(code: .unimplemented, message: "etcdserver: MemberRemove is not implemented yet")
    }

    func memberUpdate(request: Etcdserverpb_MemberUpdateRequest, context: ServerContext) async throws -> Etcdserverpb_MemberUpdateResponse {
        throw RPCError(code: .unimplemented, message: "etcdserver: MemberUpdate is not implemented yet")
    }

    func memberPromote(request: Etcdserverpb_MemberPromoteRequest, context: ServerContext) async throws -> Etcdserverpb_MemberPromoteResponse {
        throw RPCError(code: .unimplemented, message: "etcdserver: MemberPromote is not implemented yet")
    }
}
