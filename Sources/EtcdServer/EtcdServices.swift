import Crypto
import EtcdAPI
import Foundation
import GRPCCore
import KVStore
import Raft
import RaftRuntime
import Store

/// The etcd v3 KV service over the Raft runtime and the store. Writes go through the log;
/// linearizable reads wait on the ReadIndex barrier and then read locally; serializable reads
/// read locally at once. Range, put, delete range and txn run without a task each (the gRPC
/// server's hot paths): `done` gets a closure that makes the response, which the server runs on
/// the connection's event loop.
struct KVService {
    let store: EmbeddedStore
    var member: StoreMember { store.member }

    typealias Done<Response> = @Sendable (@escaping @Sendable () throws -> Response) -> Void

    /// The range as this member's store has it now (a serializable read, or a linearizable one
    /// after the barrier).
    func localRange(_ request: Etcdserverpb_RangeRequest) throws -> Etcdserverpb_RangeResponse {
        Convert.rangeResponse(try member.localRange(Convert.range(request)), member.headerContext())
    }

    func range(_ request: Etcdserverpb_RangeRequest, done: @escaping Done<Etcdserverpb_RangeResponse>) {
        if request.serializable { return done { try localRange(request) } }
        member.barrier { result in done { try result.get(); return try localRange(request) } }
    }

    func put(_ request: Etcdserverpb_PutRequest, done: @escaping Done<Etcdserverpb_PutResponse>) {
        write(.put(Convert.put(request)), done: done) { answer in
            guard case .put(let response) = answer else { return nil }
            return Convert.putResponse(response, member.headerContext())
        }
    }

    func deleteRange(_ request: Etcdserverpb_DeleteRangeRequest, done: @escaping Done<Etcdserverpb_DeleteRangeResponse>) {
        write(.deleteRange(Convert.delete(request)), done: done) { answer in
            guard case .deleteRange(let response) = answer else { return nil }
            return Convert.deleteResponse(response, member.headerContext())
        }
    }

    func txn(_ request: Etcdserverpb_TxnRequest, done: @escaping Done<Etcdserverpb_TxnResponse>) {
        let converted: TxnRequest
        do {
            converted = try Convert.txn(request)
        } catch {
            return done { throw error }
        }
        write(.txn(converted), done: done) { answer in
            guard case .txn(let response) = answer else { return nil }
            return Convert.txnResponse(response, member.headerContext())
        }
    }

    /// Proposes `request` and hands `done` the response `convert` makes of the store's answer
    /// (nil: an answer of the wrong kind, etcd's "unexpected response").
    private func write<Response>(_ request: KVRequest, done: @escaping Done<Response>, convert: @escaping @Sendable (KVResponse) -> Response?) {
        member.write(request) { result in
            done {
                guard let response = convert(try result.get()) else { throw StoreMember.unexpected }
                return response
            }
        }
    }

    func compact(request: Etcdserverpb_CompactionRequest, context: ServerContext) async throws -> Etcdserverpb_CompactionResponse {
        let response = try await store.compact(revision: request.revision, physical: request.physical)
        var result = Etcdserverpb_CompactionResponse()
        result.header = Convert.header(response.header, member.headerContext())
        return result
    }
}

/// etcd's Maintenance service.
struct MaintenanceService: Etcdserverpb_Maintenance.SimpleServiceProtocol {
    let store: EmbeddedStore
    var member: StoreMember { store.member }

