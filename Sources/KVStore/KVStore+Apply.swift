extension KVStore {
    /// The revision a write request writes at, and its sub-revision counter.
    struct WriteContext {
        /// The store revision before the request.
        let baseRevision: Int64
        /// Writes made so far; each takes the next sub-revision.
        private(set) var writes: Int64 = 0

        init(baseRevision: Int64) {
            self.baseRevision = baseRevision
        }

        /// Every write of one request shares this revision.
        var writeRevision: Int64 { baseRevision + 1 }
        /// The store revision once the request is done: bumped only if something was written.
        var finalRevision: Int64 { writes > 0 ? writeRevision : baseRevision }

        mutating func nextSub() -> Int64 {
            defer { writes += 1 }
            return writes
        }
    }

    /// Executes one request. etcd's refusals are thrown as ``KVError`` and turned into `.error`
    /// (after the savepoint is rolled back) by the caller.
    func execute(_ request: KVRequest, index: UInt64) throws -> KVResponse {
        if let refusal = refusalUnderAlarm(request) { throw refusal }
        switch request {
        case .range(let range):
            return .range(try self.range(range, current: state.currentRevision, visibleRevision: state.currentRevision))
        case .put(let put):
            var context = WriteContext(baseRevision: state.currentRevision)
            var response = try self.put(put, &context)
            response.header.revision = commit(context)
            return .put(response)
        case .deleteRange(let delete):
            var context = WriteContext(baseRevision: state.currentRevision)
            var response = try deleteRange(delete, &context)
            response.header.revision = commit(context)
            return .deleteRange(response)
        case .txn(let txn):
            try KVStore.validate(txn, depth: 1, limits: limits)
            var context = WriteContext(baseRevision: state.currentRevision)
            let response = try self.txn(txn, &context)
            return .txn(response.stamped(revision: commit(context)))
        case .compaction(let compaction):
            try compact(compaction.revision)
            return .compaction(CompactionResponse(header: ResponseHeader(revision: state.currentRevision)))
        case .leaseGrant(let grant):
            return .leaseGrant(try leaseGrant(grant, index: index))
        case .leaseRevoke(let revoke):
            guard try leaseStatus(revoke.id) != nil else { throw KVError.leaseNotFound }
            try leaseRevoke(revoke.id)
            return .leaseRevoke(LeaseRevokeResponse(header: ResponseHeader(revision: state.currentRevision)))
        case .leaseCheckpoint(let checkpoint):
            let statement = try database.statement("UPDATE leases SET remaining_ttl = ?2 WHERE id = ?1")
            for entry in checkpoint.checkpoints {
                try statement.bind(1, entry.id)
                try statement.bind(2, max(entry.remainingTTL, 0))
                try statement.run()
            }
            return .leaseCheckpoint(ResponseHeader(revision: state.currentRevision))
        case .leaseExpire(let expire):
            var revoked: [Int64] = []
            for id in expire.ids {
                guard try leaseStatus(id) != nil else { continue }
                try leaseRevoke(id)
                revoked.append(id)
            }
            return .leaseExpire(LeaseExpireResponse(header: ResponseHeader(revision: state.currentRevision),
                                                    revoked: revoked))
        case .memberAttributes(let member):
            try saveMember(member)
            return .memberAttributes(ResponseHeader(revision: state.currentRevision))
        case .alarm(let alarm):
            return .alarm(AlarmResponse(header: ResponseHeader(revision: state.currentRevision), alarms: try change(alarm)))
        }
    }

    /// What a standing alarm refuses, as etcd's capped and corrupt appliers do: with NOSPACE,
    /// every request that adds data (a put, a txn with a put in any branch, a lease grant);
    /// with CORRUPT, every change to the keyspace or the leases. Deletes, compactions, revokes
    /// and expiries still run under NOSPACE: they are how space is won back.
    func refusalUnderAlarm(_ request: KVRequest) -> KVError? {
        guard !state.alarms.isEmpty else { return nil }
        let types = Set(state.alarms.map(\.alarm))
        if types.contains(.corrupt) {
            switch request {
            case .put, .deleteRange, .txn, .compaction, .leaseGrant, .leaseRevoke: return .corrupt
            case .range, .leaseCheckpoint, .leaseExpire, .memberAttributes, .alarm: break
            }
        }
        if types.contains(.noSpace) {
            switch request {
            case .put, .leaseGrant: return .noSpace
            case .txn(let txn) where txn.addsData: return .noSpace
            default: break
            }
        }
        return nil
    }

    /// Raises or clears one alarm; the alarms changed (none when it was already so).
    private func change(_ request: AlarmRequest) throws -> [AlarmMember] {
        let alarm = request.member
        guard alarm.alarm != .none else { return [] }
        switch request.action {
        case .activate:
            guard state.alarms.insert(alarm).inserted else { return [] }
            let statement = try database.statement("INSERT OR REPLACE INTO meta (name, value) VALUES (?1, 1)")
            try statement.bind(1, KVStore.metaName(of: alarm))
            try statement.run()
        case .deactivate:
            guard state.alarms.remove(alarm) != nil else { return [] }
            let statement = try database.statement("DELETE FROM meta WHERE name = ?1")
            try statement.bind(1, KVStore.metaName(of: alarm))
            try statement.run()
        }
        return [alarm]
    }

    /// Ends a write request: the store revision becomes the request's, if it wrote anything.
    private func commit(_ context: WriteContext) -> Int64 {
        precondition(context.baseRevision == state.currentRevision, "write context from another revision")
        state.currentRevision = context.finalRevision
        return state.currentRevision
    }

    // MARK: - Rows

    /// Appends a row to `kv` and its version to the index (taken back if the request or batch
    /// is rolled back).
    private func insertRow(key: [UInt8], revision: Int64, sub: Int64, tombstone: Bool, createRevision: Int64,
                           version: Int64, value: [UInt8], lease: Int64) throws {
        let statement = try database.statement("""
            INSERT INTO kv (rowid, key, revision, sub, tombstone, create_revision, version, value, lease)
            VALUES (?9, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
            """)
        let rowID = state.nextRowID
        try statement.bind(1, key)
        try statement.bind(2, revision)
        try statement.bind(3, sub)
        try statement.bind(4, tombstone ? 1 : 0)
        try statement.bind(5, createRevision)
        try statement.bind(6, version)
        try statement.bind(7, value)
        try statement.bind(8, lease)
        try statement.bind(9, rowID)
        try statement.run()
        state.nextRowID += 1
        index.append(IndexedVersion(revision: revision, sub: sub, rowID: rowID, tombstone: tombstone,
                                    createRevision: createRevision, version: version, lease: lease), to: key)
        appendedKeys.append(key)
    }

    private func attach(_ key: [UInt8], to lease: Int64) throws {
        let statement = try database.statement("INSERT OR IGNORE INTO lease_keys (lease, key) VALUES (?1, ?2)")
        try statement.bind(1, lease)
        try statement.bind(2, key)
        try statement.run()
    }

    private func detach(_ key: [UInt8], from lease: Int64) throws {
        let statement = try database.statement("DELETE FROM lease_keys WHERE lease = ?1 AND key = ?2")
        try statement.bind(1, lease)
        try statement.bind(2, key)
        try statement.run()
    }

    // MARK: - Put and delete

    func put(_ request: PutRequest, _ context: inout WriteContext) throws -> PutResponse {
        guard !request.key.isEmpty else { throw KVError.emptyKey }
        if request.ignoreValue && !request.value.isEmpty { throw KVError.valueProvided }
        if request.ignoreLease && request.lease != 0 { throw KVError.leaseProvided }
        let previous = try liveVersion(of: request.key, at: context.writeRevision)
        if (request.ignoreValue || request.ignoreLease) && previous == nil { throw KVError.keyNotFound }
        let value = request.ignoreValue ? previous?.value ?? [] : request.value
        let lease = request.ignoreLease ? previous?.lease ?? 0 : request.lease
        if lease != 0, try leaseStatus(lease) == nil { throw KVError.leaseNotFound }

        let sub = context.nextSub()
        let keyValue = KeyValue(
            key: request.key, createRevision: previous?.createRevision ?? context.writeRevision,
            modRevision: context.writeRevision, version: (previous?.version ?? 0) + 1, value: value, lease: lease)
        try insertRow(key: keyValue.key, revision: keyValue.modRevision, sub: sub, tombstone: false,
                      createRevision: keyValue.createRevision, version: keyValue.version, value: value, lease: lease)
        if let previous, previous.lease != 0, previous.lease != lease {
            try detach(request.key, from: previous.lease)
        }
        if lease != 0 {
            try attach(request.key, to: lease)
        }
        pendingEvents.append(WatchEvent(type: .put, kv: keyValue, prevKv: previous))
        return PutResponse(header: ResponseHeader(revision: 0), prevKv: request.prevKv ? previous : nil)
    }

    func deleteRange(_ request: DeleteRangeRequest, _ context: inout WriteContext) throws -> DeleteRangeResponse {
        guard !request.key.isEmpty else { throw KVError.emptyKey }
        var victims: [KeyValue] = []
        try forEachLive(in: KeyRange(key: request.key, rangeEnd: request.rangeEnd), at: context.writeRevision,
                        withValues: true) { keyValue in
            victims.append(keyValue)
            return true
        }
        for victim in victims {
            try delete(victim, &context)
        }
        return DeleteRangeResponse(header: ResponseHeader(revision: 0), deleted: Int64(victims.count),
                                   prevKvs: request.prevKv ? victims : [])
    }

    /// Writes the tombstone of a live key.
    private func delete(_ victim: KeyValue, _ context: inout WriteContext) throws {
        let sub = context.nextSub()
        try insertRow(key: victim.key, revision: context.writeRevision, sub: sub, tombstone: true, createRevision: 0,
                      version: 0, value: [], lease: 0)
        if victim.lease != 0 {
            try detach(victim.key, from: victim.lease)
        }
        pendingEvents.append(WatchEvent(
            type: .delete,
            kv: KeyValue(key: victim.key, createRevision: 0, modRevision: context.writeRevision, version: 0,
                         value: [], lease: 0),
            prevKv: victim))
    }

    // MARK: - Txn

    /// etcd's static checks of a txn, before anything runs: operation counts at every level and
    /// the duplicate-key rule.
    static func validate(_ txn: TxnRequest, depth: Int, limits: KVLimits) throws {
        guard depth <= limits.txnNestingDepthMax else { throw KVError.tooManyOperations }
        let operationsMax = limits.txnOperationsMax
        if txn.compare.count > operationsMax || txn.success.count > operationsMax || txn.failure.count > operationsMax {
            throw KVError.tooManyOperations
        }
        for operation in txn.success + txn.failure {
            if case .txn(let nested) = operation {
                try validate(nested, depth: depth + 1, limits: limits)
            }
        }
        if depth == 1 {
            _ = try KVStore.writtenKeys(txn.success)
            _ = try KVStore.writtenKeys(txn.failure)
        }
    }

    /// etcd's `checkIntervals`: within one branch (and the branches nested in it) no key may be
    /// put twice, nor put and deleted. Puts in the success and failure branches of one nested txn
    /// may repeat each other, since only one of them runs. Deletes may overlap each other.
    static func writtenKeys(_ operations: [RequestOp]) throws -> (puts: Set<[UInt8]>, deletes: [KeyRange]) {
        var deletes: [KeyRange] = []
        for case .deleteRange(let delete) in operations {
            deletes.append(KeyRange(key: delete.key, rangeEnd: delete.rangeEnd))
        }
        func deleted(_ key: [UInt8]) -> Bool { deletes.contains { $0.contains(key) } }
        var puts: Set<[UInt8]> = []
        for case .txn(let nested) in operations {
            let success = try writtenKeys(nested.success)
            let failure = try writtenKeys(nested.failure)
            for key in success.puts {
                if puts.contains(key) || deleted(key) { throw KVError.duplicateKey }
                puts.insert(key)
            }
            for key in failure.puts {
                if (puts.contains(key) && !success.puts.contains(key)) || deleted(key) { throw KVError.duplicateKey }
                puts.insert(key)
            }
            deletes += success.deletes + failure.deletes
        }
        for case .put(let put) in operations {
            if puts.contains(put.key) || deleted(put.key) { throw KVError.duplicateKey }
            puts.insert(put.key)
        }
        return (puts, deletes)
    }

    func txn(_ request: TxnRequest, _ context: inout WriteContext) throws -> TxnResponse {
        var succeeded = true
        for condition in request.compare {
            if try !holds(condition, at: context.writeRevision) {
                succeeded = false
                break
            }
        }
        var responses: [ResponseOp] = []
        for operation in succeeded ? request.success : request.failure {
            switch operation {
            case .range(let range):
                // Reads see the txn's own earlier writes, but may name only revisions that
                // existed before it, as in etcd.
                responses.append(.range(try self.range(range, current: context.baseRevision,
                                                       visibleRevision: context.writeRevision)))
            case .put(let put):
                responses.append(.put(try self.put(put, &context)))
            case .deleteRange(let delete):
                responses.append(.deleteRange(try deleteRange(delete, &context)))
            case .txn(let nested):
                responses.append(.txn(try txn(nested, &context)))
            }
        }
        return TxnResponse(header: ResponseHeader(revision: 0), succeeded: succeeded, responses: responses)
    }

    /// etcd's `applyCompare`: every key in the range must satisfy the condition; an empty range
    /// compares as a key with everything 0, except that a value comparison then fails.
    private func holds(_ condition: Compare, at revision: Int64) throws -> Bool {
        var found = false
        var allHold = true
        let needsValue: Bool
        if case .value = condition.target { needsValue = true } else { needsValue = false }
        try forEachLive(in: KeyRange(key: condition.key, rangeEnd: condition.rangeEnd), at: revision,
                        withValues: needsValue) { keyValue in
            found = true
            allHold = KVStore.compare(keyValue, condition)
            return allHold
        }
        if found { return allHold }
        if needsValue { return false }
        return KVStore.compare(KeyValue(key: condition.key, createRevision: 0, modRevision: 0, version: 0, value: [],
                                        lease: 0), condition)
    }

    static func compare(_ keyValue: KeyValue, _ condition: Compare) -> Bool {
        // The sign of (stored - operand), as etcd's compareKV.
        let sign: Int
        func signum(_ stored: Int64, _ operand: Int64) -> Int { stored == operand ? 0 : (stored < operand ? -1 : 1) }
        switch condition.target {
        case .version(let operand): sign = signum(keyValue.version, operand)
        case .createRevision(let operand): sign = signum(keyValue.createRevision, operand)
        case .modRevision(let operand): sign = signum(keyValue.modRevision, operand)
        case .lease(let operand): sign = signum(keyValue.lease, operand)
        case .value(let operand):
            sign = keyValue.value == operand ? 0 : (keyValue.value.lexicographicallyPrecedes(operand) ? -1 : 1)
        }
        switch condition.result {
        case .equal: return sign == 0
        case .greater: return sign > 0
        case .less: return sign < 0
        case .notEqual: return sign != 0
        }
    }

    // MARK: - Compaction

    /// Drops every version that no read at or after `revision` can see: for each key, all but the
    /// newest version at or below `revision`, and that one too if it is a deletion.
    /// Compaction as applied: only the compact revision moves (reads below it are refused from
    /// this entry on, alike on every replica). The rows it makes unreachable are removed later,
    /// a window of revisions at a time, by ``compactStep(revisionsMax:)``: one statement over
    /// the whole history held the apply thread (and every client) for 28 s after
    /// `etcdctl check perf --load=l`.
    func compact(_ revision: Int64) throws {
        if revision <= state.compactRevision { throw KVError.compacted }
        if revision > state.currentRevision { throw KVError.futureRevision }
        state.compactRevision = revision
    }

    // MARK: - Leases

    private func leaseGrant(_ request: LeaseGrantRequest, index: UInt64) throws -> LeaseGrantResponse {
        if request.ttl > limits.leaseTTLSecondsMax { throw KVError.leaseTTLTooLarge }
        if state.leaseCount >= limits.leasesMax { throw KVError.tooManyLeases }
        let ttl = max(request.ttl, limits.leaseTTLSecondsMin)
        let id: Int64
        if request.id != 0 {
            if try leaseStatus(request.id) != nil { throw KVError.leaseExists }
            id = request.id
        } else {
            id = try generatedLeaseID(index: index)
        }
        let statement = try database.statement("INSERT INTO leases (id, ttl, remaining_ttl) VALUES (?1, ?2, 0)")
        try statement.bind(1, id)
        try statement.bind(2, ttl)
        try statement.run()
        state.leaseCount += 1
        return LeaseGrantResponse(header: ResponseHeader(revision: state.currentRevision), id: id, ttl: ttl)
    }

    /// Candidate IDs ``generatedLeaseID(index:)`` tries before it gives up.
    static let generatedLeaseIDAttemptsMax = 64

    /// A positive lease ID derived from the Raft index (SplitMix64), the same on every replica,
    /// and spread out like etcd's so that IDs from different clusters rarely collide.
    ///
    /// The candidates are predictable (the index is public), so a client may have granted all of
    /// them with explicit IDs. That is a state clients can create, so it is a refusal, identical on
    /// every replica, never a trap: etcd answers a colliding ID with "lease already exists" too.
    private func generatedLeaseID(index: UInt64) throws -> Int64 {
        for id in KVStore.generatedLeaseIDCandidates(index: index) {
            if try leaseStatus(id) == nil { return id }
        }
        throw KVError.leaseExists
    }

    /// The IDs ``generatedLeaseID(index:)`` tries at `index`, in order: positive, never 0.
    static func generatedLeaseIDCandidates(index: UInt64) -> [Int64] {
        var candidates: [Int64] = []
        var seed = index
        for _ in 0..<generatedLeaseIDAttemptsMax {
            seed &+= 0x9E37_79B9_7F4A_7C15
            var mixed = seed
            mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
            mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
            mixed ^= mixed >> 31
            let id = Int64(bitPattern: mixed & 0x7FFF_FFFF_FFFF_FFFF)
            if id != 0 { candidates.append(id) }
        }
        return candidates
    }

    /// Deletes the lease and, in one new revision, every key attached to it.
    private func leaseRevoke(_ id: Int64) throws {
        var context = WriteContext(baseRevision: state.currentRevision)
        for key in try leaseKeys(id) {
            if let live = try liveVersion(of: key, at: context.writeRevision) {
                try delete(live, &context)
            }
        }
        for sql in ["DELETE FROM lease_keys WHERE lease = ?1", "DELETE FROM leases WHERE id = ?1"] {
            let statement = try database.statement(sql)
            try statement.bind(1, id)
            try statement.run()
        }
        state.leaseCount -= 1
        _ = commit(context)
    }
}

