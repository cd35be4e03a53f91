import KVStore
import NIOConcurrencyHelpers

/// Connects the store's applied events to watch streams (gRPC streams, and in-process watches): a ``WatchHub`` behind a lock,
/// cancellations routed to the stream that owns each watcher, and a wake-up per stream.
///
/// A client connection may have at most `watchersPerConnectionMax` watchers (over all its
/// streams), so that one client cannot take all `watchersMax` of the member; a stream may
/// cancel only its own watchers. History for new watchers is read mostly outside the state
/// machine's lock (see ``catchUp(stream:machine:)``).
///
/// Lock order: the state machine's lock, then this one (the last stretch of catch-up reads the
/// store's history under both).
public final class WatchBroker: @unchecked Sendable {
    // Everything below is guarded by `lock`.
    private let lock = NIOLock()
    private var hub: WatchHub
    private var owners: [Int64: Int] = [:]
    /// Each stream's watchers, ascending (the inverse of `owners`): a stream's drain looks at
    /// its own watchers only, not at every watcher of the member.
    private var watchersOf: [Int: [Int64]] = [:]
    private var wakeups: [Int: AsyncStream<Void>.Continuation] = [:]
    private var cancellations: [Int: [(id: Int64, reason: WatchHub.CancelReason)]] = [:]
    /// Watchers registered whose `created` answer has not been written yet: nothing of theirs
    /// (history, events, a cancellation) is drained before it, or a client would see a
    /// cancellation for a watch it does not know and then wait on it forever (etcd's clients
    /// drop answers for unknown watch IDs).
    private var announcing: Set<Int64> = []
    /// Each stream's client connection (``WireInbound/peer``) and each connection's streams.
    private var connectionOf: [Int: String] = [:]
    private var streamsOf: [String: Set<Int>] = [:]
    public let watchersPerConnectionMax: Int
    private var nextStream = 1
    /// The revision of the last batch handed to the hub: every event at or below it is either
    /// delivered or buffered in the hub.
    private var publishedRevision: Int64 = 0

    public init(bufferedEventsMax: Int = 1024, bufferedBytesMax: Int = 4 << 20, totalBufferedBytesMax: Int = 256 << 20,
                watchersMax: Int = 100_000, watchersPerConnectionMax: Int = 10_000) {
        precondition(watchersPerConnectionMax >= 1)
        hub = WatchHub(bufferedEventsMax: bufferedEventsMax, bufferedBytesMax: bufferedBytesMax,
                       totalBufferedBytesMax: totalBufferedBytesMax, watchersMax: watchersMax)
        self.watchersPerConnectionMax = watchersPerConnectionMax
    }