    func status(request: Etcdserverpb_StatusRequest, context: ServerContext) async throws -> Etcdserverpb_StatusResponse {
        let status = try await member.runtime.status()
        let (revision, size, inUse, alarms) = try member.stateMachine.read { store in
            (store.currentRevision, try store.databaseSizeBytes(), try store.databaseSizeInUseBytes(), store.alarms)
        }
        var result = Etcdserverpb_StatusResponse()
        result.header = Convert.header(ResponseHeader(revision: revision), member.headerContext())
        result.version = "3.5.0"
        result.dbSize = size
        result.dbSizeInUse = inUse
        // etcd lists standing alarms as errors (etcdctl's ERRORS column).
        result.errors = alarms.map { "memberID:\($0.memberID) alarm:\($0.alarm.name) " }
        result.leader = status.leader
        result.raftIndex = status.commitIndex
        result.raftTerm = status.term
        result.raftAppliedIndex = status.appliedIndex
        result.isLearner = status.membership.isLearner(status.id)
        return result
    }

    func hashKV(request: Etcdserverpb_HashKVRequest, context: ServerContext) async throws -> Etcdserverpb_HashKVResponse {
        let response = try member.read { try $0.hashKV(revision: request.revision) }.mapError(StoreError.init).get()
        var answer = Etcdserverpb_HashKVResponse()
        answer.header = Convert.header(response.header, member.headerContext())
        answer.hash = response.hash
        answer.compactRevision = response.compactRevision
        return answer
    }

    /// Lists the standing alarms (GET), or raises or clears one through the log (ACTIVATE,
    /// DEACTIVATE), as etcd does; `etcdctl alarm disarm` lists and then clears each.
    func alarm(request: Etcdserverpb_AlarmRequest, context: ServerContext) async throws -> Etcdserverpb_AlarmResponse {
        var result = Etcdserverpb_AlarmResponse()
        let action: AlarmRequest.Action
        switch request.action {
        case .get:
            let (revision, alarms) = member.stateMachine.read { ($0.currentRevision, $0.alarms) }
            result.header = Convert.header(ResponseHeader(revision: revision), member.headerContext())
            result.alarms = alarms.map(Convert.alarm)
            return result
        case .activate: action = .activate
        case .deactivate: action = .deactivate
        case .UNRECOGNIZED(let value):
            throw RPCError(code: .invalidArgument, message: "etcdserver: unknown alarm action \(value)")
        }
        guard let type = UInt8(exactly: request.alarm.rawValue).flatMap(AlarmType.init(rawValue:)) else {
            throw RPCError(code: .invalidArgument, message: "etcdserver: unknown alarm type \(request.alarm.rawValue)")
        }
        guard case .alarm(let response) = try await member.write(.alarm(AlarmRequest(action: action, member: AlarmMember(memberID: request.memberID, alarm: type)))) else {
            throw StoreMember.unexpected
        }
        result.header = Convert.header(response.header, member.headerContext())
        result.alarms = response.alarms.map(Convert.alarm)
        return result
    }

    /// Rewrites this member's database file compactly (SQLite `VACUUM`), as etcd's defragment
    /// does for its bbolt file. Local to the member asked, like etcd's.
    func defragment(request: Etcdserverpb_DefragmentRequest, context: ServerContext) async throws -> Etcdserverpb_DefragmentResponse {
        try member.stateMachine.defragment()
        var result = Etcdserverpb_DefragmentResponse()
        result.header = member.header()
        return result
    }

    /// The CRC-32C of this member's whole keyspace at its current revision (what HashKV with
    /// revision 0 computes). Like etcd's Hash, meant for tests and checks.
    func hash(request: Etcdserverpb_HashRequest, context: ServerContext) async throws -> Etcdserverpb_HashResponse {
        guard case .success(let response) = try member.read({ try $0.hashKV(revision: 0) }) else { throw StoreMember.unexpected }
        var result = Etcdserverpb_HashResponse()
        result.header = Convert.header(response.header, member.headerContext())
        result.hash = response.hash
        return result
    }

