/// Fans the events of each apply out to registered watchers, each with a bounded buffer.
///
/// A watcher starting at a past revision is *catching up*: its history is read from the store a
/// buffer-full at a time, and once it reaches the store's revision it is *live* and
/// ``publish(_:revision:)`` appends new events to it. History is read in two ways: in bulk
/// outside the state machine's lock (``historyRequests(among:)`` and
/// ``receiveHistory(_:events:)``, from a second SQLite connection, never going live), and the
/// last stretch under it (``catchUp(from:among:)``), where a watcher goes live without missing an
/// event published meanwhile.
///
/// Buffers are bounded in events (``bufferedEventsMax``) and in bytes (``bufferedBytesMax`` per
/// watcher, at least one event; ``totalBufferedBytesMax`` for all): a live watcher past either
/// of its bounds, or the watcher holding the most when the total is past its bound, is
/// cancelled with ``CancelReason/slow(resumeRevision:)``, so a slow reader never stalls writes or
/// other watchers, holds no more memory than that, and can resume where it stopped. A watcher
/// asking for compacted history is cancelled with the compact revision, as in etcd.
///
/// Publishing looks only at the watchers whose key or range holds an event's key: single-key
/// watchers are found by key, and range watchers are grouped by range, so an apply costs its
/// events times the distinct ranges watched, not the number of watchers.
///
/// A value: the owner of the ``KVStore`` owns its hub and calls `publish` right after each `apply`.
public struct WatchHub: Sendable {
    public struct Registration: Sendable, Hashable {
        public var key: [UInt8]
        /// As ``RangeRequest/rangeEnd``.
        public var rangeEnd: [UInt8]
        /// The first revision to deliver; 0 for "after the current one".
        public var startRevision: Int64
        public var prevKv: Bool
        public var noPut: Bool
        public var noDelete: Bool

        public init(key: [UInt8], rangeEnd: [UInt8] = [], startRevision: Int64 = 0, prevKv: Bool = false,
                    noPut: Bool = false, noDelete: Bool = false) {
            self.key = key
            self.rangeEnd = rangeEnd
            self.startRevision = startRevision
            self.prevKv = prevKv
            self.noPut = noPut
            self.noDelete = noDelete
        }

        var range: KeyRange { KeyRange(key: key, rangeEnd: rangeEnd) }

        func admits(_ event: WatchEvent) -> Bool {
            switch event.type {
            case .put where noPut: false
            case .delete where noDelete: false
            default: range.contains(event.kv.key)
            }
        }

        /// The event as this watcher gets it.
        func delivered(_ event: WatchEvent) -> WatchEvent {
            guard !prevKv, event.prevKv != nil else { return event }
            var delivered = event
            delivered.prevKv = nil
            return delivered
        }
    }

    public enum CancelReason: Sendable, Hashable {
        /// The buffer overflowed; a new watch from `resumeRevision` misses nothing.
        case slow(resumeRevision: Int64)
        /// The history the watcher needs is compacted away.
        case compacted(compactRevision: Int64)
        case requested
    }

    struct Watcher: Sendable {
        var registration: Registration
        /// The next revision this watcher has not yet been given (kept up to date while catching
        /// up, and for live watchers that got events; a live watcher that got nothing may lag,
        /// which only matters for events published twice, and none are).
        var nextRevision: Int64
        var live: Bool
        var buffer: [WatchEvent] = []
        var bufferedBytes = 0
    }

    /// One bulk history read a catching-up watcher needs (see ``historyRequests(among:)``).
    public struct HistoryRequest: Sendable, Hashable {
        public var id: Int64
        public var from: Int64
        public var key: [UInt8]
        public var rangeEnd: [UInt8]
        public var eventsMax: Int
        public var bytesMax: Int
    }

    public let bufferedEventsMax: Int
    public let bufferedBytesMax: Int
    public let totalBufferedBytesMax: Int
    public let watchersMax: Int
    private var watchers: [Int64: Watcher] = [:]
    /// Watchers of a single key, by key.
    private var byKey: [[UInt8]: Set<Int64>] = [:]
    /// Watchers of a range, by range.
    private var byRange: [KeyRange: Set<Int64>] = [:]
    /// Bytes buffered by all watchers; invariant: the sum of their `bufferedBytes`.
    public private(set) var totalBufferedBytes = 0
    private var nextID: Int64 = 1
    private var cancellations: [(id: Int64, reason: CancelReason)] = []

