import Foundation
import KVStore
import Resources
import Store
import Synchronization

/// Kubernetes objects in the store, as k8s.io/apiserver's etcd3 storage keeps them: one key per
/// object (`ResourceType/key(namespace:name:)`), its JSON as the value without
/// `metadata.resourceVersion`, which is the key's mod revision and is set on every read. Create
/// is a txn on "the key does not exist" (create revision 0), update a txn on the mod revision
/// the caller read, delete a txn on the revision it checked its preconditions at.
public struct ObjectStorage: Sendable {
    public let store: any KeyValueStore
    let eventLeases = EventLeases()

    public init(store: any KeyValueStore) {
        self.store = store
    }

    /// Events expire an hour after their last write (kube-apiserver's `--event-ttl`): each is
    /// written on a store lease, one lease shared by the events of a minute.
    public static let eventSeconds: Int64 = 3600

    /// The lease a write of `resource` goes on (0: none).
    func lease(for resource: ResourceType) async throws(APIError) -> Int64 {
        guard resource.group.isEmpty && resource.kind == "Event" else { return 0 }
        return try await eventLeases.lease(store, ttl: Self.eventSeconds)
    }

    static let encoder = JSONEncoder()
    static let decoder = JSONDecoder()

    /// An object as stored (without resourceVersion), and back with the revision set.
    static func encode(_ object: JSONValue) throws(APIError) -> [UInt8] {
        var object = object
        object.setMetadata("resourceVersion", nil)
        do {
            return Array(try encoder.encode(object))
        } catch {
            throw .internalError("cannot encode the object: \(error)")
        }
    }

    static func decode(_ kv: KeyValue) throws(APIError) -> JSONValue {
        var object: JSONValue
        do {
            object = try decoder.decode(JSONValue.self, from: Data(kv.value))
        } catch {
            throw .internalError("the stored object at \(String(decoding: kv.key, as: UTF8.self)) does not decode: \(error)")
        }
        return object.atRevision(kv.modRevision)
    }

    static func call<T>(_ body: () async throws(StoreError) -> T) async throws(APIError) -> T {
        do {
            return try await body()
        } catch {
            throw APIError.store(error)
        }
    }

    // MARK: Single objects

    /// Stores a new object; 409 AlreadyExists if the key exists. `lease`: the key goes with it
    /// (Events expire this way). Returns the object with its resourceVersion.
    public func create(_ resource: ResourceType, namespace: String?, name: String, object: JSONValue, lease: Int64 = 0) async throws(APIError) -> JSONValue {
        let lease = lease != 0 ? lease : try await self.lease(for: resource)
        let key = resource.key(namespace: namespace, name: name)
        let value = try Self.encode(object)
        let (claim, _) = ServiceAllocation.claims(resource, old: nil, new: object)
        let owner = Array("\(namespace ?? "")/\(name)".utf8)
        let request = TxnRequest(compare: [Compare(key: key, target: .createRevision(0), result: .equal)]
                                     + claim.map { Compare(key: $0, target: .createRevision(0), result: .equal) },
                                 success: [.put(PutRequest(key: key, value: value, lease: lease))] + claim.map { .put(PutRequest(key: $0, value: owner)) },
                                 failure: [.range(RangeRequest(key: key, keysOnly: true))])
        let response = try await Self.call { () throws(StoreError) in try await store.txn(request) }
        guard response.succeeded else {
            if case .range(let existing) = response.responses.first, existing.kvs.isEmpty, !claim.isEmpty { throw .allocationTaken }
            throw .alreadyExists(resource, name: name)
        }
        return object.atRevision(response.header.revision)
    }

    /// The node ports that Services hold now.
    public func takenNodePorts() async throws(APIError) -> Set<Int64> {
        let prefix = Array(ServiceAllocation.portPrefix.utf8)
        let response = try await Self.call { () throws(StoreError) in try await store.range(RangeRequest(key: prefix, rangeEnd: Self.prefixEnd(prefix), keysOnly: true)) }
        return Set(response.kvs.compactMap { Int64(String(decoding: $0.key.dropFirst(prefix.count), as: UTF8.self)) })
    }