extension TxnResponse {
    /// The response with every header, nested ones included, set to `revision`.
    func stamped(revision: Int64) -> TxnResponse {
        var response = self
        response.header.revision = revision
        response.responses = responses.map { operation in
            switch operation {
            case .range(var range):
                range.header.revision = revision
                return .range(range)
            case .put(var put):
                put.header.revision = revision
                return .put(put)
            case .deleteRange(var delete):
                delete.header.revision = revision
                return .deleteRange(delete)
            case .txn(let nested):
                return .txn(nested.stamped(revision: revision))
            }
        }
        return response
    }
}

extension KVRequest {
    /// The checks etcd makes before proposing (request size, empty keys, txn operation counts
    /// and duplicate keys), for the shell to refuse a request without a trip through Raft.
    /// `apply` repeats the ones that decide its answers, so skipping this changes no outcome.
    public func validate(limits: KVLimits = .default, encodedBytes: Int? = nil) -> KVError? {
        if (encodedBytes ?? encoded().count) > limits.requestBytesMax { return .requestTooLarge }
        switch self {
        case .range(let range) where range.key.isEmpty: return .emptyKey
        case .put(let put):
            if put.key.isEmpty { return .emptyKey }
            if put.ignoreValue && !put.value.isEmpty { return .valueProvided }
            if put.ignoreLease && put.lease != 0 { return .leaseProvided }
        case .deleteRange(let delete) where delete.key.isEmpty: return .emptyKey
        case .txn(let txn):
            do {
                try KVStore.validate(txn, depth: 1, limits: limits)
            } catch {
                return error as? KVError ?? .tooManyOperations
            }
        case .leaseGrant(let grant) where grant.ttl > limits.leaseTTLSecondsMax: return .leaseTTLTooLarge
        default: break
        }
        return nil
    }
}
