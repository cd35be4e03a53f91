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

extension ObjectEvent {
    /// The event as a watch stream carries it, one JSON document per line:
    /// `{"type":"ADDED","object":{...}}`; a bookmark's object is `resource`'s kind with only
    /// `metadata.resourceVersion`, as Kubernetes sends it.
    public func wireObject(_ resource: ResourceType) -> JSONValue {
        let object: JSONValue
        switch self {
        case .added(let value), .modified(let value), .deleted(let value):
            object = APIHandler.withKind(value, resource)
        case .bookmark(let revision):
            object = .object(["kind": .string(resource.kind), "apiVersion": .string(resource.apiVersion),
                              "metadata": .object(["resourceVersion": .string(String(revision))])])
        }
        return .object(["type": .string(type), "object": object])
    }

    /// The last line of a watch that ends in an error (410 Expired, ...): an `ERROR` event
    /// whose object is the `Status`.
    public static func errorObject(_ error: APIError) -> JSONValue {
        .object(["type": .string("ERROR"), "object": error.status])
    }
}

/// Turns a watch's events into the lines it sends: objects as they are, or as one-row Tables
/// when the client asked for Tables (`kubectl get -w`), the column definitions in the first only.
public struct WatchEncoder: Sendable {
    let resource: ResourceType
    let table: (version: String, include: Tables.Include)?
    var columnsSent = false

    public init(resource: ResourceType, table: (version: String, include: Tables.Include)?) {
        self.resource = resource
        self.table = table
    }

    public mutating func encode(_ event: ObjectEvent) -> JSONValue {
        guard let table else { return event.wireObject(resource) }
        switch event {
        case .added(let object), .modified(let object), .deleted(let object):
            defer { columnsSent = true }
            let rows = Tables.table([object], resource: resource, version: table.version, include: table.include,
                                    listMetadata: .object(["resourceVersion": object.metadata("resourceVersion") ?? .string("")]), withColumns: !columnsSent)
            return .object(["type": .string(event.type), "object": rows])
        case .bookmark:
            return event.wireObject(resource)
        }
    }
}

extension ObjectStorage {
    /// Watches a resource (one namespace, or all) for changes after `resourceVersion` (0: after
    /// now). Ends with 410 Expired when that revision is compacted away, as Kubernetes does; the
    /// client lists again. `progressNotify` asks for bookmarks when idle. With a `filter` (label
    /// and field selectors), only matching objects are reported, as Kubernetes' watch cache
    /// does: one that comes to match is ADDED, one that stops matching is DELETED.
    public func watch(_ resource: ResourceType, namespace: String?, after resourceVersion: Int64, progressNotify: Bool = false,
                      filter: (@Sendable (JSONValue) -> Bool)? = nil) async throws(APIError) -> ObjectWatch {
        let prefix = resource.prefix(namespace: namespace)
        let registration = WatchHub.Registration(key: prefix, rangeEnd: Self.prefixEnd(prefix), startRevision: resourceVersion == 0 ? 0 : resourceVersion + 1,
                                                 prevKv: true)
        let watch = try await Self.call { () throws(StoreError) in try await store.watch(registration, progressNotify: progressNotify) }
        return ObjectWatch(watch: watch, resourceVersion: resourceVersion, filter: filter)
    }
}

/// The changes of one watch, as ``ObjectEvent``s; throws ``APIError`` (410 Expired for
/// compacted history or a watcher that fell too far behind).
public struct ObjectWatch: AsyncSequence, Sendable {
    public typealias Element = ObjectEvent
    let watch: StoreWatch
    let resourceVersion: Int64
    let filter: (@Sendable (JSONValue) -> Bool)?

    public func cancel() { watch.cancel() }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var updates: StoreWatch.AsyncIterator
        var pending: [ObjectEvent] = []
        let resourceVersion: Int64
        let filter: (@Sendable (JSONValue) -> Bool)?

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
                    for event in events {
                        if let reported = try Self.objectEvent(event, filter: filter) { pending.append(reported) }
                    }
                }
            }
            return pending.removeFirst()
        }

        /// The store's event as the watcher sees it through `filter`; nil when neither the
        /// object's old nor its new version matches.
        static func objectEvent(_ event: WatchEvent, filter: (@Sendable (JSONValue) -> Bool)?) throws(APIError) -> ObjectEvent? {
            switch event.type {
            case .put:
                let object = try ObjectStorage.decode(event.kv)
                let created = event.kv.createRevision == event.kv.modRevision
                guard let filter else { return created ? .added(object) : .modified(object) }
                let before = try event.prevKv.map { kv throws(APIError) in filter(try ObjectStorage.decode(kv)) } ?? false
                switch (before && !created, filter(object)) {
                case (true, true): return .modified(object)
                case (false, true): return .added(object)
                case (true, false): return .deleted(object)
                case (false, false): return nil
                }
            case .delete:
                guard let previous = event.prevKv else {
                    throw APIError.internalError("a deletion without the object it deleted (its last version is compacted away)")
                }
                let object = try ObjectStorage.decode(previous).atRevision(event.kv.modRevision)
                if let filter, !filter(object) { return nil }
                return .deleted(object)
            }
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(updates: watch.makeAsyncIterator(), resourceVersion: resourceVersion, filter: filter)
    }
}