    /// A new stream of client `connection`: its number and the wake-ups it waits on.
    func openStream(connection: String) -> (stream: Int, wakeups: AsyncStream<Void>) {
        let (wakeups, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let stream = lock.withLock {
            let stream = nextStream
            nextStream += 1
            self.wakeups[stream] = continuation
            connectionOf[stream] = connection
            streamsOf[connection, default: []].insert(stream)
            return stream
        }
        return (stream, wakeups)
    }

    func closeStream(_ stream: Int) {
        let continuation = lock.withLock {
            if let connection = connectionOf.removeValue(forKey: stream) {
                streamsOf[connection]?.remove(stream)
                if streamsOf[connection]?.isEmpty == true { streamsOf[connection] = nil }
            }
            for id in watchersOf.removeValue(forKey: stream) ?? [] {
                hub.cancel(id)
                owners[id] = nil
                announcing.remove(id)
            }
            for cancelled in cancellations[stream] ?? [] { announcing.remove(cancelled.id) }
            _ = hub.takeCancellations()
            cancellations[stream] = nil
            return wakeups.removeValue(forKey: stream)
        }
        continuation?.finish()
    }

    /// Why a watch was not created, in etcd's words where etcd has them.
    enum Refusal: Error, Equatable {
        case memberFull
        case connectionFull(Int)

        var reason: String {
            switch self {
            case .memberFull: "etcdserver: too many watchers"
            case .connectionFull(let limit): "etcdserver: too many watchers on this connection (at most \(limit))"
            }
        }
    }

    /// Registers a watcher for `stream` (under the state machine's lock, for the store's
    /// revisions). Its history, if it asks for any, is read by ``catchUp(stream:machine:)``; nothing
    /// of it is drained until ``announced(_:stream:)``.
    func register(_ registration: WatchHub.Registration, stream: Int, store: KVStore) -> Result<Int64, Refusal> {
        lock.withLock {
            if let connection = connectionOf[stream] {
                let watching = streamsOf[connection, default: []].reduce(0) { $0 + (watchersOf[$1]?.count ?? 0) }
                if watching >= watchersPerConnectionMax { return .failure(.connectionFull(watchersPerConnectionMax)) }
            }
            guard let id = hub.register(registration, currentRevision: store.currentRevision, compactRevision: store.compactRevision) else {
                return .failure(.memberFull)
            }
            owners[id] = stream
            announcing.insert(id)
            watchersOf[stream, default: []].append(id)
            if let ids = watchersOf[stream], ids.count > 1, ids[ids.count - 2] > id { watchersOf[stream]!.sort() }
            routeCancellations()
            return .success(id)
        }
    }

    /// The `created` answer of watcher `id` is written: what it has may be drained now.
    func announced(_ id: Int64, stream: Int) {
        let continuation = lock.withLock {
            announcing.remove(id)
            return wakeups[stream]
        }
        continuation?.yield()
    }

    func wake(_ stream: Int) {
        let continuation = lock.withLock { wakeups[stream] }
        continuation?.yield()
    }

    /// A client's cancel: only `stream`'s own watchers; others' IDs are ignored.
    func cancel(_ id: Int64, stream: Int) {
        lock.withLock {
            guard owners[id] == stream else { return }
            hub.cancel(id)
            routeCancellations()
        }
    }

    /// Feeds `stream`'s watchers that still catch up on history: first in bulk from the state
    /// machine's second connection, outside its lock (applies go on meanwhile), then the last
    /// stretch, written while that ran, under the lock, where each watcher can go live knowing
    /// that nothing was published past what it read.
    func catchUp(stream: Int, machine: KVStateMachine) throws {
        let ids = lock.withLock { watchersOf[stream] ?? [] }
        for request in lock.withLock({ hub.historyRequests(among: ids) }) {
            // A failed bulk read costs nothing: the last stretch reads it all.
            guard let read = try? machine.readHistory({ store in
                (try store.history(from: request.from, key: request.key, rangeEnd: request.rangeEnd,
                                   eventsMax: request.eventsMax, bytesMax: request.bytesMax).map(\.events),
                 store.compactRevision)
            }) else { break }
            lock.withLock {
                hub.receiveHistory(request, events: read.0, compactRevision: read.1)
                routeCancellations()
            }
        }
        try machine.read { store in
            try lock.withLock {
                try hub.catchUp(from: store, among: ids)
                routeCancellations()
            }
        }
    }

    /// Delivers the events of one apply and wakes every stream.
    public func publish(_ events: [WatchEvent], revision: Int64) {
        let streams = lock.withLock {
            publishedRevision = max(publishedRevision, revision)
            hub.publish(events, revision: revision)
            routeCancellations()
            return Array(wakeups.values)
        }
        for continuation in streams { continuation.yield() }
    }

    /// What `stream`'s watchers have: events per watcher, cancellations, and whether any still
    /// catches up on history.
    func drain(stream: Int) -> (events: [(id: Int64, events: [WatchEvent])], cancelled: [(id: Int64, reason: WatchHub.CancelReason)], catchingUp: Bool) {
        lock.withLock {
            var events: [(Int64, [WatchEvent])] = []
            var catchingUp = false
            for id in watchersOf[stream] ?? [] where !announcing.contains(id) {
                let taken = hub.take(id)
                if !taken.isEmpty { events.append((id, taken)) }
                if hub.isCatchingUp(id) { catchingUp = true }
            }
            var cancelled: [(id: Int64, reason: WatchHub.CancelReason)] = []
            if let all = cancellations.removeValue(forKey: stream) {
                let waiting = all.filter { announcing.contains($0.id) }
                cancelled = all.filter { !announcing.contains($0.id) }
                if !waiting.isEmpty { cancellations[stream] = waiting }
            }
            return (events, cancelled, catchingUp)
        }
    }

    /// What ``nextBatch(stream:machine:)`` hands a stream: events per watcher, cancellations,
    /// and whether some watcher still catches up on history (then more follows at once).
    struct Batch {
        var events: [(id: Int64, events: [WatchEvent])]
        var cancelled: [(id: Int64, reason: WatchHub.CancelReason)]
        var catchingUp: Bool
    }

    /// What `stream`'s watchers have now; when that is nothing and some still catch up on
    /// history, the next stretch of it is read first (one stretch per call, so that what a
    /// stream holds stays within the hub's caps however long the history is).
    func nextBatch(stream: Int, machine: KVStateMachine) throws -> Batch {
        var drained = drain(stream: stream)
        if drained.events.isEmpty && drained.cancelled.isEmpty && drained.catchingUp {
            try catchUp(stream: stream, machine: machine)
            drained = drain(stream: stream)
        }
        return Batch(events: drained.events, cancelled: drained.cancelled, catchingUp: drained.catchingUp)
    }

    /// The revision up to which `stream`'s watchers in `ids` have been sent every event, for a
    /// progress notification, and which of them may be told so now: those with nothing buffered
    /// and no history left to replay (others are told once they are). `all` asks about every
    /// watcher of the stream (a client's progress request).
    func progress(stream: Int, ids: Set<Int64>?) -> (revision: Int64, ready: [Int64], allReady: Bool) {
        lock.withLock {
            var ready: [Int64] = []
            var allReady = true
            for id in watchersOf[stream] ?? [] {
                let synced = !announcing.contains(id) && !hub.isCatchingUp(id) && !hub.hasBuffered(id)
                if !synced { allReady = false }
                if synced, ids?.contains(id) ?? true { ready.append(id) }
            }
            return (publishedRevision, ready, allReady)
        }
    }

    /// Records the store's revision at start, before anything is published.
    public func start(at revision: Int64) {
        lock.withLock { publishedRevision = max(publishedRevision, revision) }
    }

    private func routeCancellations() {
        for cancellation in hub.takeCancellations() {
            guard let owner = owners.removeValue(forKey: cancellation.id) else { continue }
            watchersOf[owner]?.removeAll { $0 == cancellation.id }
            cancellations[owner, default: []].append(cancellation)
            wakeups[owner]?.yield()
        }
    }
}
