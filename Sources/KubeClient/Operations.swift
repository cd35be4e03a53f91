import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Resources

/// What a list or watch selects.
public struct ListOptions: Sendable, Equatable {
    public var labelSelector: String?
    public var fieldSelector: String?
    public var limit: Int?
    public var continueToken: String?
    /// "" (the default): the newest, read linearizably; "0": any, from the server's cache.
    public var resourceVersion: String?

    public init(labelSelector: String? = nil, fieldSelector: String? = nil, limit: Int? = nil, continueToken: String? = nil, resourceVersion: String? = nil) {
        self.labelSelector = labelSelector
        self.fieldSelector = fieldSelector
        self.limit = limit
        self.continueToken = continueToken
        self.resourceVersion = resourceVersion
    }

    var query: [(String, String)] {
        var query: [(String, String)] = []
        if let labelSelector, !labelSelector.isEmpty { query.append(("labelSelector", labelSelector)) }
        if let fieldSelector, !fieldSelector.isEmpty { query.append(("fieldSelector", fieldSelector)) }
        if let limit { query.append(("limit", String(limit))) }
        if let continueToken, !continueToken.isEmpty { query.append(("continue", continueToken)) }
        if let resourceVersion { query.append(("resourceVersion", resourceVersion)) }
        return query
    }
}

/// A list's items with the list's resourceVersion (to watch from) and continue token.
public struct ObjectList<Item: Sendable>: Sendable {
    public var items: [Item]
    public var resourceVersion: String
    public var continueToken: String?
}

public enum PatchType: String, Sendable {
    case json = "application/json-patch+json"
    case merge = "application/merge-patch+json"
    case strategicMerge = "application/strategic-merge-patch+json"
    case apply = "application/apply-patch+yaml"
}

/// One watch event: ADDED, MODIFIED, DELETED or BOOKMARK (only its resourceVersion matters).
public struct WatchEvent<Object: Sendable>: Sendable {
    public var type: WatchEventType
    public var object: Object
}

public enum WatchEventType: String, Sendable { case added = "ADDED", modified = "MODIFIED", deleted = "DELETED", bookmark = "BOOKMARK" }

extension KubeClient {
    // MARK: Untyped: any served resource as JSON

    public func get(_ resource: ResourceRef, name: String, namespace: String? = nil, accept: String = "application/json") async throws -> JSONValue {
        try await request(.GET, resource.path(namespace: scope(resource, namespace), name: name), accept: accept).json
    }

    /// One page (`options.limit`) or the whole list; `namespace` nil lists across namespaces.
    public func list(_ resource: ResourceRef, namespace: String? = nil, options: ListOptions = ListOptions(), accept: String = "application/json") async throws -> JSONValue {
        try await request(.GET, resource.path(namespace: namespace), query: options.query, accept: accept).json
    }

    public func create(_ resource: ResourceRef, _ object: JSONValue, namespace: String? = nil, query: [(String, String)] = []) async throws -> JSONValue {
        try await request(.POST, resource.path(namespace: scope(resource, namespace ?? object["metadata"]?["namespace"]?.stringValue)), query: query,
                          body: object.jsonBytes).json
    }

    public func update(_ resource: ResourceRef, _ object: JSONValue, subresource: String? = nil, query: [(String, String)] = []) async throws -> JSONValue {
        let name = object["metadata"]?["name"]?.stringValue ?? ""
        return try await request(.PUT, resource.path(namespace: scope(resource, object["metadata"]?["namespace"]?.stringValue), name: name, subresource: subresource),
                                 query: query, body: object.jsonBytes).json
    }

    public func patch(_ resource: ResourceRef, name: String, namespace: String? = nil, type: PatchType, body: [UInt8], subresource: String? = nil,
                      query: [(String, String)] = []) async throws -> Response {
        try await request(.PATCH, resource.path(namespace: scope(resource, namespace), name: name, subresource: subresource), query: query, body: body, contentType: type.rawValue)
    }

