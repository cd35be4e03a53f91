import Foundation
import Resources

/// A local, indexed copy of one kind's objects kept current by list-then-watch (client-go's
/// shared informer): it lists (in pages), watches from the list's resourceVersion with
/// bookmarks, watches again from the last version it saw when a watch ends, and lists again
/// when the server answers 410 (that version was compacted). Subscribers get every change.
public actor Informer<T: APIObject> {
    public enum Event: Sendable {
        case added(T)
        case updated(old: T, new: T)
        case deleted(T)
    }

    let client: KubeClient
    let namespace: String?
    let options: ListOptions
    private var cache: [String: T] = [:]
    private var indexers: [String: @Sendable (T) -> [String]] = [:]
    private var indices: [String: [String: Set<String>]] = [:]
    private var subscribers: [UUID: AsyncStream<Event>.Continuation] = [:]
    private var syncWaiters: [CheckedContinuation<Void, Never>] = []
    public private(set) var hasSynced = false
    /// The newest resourceVersion seen (the next watch starts from it).
    public private(set) var resourceVersion = ""
    /// Full lists made (the first, and one per 410).
    public private(set) var lists = 0
    /// Watches started.
    public private(set) var watches = 0

    /// `namespace` nil: every namespace. `options`: the label and field selectors.
    public init(client: KubeClient, namespace: String? = nil, options: ListOptions = ListOptions()) {
        self.client = client
        self.namespace = namespace
        self.options = options
    }

    /// Runs until the task is cancelled.
    public func run(watchTimeout: ClosedRange<Int> = 300...600) async {
        var needList = true
        var delay: Duration = .milliseconds(100)
        while !Task.isCancelled {
            do {
                if needList {
                    try await relist()
                    needList = false
                }
                var watchOptions = options
                watchOptions.resourceVersion = resourceVersion
                watches += 1
                for try await event in client.watch(T.self, namespace: namespace, options: watchOptions, timeoutSeconds: Int.random(in: watchTimeout)) {
                    apply(event)
                }
                delay = .milliseconds(100)
            } catch let error as KubeError where error.isExpired {
                needList = true
            } catch {
                if Task.isCancelled { break }
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(30))
            }
        }
        for subscriber in subscribers.values { subscriber.finish() }
        subscribers.removeAll()
    }

    private func relist() async throws {
        var page = options
        page.limit = 500
        var items: [T] = []
        var version = ""
        while true {
            let list = try await client.list(T.self, namespace: namespace, options: page)
            items += list.items
            if version.isEmpty { version = list.resourceVersion }
            guard let next = list.continueToken, !next.isEmpty else { break }
            page.continueToken = next
        }
        lists += 1
        replace(items)
        resourceVersion = version
        if !hasSynced {
            hasSynced = true
            for waiter in syncWaiters { waiter.resume() }
            syncWaiters.removeAll()
        }
    }

    /// Replaces the cache with a fresh list, telling subscribers what changed meanwhile.
    private func replace(_ items: [T]) {
        var fresh: [String: T] = [:]
        for item in items { fresh[item.key] = item }
        for (key, old) in cache where fresh[key] == nil {
            remove(key)
            publish(.deleted(old))
        }
        for (key, item) in fresh {
            if let old = cache[key] {
                if old.resourceVersion != item.resourceVersion {
                    store(item)
                    publish(.updated(old: old, new: item))
                }
            } else {
                store(item)
                publish(.added(item))
            }
        }
    }

    private func apply(_ event: WatchEvent<T>) {
        if let version = event.object.resourceVersion, !version.isEmpty { resourceVersion = version }
        let key = event.object.key
        switch event.type {
        case .bookmark:
            return
        case .added, .modified:
            let old = cache[key]
            store(event.object)
            publish(old.map { .updated(old: $0, new: event.object) } ?? .added(event.object))
        case .deleted:
            remove(key)
            publish(.deleted(event.object))
        }
    }

    private func store(_ object: T) {
        let key = object.key
        if cache[key] != nil { unindex(key) }
        cache[key] = object
        for (name, indexer) in indexers {
            for value in indexer(object) { indices[name, default: [:]][value, default: []].insert(key) }
        }
    }

    private func remove(_ key: String) {
        unindex(key)
        cache[key] = nil
    }

    private func unindex(_ key: String) {
        guard let object = cache[key] else { return }
        for (name, indexer) in indexers {
            for value in indexer(object) { indices[name]?[value]?.remove(key) }
        }
    }

    private func publish(_ event: Event) {
        for subscriber in subscribers.values { subscriber.yield(event) }
    }

    // MARK: Reading

    /// Every change from now on, after an `added` for each object already held.
    public func events() -> AsyncStream<Event> {
        let (stream, continuation) = AsyncStream.makeStream(of: Event.self)
        let id = UUID()
        for object in cache.values { continuation.yield(.added(object)) }
        subscribers[id] = continuation
        continuation.onTermination = { [weak self] _ in
            guard let self else { return }
            Task { await self.unsubscribe(id) }
        }
        return stream
    }

    private func unsubscribe(_ id: UUID) {
        subscribers[id] = nil
    }

    /// Returns once the first list is in the cache.
    public func waitForSync() async {
        if hasSynced { return }
        await withCheckedContinuation { syncWaiters.append($0) }
    }

    public func get(_ key: String) -> T? { cache[key] }

    public func list() -> [T] { cache.values.sorted { $0.key < $1.key } }

    public var count: Int { cache.count }

    /// Adds an index (`spec.nodeName` of pods, say): `values` of an object are the index keys it is found under.
    public func addIndex(_ name: String, values: @escaping @Sendable (T) -> [String]) {
        indexers[name] = values
        var index: [String: Set<String>] = [:]
        for (key, object) in cache {
            for value in values(object) { index[value, default: []].insert(key) }
        }
        indices[name] = index
    }

    public func objects(index name: String, value: String) -> [T] {
        (indices[name]?[value] ?? []).compactMap { cache[$0] }.sorted { $0.key < $1.key }
    }
}