    /// The object, from a linearizable read (or this member's view when `consistent` is false:
    /// Kubernetes' resourceVersion "0", "any version is fine").
    public func get(_ resource: ResourceType, namespace: String?, name: String, consistent: Bool = true) async throws(APIError) -> JSONValue {
        guard let kv = try await getRaw(resource, namespace: namespace, name: name, consistent: consistent) else {
            throw .notFound(resource, name: name)
        }
        return try Self.decode(kv)
    }

    func getRaw(_ resource: ResourceType, namespace: String?, name: String, consistent: Bool = true) async throws(APIError) -> KeyValue? {
        let key = resource.key(namespace: namespace, name: name)
        return try await Self.call { () throws(StoreError) in try await store.range(RangeRequest(key: key, serializable: !consistent)) }.kvs.first
    }

    /// Replaces the object if it is still at `resourceVersion` (nil: whatever version it is at,
    /// as Kubernetes allows for an update without one); 409 Conflict otherwise, 404 if gone.
    public func update(_ resource: ResourceType, namespace: String?, name: String, object: JSONValue, resourceVersion: Int64?) async throws(APIError) -> JSONValue {
        let key = resource.key(namespace: namespace, name: name)
        let value = try Self.encode(object)
        var resourceVersion = resourceVersion
        var claims: (claim: [[UInt8]], release: [[UInt8]]) = ([], [])
        if resource == ServiceAllocation.servicesType {
            // What the Service held before decides what it claims and releases: read it, and
            // write only on that version.
            guard let kv = try await getRaw(resource, namespace: namespace, name: name) else { throw .notFound(resource, name: name) }
            if let wanted = resourceVersion, wanted != kv.modRevision { throw .conflict(resource, name: name) }
            resourceVersion = kv.modRevision
            claims = ServiceAllocation.claims(resource, old: try Self.decode(kv), new: object)
        }
        let compare: Compare
        if let resourceVersion {
            compare = Compare(key: key, target: .modRevision(resourceVersion), result: .equal)
        } else {
            compare = Compare(key: key, target: .createRevision(0), result: .greater)
        }
        let owner = Array("\(namespace ?? "")/\(name)".utf8)
        let request = TxnRequest(compare: [compare] + claims.claim.map { Compare(key: $0, target: .createRevision(0), result: .equal) },
                                 success: [.put(PutRequest(key: key, value: value, lease: try await lease(for: resource)))] + claims.claim.map { .put(PutRequest(key: $0, value: owner)) }
                                     + claims.release.map { .deleteRange(DeleteRangeRequest(key: $0)) },
                                 failure: [.range(RangeRequest(key: key, keysOnly: true))])
        let response = try await Self.call { () throws(StoreError) in try await store.txn(request) }
        guard response.succeeded else {
            guard case .range(let existing) = response.responses.first, let current = existing.kvs.first else { throw .notFound(resource, name: name) }
            if let resourceVersion, current.modRevision == resourceVersion, !claims.claim.isEmpty { throw .allocationTaken }
            throw .conflict(resource, name: name)
        }
        return object.atRevision(response.header.revision)
    }

    /// Reads, transforms and writes back until the write lands on the version it read
    /// (k8s.io/apiserver's GuaranteedUpdate): for changes the server makes itself (status,
    /// finalizers, patches), which must not lose a concurrent writer's change. `transform`
    /// sees the current object and returns the new one (or throws, which ends it); at most
    /// `attempts` tries.
    public func guaranteedUpdate(_ resource: ResourceType, namespace: String?, name: String, attempts: Int = 16,
                                 _ transform: (JSONValue) throws(APIError) -> JSONValue) async throws(APIError) -> JSONValue {
        for _ in 0..<attempts {
            guard let kv = try await getRaw(resource, namespace: namespace, name: name) else { throw .notFound(resource, name: name) }
            let current = try Self.decode(kv)
            let updated = try transform(current)
            if updated == current { return current }
            do {
                return try await update(resource, namespace: namespace, name: name, object: updated, resourceVersion: kv.modRevision)
            } catch where error.reason == "Conflict" {
                continue
            }
        }
        throw .conflict(resource, name: name, why: "too many concurrent changes; try again")
    }