    /// Deletes; the answer is the object (still there with a deletionTimestamp while finalizers
    /// or a grace period hold it) or a Status.
    @discardableResult
    public func delete(_ resource: ResourceRef, name: String, namespace: String? = nil, gracePeriodSeconds: Int? = nil,
                       propagationPolicy: String? = nil, preconditions: (uid: String?, resourceVersion: String?)? = nil) async throws -> JSONValue {
        var options: [String: JSONValue] = ["kind": "DeleteOptions", "apiVersion": "v1"]
        if let gracePeriodSeconds { options["gracePeriodSeconds"] = .integer(Int64(gracePeriodSeconds)) }
        if let propagationPolicy { options["propagationPolicy"] = .string(propagationPolicy) }
        if let preconditions {
            var value: [String: JSONValue] = [:]
            if let uid = preconditions.uid { value["uid"] = .string(uid) }
            if let version = preconditions.resourceVersion { value["resourceVersion"] = .string(version) }
            options["preconditions"] = .object(value)
        }
        return try await request(.DELETE, resource.path(namespace: scope(resource, namespace), name: name), body: JSONValue.object(options).jsonBytes).json
    }

    /// Every page of the list, `pageSize` objects at a time.
    public func listAll(_ resource: ResourceRef, namespace: String? = nil, options: ListOptions = ListOptions(), pageSize: Int = 500) async throws -> ObjectList<JSONValue> {
        var options = options
        options.limit = pageSize
        var items: [JSONValue] = []
        var version = ""
        while true {
            let page = try await list(resource, namespace: namespace, options: options)
            items += page["items"]?.arrayValue ?? []
            if version.isEmpty { version = page["metadata"]?["resourceVersion"]?.stringValue ?? "" }
            guard let next = page["metadata"]?["continue"]?.stringValue, !next.isEmpty else { break }
            options.continueToken = next
            // Pages after the first come from the first page's snapshot.
            options.resourceVersion = nil
        }
        return ObjectList(items: items, resourceVersion: version, continueToken: nil)
    }