    public init(bufferedEventsMax: Int = 1024, bufferedBytesMax: Int = 4 << 20, totalBufferedBytesMax: Int = 256 << 20,
                watchersMax: Int = 100_000) {
        precondition(bufferedEventsMax >= 1 && bufferedBytesMax >= 1 && watchersMax >= 1, "watch hub limits must be positive")
        precondition(totalBufferedBytesMax >= bufferedBytesMax, "the total bound holds at least one watcher's")
        self.bufferedEventsMax = bufferedEventsMax
        self.bufferedBytesMax = bufferedBytesMax
        self.totalBufferedBytesMax = totalBufferedBytesMax
        self.watchersMax = watchersMax
    }

    public var watcherCount: Int { watchers.count }

    /// Adds a watcher; nil when ``watchersMax`` are registered. A start revision below the
    /// compact revision gives an ID that is immediately cancelled with `.compacted`.
    public mutating func register(_ registration: Registration, currentRevision: Int64, compactRevision: Int64)
        -> Int64?
    {
        guard watchers.count < watchersMax else { return nil }
        let id = nextID
        nextID += 1
        let start = registration.startRevision > 0 ? registration.startRevision : currentRevision + 1
        if start < compactRevision {
            cancellations.append((id, .compacted(compactRevision: compactRevision)))
            return id
        }
        watchers[id] = Watcher(registration: registration, nextRevision: start, live: start > currentRevision)
        switch registration.range {
        case .single(let key): byKey[key, default: []].insert(id)
        case let range: byRange[range, default: []].insert(id)
        }
        return id
    }

    public mutating func cancel(_ id: Int64) {
        guard remove(id) else { return }
        cancellations.append((id, .requested))
    }

    /// Removes a watcher from every table; whether it was there.
    private mutating func remove(_ id: Int64) -> Bool {
        guard let watcher = watchers.removeValue(forKey: id) else { return false }
        totalBufferedBytes -= watcher.bufferedBytes
        switch watcher.registration.range {
        case .single(let key):
            byKey[key]?.remove(id)
            if byKey[key]?.isEmpty == true { byKey[key] = nil }
        case let range:
            byRange[range]?.remove(id)
            if byRange[range]?.isEmpty == true { byRange[range] = nil }
        }
        return true
    }

    /// Delivers the events of one apply, which brought the store to `revision`.
    public mutating func publish(_ events: [WatchEvent], revision: Int64) {
        var touched: Set<Int64> = []
        for event in events {
            if let ids = byKey[event.kv.key] { deliver(event, to: ids, touched: &touched) }
            for (range, ids) in byRange where range.contains(event.kv.key) { deliver(event, to: ids, touched: &touched) }
        }
        for id in touched {
            guard let watcher = watchers[id] else { continue }
            if watcher.buffer.count > bufferedEventsMax || (watcher.bufferedBytes > bufferedBytesMax && watcher.buffer.count > 1) {
                cancelSlow(id)
            } else {
                watchers[id]!.nextRevision = max(watcher.nextRevision, revision + 1)
            }
        }
        while totalBufferedBytes > totalBufferedBytesMax,
              let largest = watchers.max(by: { $0.value.bufferedBytes < $1.value.bufferedBytes })?.key
        {
            cancelSlow(largest)
        }
    }

    private mutating func deliver(_ event: WatchEvent, to ids: Set<Int64>, touched: inout Set<Int64>) {
        for id in ids {
            guard let watcher = watchers[id], watcher.live, event.kv.modRevision >= watcher.nextRevision,
                  watcher.registration.admits(event)
            else { continue }
            append(watcher.registration.delivered(event), to: id)
            touched.insert(id)
        }
    }

    private mutating func append(_ event: WatchEvent, to id: Int64) {
        let bytes = event.approximateBytes
        watchers[id]!.buffer.append(event)
        watchers[id]!.bufferedBytes += bytes
        totalBufferedBytes += bytes
    }

