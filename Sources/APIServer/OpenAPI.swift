import Foundation
import Resources
import Synchronization

/// The served OpenAPI v3 documents, as kube-apiserver serves them: `/openapi/v3` lists one
/// document per group version (`api/v1`, `apis/apps/v1`, ...) with a `serverRelativeURL` that
/// carries a hash (clients cache by it); each document has the resources' paths (the PATCH
/// operations name their `x-kubernetes-group-version-kind` and the `fieldValidation`
/// parameter, which is how kubectl learns that the server validates fields itself) and, under
/// `components.schemas`, the definitions the kinds reach (what `kubectl explain` reads).
public final class OpenAPI: Sendable {
    let resources: [ResourceType]
    private let documents = Mutex<[String: JSONValue]>([:])

    public init(resources: [ResourceType]) {
        self.resources = resources
    }

    /// Kubernetes' definitions (JSON Schema), by name.
    public static let definitions: [String: JSONValue] = {
        let parsed = try? JSONDecoder().decode(JSONValue.self, from: Data(SchemaDefinitions.json.utf8))
        return parsed?["$defs"]?.objectValue ?? [:]
    }()

    /// Changes when the served definitions do (a hash of their text).
    public static let hash: String = {
        var value: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in SchemaDefinitions.json.utf8 { value = (value ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return String(format: "%016llX", value)
    }()

    /// `api/v1` or `apis/GROUP/VERSION`.
    static func documentPath(group: String, version: String) -> String {
        group.isEmpty ? "api/\(version)" : "apis/\(group)/\(version)"
    }

    /// The `/openapi/v3` index.
    public func root() -> JSONValue {
        var paths: [String: JSONValue] = [:]
        for resource in resources {
            let path = Self.documentPath(group: resource.group, version: resource.version)
            paths[path] = .object(["serverRelativeURL": .string("/openapi/v3/\(path)?hash=\(Self.hash)")])
        }
        return .object(["paths": .object(paths)])
    }

    /// The document of one group version (`path` as in ``root()``), or nil when none is served.
    public func document(_ path: String) -> JSONValue? {
        if let cached = documents.withLock({ $0[path] }) { return cached }
        let served = resources.filter { Self.documentPath(group: $0.group, version: $0.version) == path && !$0.name.contains("/") }
        guard !served.isEmpty else { return nil }
        var paths: [String: JSONValue] = [:]
        var kinds: [String] = []
        for resource in served {
            guard let definition = Self.definitionName(group: resource.group, version: resource.version, kind: resource.kind) else { continue }
            kinds.append(definition)
            let gvk: JSONValue = .object(["group": .string(resource.group), "version": .string(resource.version), "kind": .string(resource.kind)])
            let base = "/" + path + (resource.namespaced ? "/namespaces/{namespace}/" : "/") + resource.name
            paths[base] = .object(Self.operations(["get": "list", "post": "post"], gvk: gvk, definition: definition, resource: resource))
            paths[base + "/{name}"] = .object(Self.operations(["get": "get", "put": "put", "patch": "patch", "delete": "delete"], gvk: gvk,
                                                              definition: definition, resource: resource))
        }
        var schemas: [String: JSONValue] = [:]
        for name in Self.reachable(from: kinds) {
            if let definition = Self.definitions[name] { schemas[name] = Self.converted(definition) }
        }
        let document: JSONValue = .object([
            "openapi": .string("3.0.0"),
            "info": .object(["title": .string("Kubernetes"), "version": .string(Discovery.gitVersion)]),
            "paths": .object(paths),
            "components": .object(["schemas": .object(schemas)]),
        ])
        documents.withLock { $0[path] = document }
        return document
    }

    /// Operations of one path: `actions` maps the HTTP method to Kubernetes' action.
    static func operations(_ actions: [String: String], gvk: JSONValue, definition: String, resource: ResourceType) -> [String: JSONValue] {
        var operations: [String: JSONValue] = [:]
        for (method, action) in actions {
            var parameters: [JSONValue] = []
            if ["post", "put", "patch"].contains(method) {
                parameters = [query("dryRun", "string"), query("fieldManager", "string"), query("fieldValidation", "string")]
                if method == "patch" { parameters.append(query("force", "boolean")) }
            }
            let schema: JSONValue = .object(["$ref": .string("#/components/schemas/\(definition)")])
            operations[method] = .object([
                "operationId": .string("\(action)\(resource.kind)"),
                "x-kubernetes-action": .string(action),
                "x-kubernetes-group-version-kind": gvk,
                "parameters": .array(parameters),
                "responses": .object(["200": .object(["description": .string("OK"), "content": .object(["application/json": .object(["schema": schema])])])]),
            ])
        }
        return operations
    }

    static func query(_ name: String, _ type: String) -> JSONValue {
        .object(["name": .string(name), "in": .string("query"), "schema": .object(["type": .string(type), "uniqueItems": .bool(true)])])
    }

    /// The definition of a kind: the one whose `x-kubernetes-group-version-kind` names it.
    public static func definitionName(group: String, version: String, kind: String) -> String? {
        definitionsByKind["\(group)/\(version)/\(kind)"]
    }

    /// Definition names by `GROUP/VERSION/KIND`, read once from their
    /// `x-kubernetes-group-version-kind` (every create, update and patch looks one up).
    static let definitionsByKind: [String: String] = {
        var names: [String: String] = [:]
        for (name, definition) in definitions {
            for gvk in definition["x-kubernetes-group-version-kind"]?.arrayValue ?? [] {
                guard let group = gvk["group"]?.stringValue, let version = gvk["version"]?.stringValue, let kind = gvk["kind"]?.stringValue else { continue }
                names["\(group)/\(version)/\(kind)"] = name
            }
        }
        return names
    }()

    /// The names of `roots` and every definition they refer to, transitively.
    static func reachable(from roots: [String]) -> Set<String> {
        var seen = Set<String>()
        var pending = roots
        while let name = pending.popLast() {
            guard seen.insert(name).inserted, let definition = definitions[name] else { continue }
            references(in: definition, into: &pending)
        }
        return seen
    }

    static let referencePrefix = "#/$defs/"

    static func references(in value: JSONValue, into names: inout [String]) {
        switch value {
        case .object(let fields):
            if let reference = fields["$ref"]?.stringValue, reference.hasPrefix(referencePrefix) {
                names.append(String(reference.dropFirst(referencePrefix.count)))
            }
            for field in fields.values { references(in: field, into: &names) }
        case .array(let items):
            for item in items { references(in: item, into: &names) }
        default:
            break
        }
    }

    /// A JSON Schema definition in OpenAPI 3.0's terms: references into `components/schemas`,
    /// `type: [T, "null"]` as `type: T`.
    static func converted(_ value: JSONValue) -> JSONValue {
        switch value {
        case .object(var fields):
            for (key, field) in fields {
                if key == "$ref", let reference = field.stringValue, reference.hasPrefix(referencePrefix) {
                    fields[key] = .string("#/components/schemas/" + reference.dropFirst(referencePrefix.count))
                } else if key == "type", let types = field.arrayValue {
                    fields[key] = types.first { $0 != .string("null") } ?? .string("object")
                } else {
                    fields[key] = converted(field)
                }
            }
            return .object(fields)
        case .array(let items):
            return .array(items.map(converted))
        default:
            return value
        }
    }
}
