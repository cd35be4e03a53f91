import DequeModule

/// client-go's rate-limited work queue: a key waits at most once however often it is added; a
/// key being processed is held by one worker only, and if it was added meanwhile it is queued
/// again when that worker calls ``done(_:)``; ``addRateLimited(_:)`` waits the key's own
/// exponential backoff (``ItemBackoff``) before adding it, ``forget(_:)`` resets it.
public actor WorkQueue<Key: Hashable & Sendable> {
    private var queue = Deque<Key>()
    private var dirty = Set<Key>()
    private var processing = Set<Key>()
    private var waiters = Deque<CheckedContinuation<Key?, Never>>()
    private var backoff: ItemBackoff<Key>
    private var shuttingDown = false

    public init(backoff: ItemBackoff<Key> = ItemBackoff()) {
        self.backoff = backoff
    }

    public func add(_ key: Key) {
        guard !shuttingDown, !dirty.contains(key) else { return }
        dirty.insert(key)
        guard !processing.contains(key) else { return }
        if let waiter = waiters.popFirst() {
            dirty.remove(key)
            processing.insert(key)
            waiter.resume(returning: key)
        } else {
            queue.append(key)
        }
    }

    /// The next key (a worker then owns it until ``done(_:)``); nil once the queue is shut down.
    public func get() async -> Key? {
        if let key = queue.popFirst() {
            dirty.remove(key)
            processing.insert(key)
            return key
        }
        if shuttingDown { return nil }
        return await withCheckedContinuation { waiters.append($0) }
    }

    public func done(_ key: Key) {
        processing.remove(key)
        if dirty.contains(key) {
            dirty.remove(key)
            add(key)
        }
    }

    /// Adds the key after its next backoff (5 ms, doubling per failure, at most 1,000 s).
    public func addRateLimited(_ key: Key) {
        addAfter(key, backoff.next(for: key))
    }

    public func addAfter(_ key: Key, _ delay: Duration) {
        guard delay > .zero else { return add(key) }
        Task {
            try? await Task.sleep(for: delay)
            self.add(key)
        }
    }

    /// The key succeeded: its backoff starts again from the base.
    public func forget(_ key: Key) {
        backoff.forget(key)
    }

    public func failures(_ key: Key) -> Int { backoff.failures(key) }

    public var length: Int { queue.count }

    /// Wakes every waiting worker with nil; later adds are dropped.
    public func shutDown() {
        shuttingDown = true
        while let waiter = waiters.popFirst() { waiter.resume(returning: nil) }
    }
}

/// Per-key exponential backoff: base * 2^failures, capped (client-go's
/// ItemExponentialFailureRateLimiter, 5 ms to 1,000 s).
public struct ItemBackoff<Key: Hashable & Sendable>: Sendable {
    public var base: Duration
    public var maximum: Duration
    private var counts: [Key: Int] = [:]

    public init(base: Duration = .milliseconds(5), maximum: Duration = .seconds(1_000)) {
        self.base = base
        self.maximum = maximum
    }

    public mutating func next(for key: Key) -> Duration {
        let failures = counts[key, default: 0]
        counts[key] = failures + 1
        guard failures < 62 else { return maximum }
        let delay = base * (1 << min(failures, 40))
        return min(delay, maximum)
    }

    public mutating func forget(_ key: Key) { counts[key] = nil }

    public func failures(_ key: Key) -> Int { counts[key, default: 0] }
}