    /// What a delete must find true of the object (Kubernetes' `Preconditions`).
    public struct Preconditions: Sendable, Equatable {
        public var uid: String?
        public var resourceVersion: String?
        public init(uid: String? = nil, resourceVersion: String? = nil) {
            self.uid = uid
            self.resourceVersion = resourceVersion
        }
    }

    /// Deletes the object if the preconditions hold at the version read; returns it as it was
    /// (its resourceVersion the deletion's revision, as Kubernetes answers a delete).
    public func delete(_ resource: ResourceType, namespace: String?, name: String, preconditions: Preconditions = Preconditions()) async throws(APIError) -> JSONValue {
        let key = resource.key(namespace: namespace, name: name)
        for _ in 0..<16 {
            guard let kv = try await getRaw(resource, namespace: namespace, name: name) else { throw .notFound(resource, name: name) }
            let current = try Self.decode(kv)
            if let uid = preconditions.uid, current.metadata("uid")?.stringValue != uid {
                throw .conflict(resource, name: name, why: "Precondition failed: UID in precondition: \(uid), UID in object meta: \(current.metadata("uid")?.stringValue ?? "")")
            }
            if let version = preconditions.resourceVersion, version != String(kv.modRevision) {
                throw .conflict(resource, name: name, why: "Precondition failed: ResourceVersion in precondition: \(version), ResourceVersion in object meta: \(kv.modRevision)")
            }
            let released = ServiceAllocation.claims(resource, old: current, new: nil).release
            let request = TxnRequest(compare: [Compare(key: key, target: .modRevision(kv.modRevision), result: .equal)],
                                     success: [.deleteRange(DeleteRangeRequest(key: key))] + released.map { .deleteRange(DeleteRangeRequest(key: $0)) })
            let response = try await Self.call { () throws(StoreError) in try await store.txn(request) }
            guard response.succeeded else { continue }
            return current.atRevision(response.header.revision)
        }
        throw .conflict(resource, name: name, why: "too many concurrent changes; try again")
    }

    // MARK: Lists

    /// One page of a list.
    public struct Page: Sendable {
        public var items: [JSONValue]
        /// The revision the list is consistent at (its `metadata.resourceVersion`).
        public var resourceVersion: Int64
        /// Set when more items follow: the `continue` token of the next page.
        public var continueToken: String?
        /// How many items follow this page (Kubernetes' `remainingItemCount`), when known.
        public var remainingItemCount: Int64?
    }

    /// Lists a resource (in one namespace, or all), in key order, `limit` at a time (0: all),
    /// from a `continue` token of an earlier page (then at that page's revision, so that the
    /// pages together are one consistent list), or at the current revision. `filter` drops
    /// items (label and field selectors); a page may then hold fewer than `limit`.
    public func list(_ resource: ResourceType, namespace: String?, limit: Int64 = 0, continueToken: String? = nil,
                     consistent: Bool = true, filter: ((JSONValue) -> Bool)? = nil) async throws(APIError) -> Page {
        let prefix = resource.prefix(namespace: namespace)
        var start = prefix
        var revision: Int64 = 0
        if let continueToken {
            let token = try ContinueToken(decoding: continueToken)
            // Relative to the resource's prefix: "NAMESPACE/" for one namespace's list, "" for all.
            let relativePrefix = String(decoding: prefix.dropFirst(resource.keyPrefix.utf8.count + 1), as: UTF8.self)
            guard token.start.hasPrefix(relativePrefix) else { throw .badRequest("continue key is not valid: it does not belong to this list") }
            start = Array("\(resource.keyPrefix)/\(token.start)".utf8)
            revision = token.resourceVersion
        }
        let end = Self.prefixEnd(prefix)
        var items: [JSONValue] = []
        var lastKey: [UInt8]?
        var more = false
        var remaining: Int64?
        // With a filter, read on until the page is full (etcd3 storage does the same).
        repeat {
            let request = RangeRequest(key: start, rangeEnd: end, limit: limit > 0 ? limit : 0, revision: revision, serializable: !consistent && revision == 0)
            let response: RangeResponse
            do {
                response = try await store.range(request)
            } catch .compacted {
                throw .expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")
            } catch {
                throw .store(error)
            }
            if revision == 0 { revision = response.header.revision }
            for kv in response.kvs {
                let object = try Self.decode(kv)
                if filter?(object) ?? true { items.append(object) }
                lastKey = kv.key
            }
            more = response.more
            if filter == nil && more { remaining = response.count - Int64(response.kvs.count) }
            if let lastKey { start = lastKey + [0] }
        } while more && filter != nil && limit > 0 && Int64(items.count) < limit
        var token: String?
        if more, let lastKey {
            let relative = String(decoding: lastKey.dropFirst(resource.keyPrefix.utf8.count + 1), as: UTF8.self) + "\u{0}"
            token = ContinueToken(resourceVersion: revision, start: relative).encoded
        }
        return Page(items: items, resourceVersion: revision, continueToken: token, remainingItemCount: remaining)
    }

