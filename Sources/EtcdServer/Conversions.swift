import EtcdAPI
import Foundation
import GRPCCore
import KVStore
import Store

/// Translations between the etcd protobuf messages and the store's own types.
enum Convert {
    static func bytes(_ data: Data) -> [UInt8] { Array(data) }

    static func range(_ request: Etcdserverpb_RangeRequest) -> RangeRequest {
        RangeRequest(
            key: bytes(request.key), rangeEnd: bytes(request.rangeEnd), limit: request.limit, revision: request.revision,
            sortOrder: RangeRequest.SortOrder(rawValue: UInt8(clamping: request.sortOrder.rawValue)) ?? .none,
            sortTarget: RangeRequest.SortTarget(rawValue: UInt8(clamping: request.sortTarget.rawValue)) ?? .key,
            serializable: request.serializable, keysOnly: request.keysOnly, countOnly: request.countOnly,
            minModRevision: request.minModRevision, maxModRevision: request.maxModRevision,
            minCreateRevision: request.minCreateRevision, maxCreateRevision: request.maxCreateRevision)
    }

    static func put(_ request: Etcdserverpb_PutRequest) -> PutRequest {
        PutRequest(key: bytes(request.key), value: bytes(request.value), lease: request.lease, prevKv: request.prevKv,
                   ignoreValue: request.ignoreValue, ignoreLease: request.ignoreLease)
    }

    static func delete(_ request: Etcdserverpb_DeleteRangeRequest) -> DeleteRangeRequest {
        DeleteRangeRequest(key: bytes(request.key), rangeEnd: bytes(request.rangeEnd), prevKv: request.prevKv)
    }

    static func txn(_ request: Etcdserverpb_TxnRequest) throws -> TxnRequest {
        TxnRequest(
            compare: try request.compare.map(compare),
            success: try request.success.map(operation),
            failure: try request.failure.map(operation))
    }

    static func compare(_ compare: Etcdserverpb_Compare) throws -> Compare {
        let target: Compare.Target
        switch compare.target {
        case .version: target = .version(compare.version)
        case .create: target = .createRevision(compare.createRevision)
        case .mod: target = .modRevision(compare.modRevision)
        case .value: target = .value(bytes(compare.value))
        case .lease: target = .lease(compare.lease)
        case .UNRECOGNIZED(let raw): throw RPCError(code: .invalidArgument, message: "etcdserver: unknown compare target \(raw)")
        }
        let result: Compare.Result
        switch compare.result {
        case .equal: result = .equal
        case .greater: result = .greater
        case .less: result = .less
        case .notEqual: result = .notEqual
        case .UNRECOGNIZED(let raw): throw RPCError(code: .invalidArgument, message: "etcdserver: unknown compare result \(raw)")
        }
        return Compare(key: bytes(compare.key), rangeEnd: bytes(compare.rangeEnd), target: target, result: result)
    }

    static func operation(_ operation: Etcdserverpb_RequestOp) throws -> RequestOp {
        switch operation.request {
        case .requestRange(let range): return .range(Convert.range(range))
        case .requestPut(let put): return .put(Convert.put(put))
        case .requestDeleteRange(let delete): return .deleteRange(Convert.delete(delete))
        case .requestTxn(let txn): return .txn(try Convert.txn(txn))
        case nil: throw RPCError(code: .invalidArgument, message: "etcdserver: empty request op")
        }
    }

    static func header(_ header: ResponseHeader, _ context: HeaderContext) -> Etcdserverpb_ResponseHeader {
        var result = Etcdserverpb_ResponseHeader()
        result.clusterID = context.clusterID
        result.memberID = context.memberID
        result.raftTerm = context.raftTerm
        result.revision = header.revision
        return result
    }

    static func keyValue(_ kv: KeyValue) -> Mvccpb_KeyValue {
        var result = Mvccpb_KeyValue()
        result.key = Data(kv.key)
        result.createRevision = kv.createRevision
        result.modRevision = kv.modRevision
        result.version = kv.version
        result.value = Data(kv.value)
        result.lease = kv.lease
        return result
    }

    static func rangeResponse(_ response: RangeResponse, _ context: HeaderContext) -> Etcdserverpb_RangeResponse {
        var result = Etcdserverpb_RangeResponse()
        result.header = header(response.header, context)
        result.kvs = response.kvs.map(keyValue)
        result.more = response.more
        result.count = response.count
        return result
    }

    static func putResponse(_ response: PutResponse, _ context: HeaderContext) -> Etcdserverpb_PutResponse {
        var result = Etcdserverpb_PutResponse()
        result.header = header(response.header, context)
        if let previous = response.prevKv { result.prevKv = keyValue(previous) }
        return result
    }

    static func deleteResponse(_ response: DeleteRangeResponse, _ context: HeaderContext) -> Etcdserverpb_DeleteRangeResponse {
        var result = Etcdserverpb_DeleteRangeResponse()
        result.header = header(response.header, context)
        result.deleted = response.deleted
        result.prevKvs = response.prevKvs.map(keyValue)
        return result
    }

    static func txnResponse(_ response: TxnResponse, _ context: HeaderContext) -> Etcdserverpb_TxnResponse {
        var result = Etcdserverpb_TxnResponse()
        result.header = header(response.header, context)
        result.succeeded = response.succeeded
        result.responses = response.responses.map { operation in
            var op = Etcdserverpb_ResponseOp()
            switch operation {
            case .range(let range): op.response = .responseRange(rangeResponse(range, context))
            case .put(let put): op.response = .responsePut(putResponse(put, context))
            case .deleteRange(let delete): op.response = .responseDeleteRange(deleteResponse(delete, context))
            case .txn(let txn): op.response = .responseTxn(txnResponse(txn, context))
            }
            return op
        }
        return result
    }

    static func alarm(_ alarm: AlarmMember) -> Etcdserverpb_AlarmMember {
        var member = Etcdserverpb_AlarmMember()
        member.memberID = alarm.memberID
        member.alarm = Etcdserverpb_AlarmType(rawValue: Int(alarm.alarm.rawValue)) ?? .none
        return member
    }

    static func member(_ member: ClusterMember) -> Etcdserverpb_Member {
        var entry = Etcdserverpb_Member()
        entry.id = member.id
        entry.name = member.name
        entry.peerUrls = member.peerURLs
        entry.clientUrls = member.clientURLs
        entry.isLearner = member.isLearner
        return entry
    }

    static func member(_ entry: Etcdserverpb_Member) -> ClusterMember {
        ClusterMember(id: entry.id, name: entry.name, peerURLs: entry.peerUrls, clientURLs: entry.clientUrls, isLearner: entry.isLearner)
    }
}

/// What every response header carries besides the revision.
struct HeaderContext: Sendable {
    var clusterID: UInt64
    var memberID: UInt64
    var raftTerm: UInt64
}