    /// Cancels a watcher that cannot keep up; a new watch from its first undelivered revision
    /// misses nothing.
    private mutating func cancelSlow(_ id: Int64) {
        guard let watcher = watchers[id] else { return }
        let resume = watcher.buffer.first?.kv.modRevision ?? watcher.nextRevision
        _ = remove(id)
        cancellations.append((id, .slow(resumeRevision: resume)))
    }

    /// Room left in a watcher's buffer, in events and bytes; nil when it has none.
    private func room(_ watcher: Watcher) -> (events: Int, bytes: Int)? {
        let events = bufferedEventsMax - watcher.buffer.count
        let bytes = bufferedBytesMax - watcher.bufferedBytes
        guard events > 0, bytes > 0 else { return nil }
        return (events, bytes)
    }

    /// The bulk history reads that catching-up watchers among `ids` (all if nil) with room need.
    public func historyRequests(among ids: [Int64]? = nil) -> [HistoryRequest] {
        (ids ?? watchers.keys.sorted()).compactMap { id in
            guard let watcher = watchers[id], !watcher.live, let room = room(watcher) else { return nil }
            return HistoryRequest(id: id, from: watcher.nextRevision, key: watcher.registration.key,
                                  rangeEnd: watcher.registration.rangeEnd, eventsMax: room.events, bytesMax: room.bytes)
        }
    }

    /// What a bulk read for `request` found (`.failure` when the history is compacted). The
    /// watcher never goes live here: only ``catchUp(from:among:)`` can tell that no event was
    /// published past what was read. A read for a watcher since cancelled or moved on is dropped.
    public mutating func receiveHistory(_ request: HistoryRequest, events: Result<[WatchEvent], KVError>, compactRevision: Int64) {
        guard let watcher = watchers[request.id], !watcher.live, watcher.nextRevision == request.from else { return }
        switch events {
        case .failure:
            _ = remove(request.id)
            cancellations.append((request.id, .compacted(compactRevision: compactRevision)))
        case .success(let events):
            for event in events where watcher.registration.admits(event) {
                append(watcher.registration.delivered(event), to: request.id)
            }
            if let last = events.last { watchers[request.id]!.nextRevision = last.kv.modRevision + 1 }
        }
    }

    /// Feeds catching-up watchers among `ids` (all if nil) from the store's history, at most a
    /// buffer's worth each; a watcher that reaches the store's revision goes live. Call with the
    /// store that `publish` follows, under the lock that orders its applies.
    public mutating func catchUp(from store: KVStore, among ids: [Int64]? = nil) throws {
        for request in historyRequests(among: ids) {
            let read = try store.history(from: request.from, key: request.key, rangeEnd: request.rangeEnd,
                                         eventsMax: request.eventsMax, bytesMax: request.bytesMax)
            receiveHistory(request, events: read.map(\.events), compactRevision: store.compactRevision)
            // Every event up to the store's revision read (and no publish can come between):
            // from now on the watcher takes what is published.
            guard case .success(let history) = read, history.complete, watchers[request.id] != nil else { continue }
            watchers[request.id]!.nextRevision = store.currentRevision + 1
            watchers[request.id]!.live = true
        }
    }

    /// Whether `id` has events waiting to be taken.
    public func hasBuffered(_ id: Int64) -> Bool {
        !(watchers[id]?.buffer.isEmpty ?? true)
    }

    /// Whether a watcher is still catching up on history.
    public func isCatchingUp(_ id: Int64) -> Bool {
        watchers[id].map { !$0.live } ?? false
    }

    /// Takes the buffered events of a watcher (empty for unknown IDs).
    public mutating func take(_ id: Int64) -> [WatchEvent] {
        guard let watcher = watchers[id], !watcher.buffer.isEmpty else { return [] }
        totalBufferedBytes -= watcher.bufferedBytes
        watchers[id]!.buffer = []
        watchers[id]!.bufferedBytes = 0
        return watcher.buffer
    }

    /// Takes the cancellations since the last call, in order.
    public mutating func takeCancellations() -> [(id: Int64, reason: CancelReason)] {
        defer { cancellations = [] }
        return cancellations
    }
}