    /// Streams a consistent copy of the member's database (an SQLite file) in 32 KiB chunks, each
    /// saying how many bytes remain, followed by its SHA-256, as etcd streams its bbolt file for
    /// `etcdctl snapshot save` (which refuses a stream without the checksum). The copy is a file,
    /// read a chunk at a time: a database of any size costs a chunk of memory.
    func snapshot(request: Etcdserverpb_SnapshotRequest, response: RPCWriter<Etcdserverpb_SnapshotResponse>, context: ServerContext) async throws {
        let header = member.header()
        try await member.stateMachine.withDatabaseCopy { path in
            guard let file = FileHandle(forReadingAtPath: path) else { throw StoreMember.unexpected }
            defer { try? file.close() }
            let size = Int(try file.seekToEnd())
            try file.seek(toOffset: 0)
            let total = size + SnapshotFile.checksumBytes
            var hasher = SHA256()
            var sent = 0
            while sent < total {
                var blob = sent < size ? (try file.read(upToCount: min(Self.snapshotChunkBytes, size - sent)) ?? Data()) : Data()
                guard sent >= size || !blob.isEmpty else { throw StoreMember.unexpected }
                hasher.update(data: blob)
                if sent + blob.count == size { blob += Data(hasher.finalize()) }
                sent += blob.count
                var chunk = Etcdserverpb_SnapshotResponse()
                chunk.header = header
                chunk.blob = blob
                chunk.remainingBytes = UInt64(total - sent)
                try await response.write(chunk)
            }
        }
    }

    static let snapshotChunkBytes = 32 * 1024

    func moveLeader(request: Etcdserverpb_MoveLeaderRequest, context: ServerContext) async throws -> Etcdserverpb_MoveLeaderResponse {
        try await store.moveLeader(to: request.targetID)
        var result = Etcdserverpb_MoveLeaderResponse()
        result.header = member.header()
        return result
    }

    func downgrade(request: Etcdserverpb_DowngradeRequest, context: ServerContext) async throws -> Etcdserverpb_DowngradeResponse {
        throw RPCError(code: .unimplemented, message: "etcdserver: Downgrade is not supported")
    }
}

/// etcd's Cluster service, over the store's membership operations (which run on the leader; a
/// follower forwards them to it) and replicated member attributes.
struct ClusterService: Etcdserverpb_Cluster.SimpleServiceProtocol {
    let store: EmbeddedStore
    var member: StoreMember { store.member }

    func memberList(request: Etcdserverpb_MemberListRequest, context: ServerContext) async throws -> Etcdserverpb_MemberListResponse {
        var result = Etcdserverpb_MemberListResponse()
        result.members = try await store.members(linearizable: request.linearizable).map(Convert.member)
        result.header = member.header()
        return result
    }

    func memberAdd(request: Etcdserverpb_MemberAddRequest, context: ServerContext) async throws -> Etcdserverpb_MemberAddResponse {
        let change = try await store.addMember(peerURLs: request.peerUrls, learner: request.isLearner)
        var result = Etcdserverpb_MemberAddResponse()
        result.members = change.members.map(Convert.member)
        result.member = Convert.member(change.added)
        result.header = member.header()
        return result
    }

    func memberRemove(request: Etcdserverpb_MemberRemoveRequest, context: ServerContext) async throws -> Etcdserverpb_MemberRemoveResponse {
        var result = Etcdserverpb_MemberRemoveResponse()
        result.members = try await store.removeMember(id: request.id).map(Convert.member)
        result.header = member.header()
        return result
    }

    func memberUpdate(request: Etcdserverpb_MemberUpdateRequest, context: ServerContext) async throws -> Etcdserverpb_MemberUpdateResponse {
        var result = Etcdserverpb_MemberUpdateResponse()
        result.members = try await store.updateMember(id: request.id, peerURLs: request.peerUrls).map(Convert.member)
        result.header = member.header()
        return result
    }

    func memberPromote(request: Etcdserverpb_MemberPromoteRequest, context: ServerContext) async throws -> Etcdserverpb_MemberPromoteResponse {
        var result = Etcdserverpb_MemberPromoteResponse()
        result.members = try await store.promoteMember(id: request.id).map(Convert.member)
        result.header = member.header()
        return result
    }
}