    /// Watches from `options.resourceVersion` until the server ends the watch (its timeout) or
    /// the task is cancelled. A watch refused or ended with an ERROR event throws ``KubeError``
    /// (410 `Expired`: the version was compacted, list again).
    public func watch(_ resource: ResourceRef, namespace: String? = nil, options: ListOptions = ListOptions(), bookmarks: Bool = true,
                      timeoutSeconds: Int? = nil, accept: String = "application/json") -> AsyncThrowingStream<WatchEvent<JSONValue>, any Error> {
        var query = options.query + [("watch", "1")]
        if bookmarks { query.append(("allowWatchBookmarks", "true")) }
        if let timeoutSeconds { query.append(("timeoutSeconds", String(timeoutSeconds))) }
        let path = resource.path(namespace: namespace)
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: WatchEvent<JSONValue>.self, bufferingPolicy: .bufferingNewest(100_000))
        let task = Task {
            do {
                let response = try await send(.GET, path, query: query, body: nil, contentType: "", accept: accept,
                                              timeout: .seconds(Int64(timeoutSeconds ?? 3_600) + 60))
                if response.status.code >= 400 {
                    let body = try await response.body.collect(upTo: 1 << 20)
                    throw KubeError(status: Int(response.status.code), body: Array(buffer: body))
                }
                var lines = JSONLines()
                for try await chunk in response.body {
                    for line in try lines.append(Array(buffer: chunk)) {
                        let value = try JSONDecoder().decode(JSONValue.self, from: Data(line))
                        guard let type = value["type"]?.stringValue, let object = value["object"] else { continue }
                        if type == "ERROR" {
                            throw KubeError(code: Int(object["code"]?.integerValue ?? 500), reason: object["reason"]?.stringValue ?? "",
                                            message: object["message"]?.stringValue ?? "", status: object)
                        }
                        guard let kind = WatchEventType(rawValue: type) else { continue }
                        continuation.yield(WatchEvent(type: kind, object: object))
                    }
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    func scope(_ resource: ResourceRef, _ namespace: String?) -> String? {
        resource.namespaced ? (namespace ?? self.namespace) : nil
    }

    // MARK: Typed

    public func get<T: APIObject>(_ type: T.Type, name: String, namespace: String? = nil) async throws -> T {
        try decode(T.self, try await request(.GET, T.resource.path(namespace: scope(T.resource, namespace), name: name)).body)
    }

    public func list<T: APIObject>(_ type: T.Type, namespace: String? = nil, options: ListOptions = ListOptions()) async throws -> ObjectList<T> {
        let body = try await request(.GET, T.resource.path(namespace: namespace), query: options.query).body
        let list = try decode(TypedList<T>.self, body)
        return ObjectList(items: list.items ?? [], resourceVersion: list.metadata?.resourceVersion ?? "", continueToken: list.metadata?.continue)
    }

    public func create<T: APIObject>(_ object: T, namespace: String? = nil) async throws -> T {
        let path = T.resource.path(namespace: scope(T.resource, namespace ?? object.namespace))
        return try decode(T.self, try await request(.POST, path, body: try encode(object)).body)
    }

    /// Replaces the object; 409 Conflict (``KubeError/isConflict``) when its resourceVersion is not the stored one.
    public func update<T: APIObject>(_ object: T, subresource: String? = nil) async throws -> T {
        let path = T.resource.path(namespace: scope(T.resource, object.namespace), name: object.name, subresource: subresource)
        return try decode(T.self, try await request(.PUT, path, body: try encode(object)).body)
    }

    public func patch<T: APIObject>(_ type: T.Type, name: String, namespace: String? = nil, patchType: PatchType, body: [UInt8],
                                    subresource: String? = nil, fieldManager: String? = nil, force: Bool = false) async throws -> T {
        var query: [(String, String)] = []
        if let fieldManager { query.append(("fieldManager", fieldManager)) }
        if force { query.append(("force", "true")) }
        return try decode(T.self, try await patch(T.resource, name: name, namespace: namespace, type: patchType, body: body, subresource: subresource, query: query).body)
    }

    public func delete<T: APIObject>(_ type: T.Type, name: String, namespace: String? = nil, gracePeriodSeconds: Int? = nil) async throws {
        try await delete(T.resource, name: name, namespace: namespace, gracePeriodSeconds: gracePeriodSeconds)
    }

    public func watch<T: APIObject>(_ type: T.Type, namespace: String? = nil, options: ListOptions = ListOptions(),
                                    timeoutSeconds: Int? = nil) -> AsyncThrowingStream<WatchEvent<T>, any Error> {
        let raw = watch(T.resource, namespace: namespace, options: options, timeoutSeconds: timeoutSeconds)
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: WatchEvent<T>.self, bufferingPolicy: .bufferingNewest(100_000))
        let task = Task {
            do {
                for try await event in raw {
                    continuation.yield(WatchEvent(type: event.type, object: try JSONDecoder().decode(T.self, from: Data(event.object.jsonBytes))))
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    func decode<T: Decodable>(_ type: T.Type, _ body: [UInt8]) throws -> T {
        do { return try JSONDecoder().decode(T.self, from: Data(body)) } catch {
            throw KubeError(code: 0, reason: "Undecodable", message: "the server's answer is not a \(T.self): \(error)")
        }
    }

    func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        Array(try JSONEncoder().encode(value))
    }
}

struct TypedList<Item: Decodable & Sendable>: Decodable {
    var metadata: MetaV1.ListMeta?
    var items: [Item]?
}

/// Splits a byte stream into its newline-terminated lines (a watch's events), each at most
/// ``lineBytesMax`` long.
struct JSONLines {
    static let lineBytesMax = 16 << 20
    var pending: [UInt8] = []

    mutating func append(_ bytes: [UInt8]) throws -> [[UInt8]] {
        pending += bytes
        var lines: [[UInt8]] = []
        var start = 0
        while let end = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
            let line = pending[start..<end]
            if !line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }) { lines.append(Array(line)) }
            start = end + 1
        }
        pending.removeFirst(start)
        if pending.count > JSONLines.lineBytesMax { throw KubeError(code: 0, reason: "TooLarge", message: "a watch event longer than \(JSONLines.lineBytesMax) bytes") }
        return lines
    }
}
