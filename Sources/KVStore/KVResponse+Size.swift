/// What responses cost in memory, roughly: keys and values plus a fixed allowance for the
/// numbers around them. Used to bound what is gathered (``KVLimits/rangeResultBytesMax``) and
/// what is kept for callers, not to predict an encoding exactly.
extension KeyValue {
    /// Key, value, and 40 bytes for the revisions, version and lease.
    public var approximateBytes: Int { key.count + value.count + 40 }
}

extension KVResponse {
    /// The approximate bytes of the response; 64 for one with no keys.
    public var approximateBytes: Int {
        let headerBytes = 64
        switch self {
        case .range(let response): return headerBytes + response.kvs.reduce(0) { $0 + $1.approximateBytes }
        case .put(let response): return headerBytes + (response.prevKv?.approximateBytes ?? 0)
        case .deleteRange(let response): return headerBytes + response.prevKvs.reduce(0) { $0 + $1.approximateBytes }
        case .txn(let response): return headerBytes + response.responses.reduce(0) { $0 + $1.approximateBytes }
        case .leaseExpire(let response): return headerBytes + 8 * response.revoked.count
        case .alarm(let response): return headerBytes + 16 * response.alarms.count
        case .compaction, .leaseGrant, .leaseRevoke, .leaseCheckpoint, .memberAttributes, .error: return headerBytes
        }
    }
}

extension ResponseOp {
    public var approximateBytes: Int {
        switch self {
        case .range(let response): KVResponse.range(response).approximateBytes
        case .put(let response): KVResponse.put(response).approximateBytes
        case .deleteRange(let response): KVResponse.deleteRange(response).approximateBytes
        case .txn(let response): KVResponse.txn(response).approximateBytes
        }
    }
}

extension WatchEvent {
    /// The event's key-values and 8 bytes for its type.
    public var approximateBytes: Int { 8 + kv.approximateBytes + (prevKv?.approximateBytes ?? 0) }
}

// MARK: - What a request costs against the space quota

extension KVRequest {
    /// Bytes this request may add to the database, as etcd's backend quota counts them: a put
    /// costs its key, its value and 256 bytes of overhead; a txn the dearer of its two branches
    /// (nested txns included, which etcd leaves out); a lease grant 64 bytes; everything else
    /// nothing. Zero means the request never needs space, so a NOSPACE alarm lets it through.
    public var quotaCost: Int {
        switch self {
        case .put(let put): put.quotaCost
        case .txn(let txn): txn.quotaCost
        case .leaseGrant: 64
        case .range, .deleteRange, .compaction, .leaseRevoke, .leaseCheckpoint, .leaseExpire, .memberAttributes, .alarm: 0
        }
    }
}

extension PutRequest {
    var quotaCost: Int { 256 + key.count + value.count }
}

extension TxnRequest {
    var quotaCost: Int {
        func cost(_ operations: [RequestOp]) -> Int {
            operations.reduce(0) { total, operation in
                switch operation {
                case .put(let put): total + put.quotaCost
                case .txn(let nested): total + nested.quotaCost
                case .range, .deleteRange: total
                }
            }
        }
        return max(cost(success), cost(failure))
    }

    /// Whether either branch puts anything (and so is refused while a NOSPACE alarm stands).
    var addsData: Bool { quotaCost > 0 }
}
