/// Fans the events of each apply out to registered watchers, each with a bounded buffer.
///
/// A watcher starting at a past revision is *catching up*: ``catchUp(from:)`` feeds it from the
/// store's history a buffer-full at a time, and once it reaches the store's revision it is
/// *live* and ``publish(_:revision:)`` appends new events to it. A live watcher whose buffer
/// would exceed ``bufferedEventsMax`` is cancelled with ``CancelReason/slow(resumeRevision:)``,
/// so a slow reader never stalls writes or other watchers and can resume where it stopped. A
/// watcher asking for compacted history is cancelled with the compact revision, as in etcd.
///
/// A value: the actor that owns the ``KVStore`` owns its hub and calls
/// `publish` right after each `apply`.
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

        func admits(_ event: WatchEvent) -> Bool {
            switch event.type {
            case .put where noPut: false
            case .delete where noDelete: false
            default: KeyRange(key: key, rangeEnd: rangeEnd).contains(event.kv.key)
            }
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
        /// The next revision this watcher has not yet been given.
        var nextRevision: Int64
        var live: Bool
        var buffer: [WatchEvent] = []
    }

    public let bufferedEventsMax: Int
    public let watchersMax: Int
    private var watchers: [Int64: Watcher] = [:]
    private var nextID: Int64 = 1
    private var cancellations: [(id: Int64, reason: CancelReason)] = []

    public init(bufferedEventsMax: Int = 1024, watchersMax: Int = 100_000) {
        precondition(bufferedEventsMax >= 1 && watchersMax >= 1, "watch hub limits must be positive")
        self.bufferedEventsMax = bufferedEventsMax
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
        return id
    }

    public mutating func cancel(_ id: Int64) {
        guard watchers.removeValue(forKey: id) != nil else { return }
        cancellations.append((id, .requested))
    }

    /// Delivers the events of one apply, which brought the store to `revision`.
    public mutating func publish(_ events: [WatchEvent], revision: Int64) {
        for (id, watcher) in watchers where watcher.live {
            var watcher = watcher
            for event in events where event.kv.modRevision >= watcher.nextRevision && watcher.registration.admits(event) {
                var delivered = event
                if !watcher.registration.prevKv { delivered.prevKv = nil }
                watcher.buffer.append(delivered)
            }
            if watcher.buffer.count > bufferedEventsMax {
                let resume = watcher.buffer.first?.kv.modRevision ?? watcher.nextRevision
                watchers[id] = nil
                cancellations.append((id, .slow(resumeRevision: resume)))
                continue
            }
            watcher.nextRevision = max(watcher.nextRevision, revision + 1)
            watchers[id] = watcher
        }
    }

    /// Feeds catching-up watchers from the store's history, at most a buffer's worth each; a
    /// watcher that reaches the store's revision goes live.
    public mutating func catchUp(from store: KVStore) throws {
        for (id, watcher) in watchers.filter({ !$0.value.live }).sorted(by: { $0.key < $1.key }) {
            var watcher = watcher
            let room = bufferedEventsMax - watcher.buffer.count
            guard room > 0 else { continue }
            let registration = watcher.registration
            switch try store.events(from: watcher.nextRevision, key: registration.key, rangeEnd: registration.rangeEnd,
                                    eventsMax: room) {
            case .failure:
                watchers[id] = nil
                cancellations.append((id, .compacted(compactRevision: store.compactRevision)))
                continue
            case .success(let events):
                for event in events where registration.admits(event) {
                    var delivered = event
                    if !registration.prevKv { delivered.prevKv = nil }
                    watcher.buffer.append(delivered)
                }
                if let last = events.last {
                    watcher.nextRevision = last.kv.modRevision + 1
                }
                // Fewer events than asked for means the history is exhausted up to now.
                if events.count < room || watcher.nextRevision > store.currentRevision {
                    watcher.nextRevision = store.currentRevision + 1
                    watcher.live = true
                }
            }
            watchers[id] = watcher
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
        guard var watcher = watchers[id] else { return [] }
        defer {
            watcher.buffer = []
            watchers[id] = watcher
        }
        return watcher.buffer
    }

    /// Takes the cancellations since the last call, in order.
    public mutating func takeCancellations() -> [(id: Int64, reason: CancelReason)] {
        defer { cancellations = [] }
        return cancellations
    }
}
