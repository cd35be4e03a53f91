import Foundation
import KVStore
import Resources
import Store

/// A change to an object as a Kubernetes watch reports it.
public enum ObjectEvent: Sendable, Equatable {
    case added(JSONValue)
    case modified(JSONValue)
    /// The object as it was, with the deletion's revision as its resourceVersion.
    case deleted(JSONValue)
    /// Every change at or below `resourceVersion` has been reported (Kubernetes' BOOKMARK).
    case bookmark(resourceVersion: Int64)

    /// `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`.
    public var type: String {
        switch self {
        case .added: "ADDED"
        case .modified: "MODIFIED"
        case .deleted: "DELETED"
        case .bookmark: "BOOKMARK"
        }
    }
}

extension ObjectStorage {
    /// Watches a resource (one namespace, or all) for changes after `resourceVersion` (0: after
    /// now). Ends with 410 Expired when that revision is compacted away, as Kubernetes does; the
    /// client lists again. `progressNotify` asks for bookmarks when idle.
    public func watch(_ resource: ResourceType, namespace: String?, after resourceVersion: Int64, progressNotify: Bool = false) async throws(APIError) -> ObjectWatch {
        let prefix = resource.prefix(namespace: namespace)
        let registration = WatchHub.Registration(key: prefix, rangeEnd: Self.prefixEnd(prefix), startRevision: resourceVersion == 0 ? 0 : resourceVersion + 1,
                                                 prevKv: true)
        let watch = try await Self.call { () throws(StoreError) in try await store.watch(registration, progressNotify: progressNotify) }
        return ObjectWatch(watch: watch, resourceVersion: resourceVersion)
    }
}

/// The changes of one watch, as ``ObjectEvent``s; throws ``APIError`` (410 Expired for
/// compacted history or a watcher that fell too far behind).
public struct ObjectWatch: AsyncSequence, Sendable {
    public typealias Element = ObjectEvent
    let watch: StoreWatch
    let resourceVersion: Int64

    public func cancel() { watch.cancel() }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var updates: StoreWatch.AsyncIterator
        var pending: [ObjectEvent] = []
        let resourceVersion: Int64

        public mutating func next() async throws -> ObjectEvent? {
            while pending.isEmpty {
                let update: WatchUpdate?
                do {
                    update = try await updates.next()
                } catch {
                    switch error {
                    case .compacted(let compactRevision):
                        throw APIError.expired("too old resource version: \(resourceVersion) (\(compactRevision ?? 0))")
                    case .watchTooSlow(let resume):
                        throw APIError.expired("the watch fell too far behind; watch again from resource version \(resume - 1) or list again")
                    default:
                        throw APIError.store(error)
                    }
                }
                guard let update else { return nil }
                switch update {
                case .progress(let revision):
                    pending.append(.bookmark(resourceVersion: revision))
                case .events(let events):
                    for event in events { pending.append(try Self.objectEvent(event)) }
                }
            }
            return pending.removeFirst()
        }

        static func objectEvent(_ event: WatchEvent) throws(APIError) -> ObjectEvent {
            switch event.type {
            case .put:
                let object = try ObjectStorage.decode(event.kv)
                return event.kv.createRevision == event.kv.modRevision ? .added(object) : .modified(object)
            case .delete:
                guard let previous = event.prevKv else {
                    throw APIError.internalError("a deletion without the object it deleted (its last version is compacted away)")
                }
                return .deleted(try ObjectStorage.decode(previous).atRevision(event.kv.modRevision))
            }
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(updates: watch.makeAsyncIterator(), resourceVersion: resourceVersion)
    }
}