    /// The end of the range of every key starting with `prefix`.
    static func prefixEnd(_ prefix: [UInt8]) -> [UInt8] {
        var end = prefix
        while let last = end.last {
            if last < 0xFF {
                end[end.count - 1] = last + 1
                return end
            }
            end.removeLast()
        }
        return [0]
    }
}

/// Kubernetes' `continue` token: base64url of `{"v":"meta.k8s.io/v1","rv":REV,"start":"KEY"}`,
/// KEY relative to the resource's prefix (clients treat it as opaque; the same layout keeps
/// tokens from kube-apiserver's habits readable).
struct ContinueToken: Equatable {
    var resourceVersion: Int64
    var start: String

    private struct Wire: Codable {
        var v: String
        var rv: Int64
        var start: String
    }

    init(resourceVersion: Int64, start: String) {
        self.resourceVersion = resourceVersion
        self.start = start
    }

    init(decoding text: String) throws(APIError) {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        guard text.utf8.count <= 8192, let data = Data(base64Encoded: base64), let wire = try? JSONDecoder().decode(Wire.self, from: data),
              wire.v == "meta.k8s.io/v1", wire.rv > 0, !wire.start.hasPrefix("/"), !wire.start.contains("..")
        else { throw .badRequest("continue key is not valid: it is not a continue token of this server") }
        resourceVersion = wire.rv
        start = wire.start
    }

    var encoded: String {
        let data = (try? JSONEncoder().encode(Wire(v: "meta.k8s.io/v1", rv: resourceVersion, start: start))) ?? Data()
        return data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

extension JSONValue {
    /// `metadata.KEY` of an object.
    public func metadata(_ key: String) -> JSONValue? {
        self["metadata"]?[key]
    }

    /// The object with `metadata.resourceVersion` set to `revision`.
    func atRevision(_ revision: Int64) -> JSONValue {
        var object = self
        object.setMetadata("resourceVersion", .string(String(revision)))
        return object
    }

    /// Sets (or with nil removes) `metadata.KEY`, making `metadata` if there is none.
    public mutating func setMetadata(_ key: String, _ value: JSONValue?) {
        guard case .object(var object) = self else { return }
        var metadata = object["metadata"]?.objectValue ?? [:]
        metadata[key] = value
        object["metadata"] = .object(metadata)
        self = .object(object)
    }
}

/// One store lease per minute for the Events written in it, each lease `ttl` plus that minute.
final class EventLeases: Sendable {
    private let current = Mutex<(id: Int64, granted: ContinuousClock.Instant)?>(nil)
    static let window: Duration = .seconds(60)

    func lease(_ store: any KeyValueStore, ttl: Int64) async throws(APIError) -> Int64 {
        let now = ContinuousClock.now
        if let held = current.withLock({ $0 }), now - held.granted < Self.window { return held.id }
        let granted = try await ObjectStorage.call { () throws(StoreError) in try await store.leaseGrant(ttl: ttl + 60, id: 0) }
        current.withLock { $0 = (granted.id, now) }
        return granted.id
    }
}
