import Foundation
import Resources

/// Server-side apply (`PATCH` with `application/apply-patch+yaml`): the body is a manager's whole
/// intent for the fields it names. The server keeps, per field manager, the set of fields it
/// applied (`metadata.managedFields`, FieldsV1: `f:name` for fields, `k:{"name":"web"}` for
/// items of keyed lists, `v:...` for set members; lists without a list type are atomic, one
/// field); a new apply sets what it names, removes what it applied before and no longer names
/// (unless another manager owns it too), and refuses with 409 to change a field another manager
/// applied with a different value, unless `force=true`, which takes the field over.
/// Ownership is tracked for Apply managers; other writes keep `managedFields` as they are.
public enum ServerSideApply {
    public static let mediaType = "application/apply-patch+yaml"
    public typealias Path = [String]

    // MARK: Field sets

    /// The fields `value` sets under `schema`: leaves, and every keyed-list item itself.
    static func fieldSet(_ value: JSONValue, schema: JSONValue?) -> Set<Path> {
        var paths = Set<Path>()
        collect(value, schema: Patches.resolved(schema), prefix: [], into: &paths)
        return paths
    }

    static func collect(_ value: JSONValue, schema: JSONValue?, prefix: Path, into paths: inout Set<Path>) {
        switch value {
        case .object(let fields) where !fields.isEmpty:
            for (key, child) in fields {
                let childSchema = Patches.resolved(schema?["properties"]?[key] ?? schema?["additionalProperties"])
                collect(child, schema: childSchema, prefix: prefix + ["f:\(key)"], into: &paths)
            }
        case .array(let items) where !items.isEmpty:
            switch listType(schema) {
            case .map(let keys):
                let itemSchema = Patches.resolved(schema?["items"])
                for item in items {
                    let itemPath = prefix + [itemKey(item, keys)]
                    paths.insert(itemPath + ["."])
                    collect(item, schema: itemSchema, prefix: itemPath, into: &paths)
                }
            case .set:
                for item in items { paths.insert(prefix + ["v:" + canonical(item)]) }
            case .atomic:
                paths.insert(prefix)
            }
        default:
            if !prefix.isEmpty { paths.insert(prefix) }
        }
    }

    enum ListType { case atomic, set, map([String]) }

    static func listType(_ schema: JSONValue?) -> ListType {
        switch schema?["x-kubernetes-list-type"]?.stringValue {
        case "map": return .map((schema?["x-kubernetes-list-map-keys"]?.arrayValue ?? []).compactMap(\.stringValue))
        case "set": return .set
        default:
            if let key = schema?["x-kubernetes-patch-merge-key"]?.stringValue,
               (schema?["x-kubernetes-patch-strategy"]?.stringValue ?? "").contains("merge") { return .map([key]) }
            return .atomic
        }
    }

    /// `k:{"name":"web"}` (the item's key fields, sorted, as JSON). A port's `protocol`, the one
    /// defaulted key field of the served kinds, counts as `TCP` when left out (as Kubernetes
    /// defaults it), so an applied port without it is the stored port with it.
    static func itemKey(_ item: JSONValue, _ keys: [String]) -> String {
        var key: [String: JSONValue] = [:]
        for name in keys {
            if let value = item[name] { key[name] = value } else if name == "protocol" { key[name] = "TCP" }
        }
        return "k:" + canonical(.object(key))
    }

    /// JSON with its keys sorted: one text for one value, whatever order a dictionary holds it
    /// in (a key segment is compared as text, and one written by Kubernetes or an older
    /// process must match one made now).
    static func canonical(_ value: JSONValue) -> String {
        switch value {
        case .object(let object):
            return "{" + object.keys.sorted().map { canonical(.string($0)) + ":" + canonical(object[$0]!) }.joined(separator: ",") + "}"
        case .array(let items):
            return "[" + items.map(canonical).joined(separator: ",") + "]"
        default:
            return String(decoding: value.jsonBytes, as: UTF8.self)
        }
    }

    /// A field set as FieldsV1 JSON (a tree of empty objects).
    static func fieldsV1(_ paths: Set<Path>) -> JSONValue {
        var root: [String: JSONValue] = [:]
        for path in paths { insert(path[...], into: &root) }
        return .object(root)
    }

    static func insert(_ path: ArraySlice<String>, into object: inout [String: JSONValue]) {
        guard let first = path.first else { return }
        var child = object[first]?.objectValue ?? [:]
        insert(path.dropFirst(), into: &child)
        object[first] = .object(child)
    }

    /// The paths of a FieldsV1 tree: its leaves (an empty object; `.` for an item itself).
    static func paths(_ fields: JSONValue?, prefix: Path = []) -> Set<Path> {
        guard case .object(let object)? = fields else { return [] }
        if object.isEmpty { return prefix.isEmpty ? [] : [prefix] }
        var result = Set<Path>()
        for (key, child) in object { result.formUnion(paths(child, prefix: prefix + [canonicalSegment(key)])) }
        return result
    }

    /// A stored `k:` or `v:` segment rewritten canonically (sorted keys), others as they are.
    static func canonicalSegment(_ segment: String) -> String {
        guard segment.hasPrefix("k:") || segment.hasPrefix("v:"),
              let value = try? JSONDecoder().decode(JSONValue.self, from: Data(segment.dropFirst(2).utf8)) else { return segment }
        return String(segment.prefix(2)) + canonical(value)
    }

    // MARK: Values at paths

    /// The value at `path` in `object`, nil when absent.
    static func value(at path: Path, in object: JSONValue?, schema: JSONValue?) -> JSONValue? {
        var current = object
        var currentSchema = Patches.resolved(schema)
        for segment in path {
            guard let node = current else { return nil }
            if segment == "." { continue }
            if segment.hasPrefix("f:") {
                let key = String(segment.dropFirst(2))
                current = node[key]
                currentSchema = Patches.resolved(currentSchema?["properties"]?[key] ?? currentSchema?["additionalProperties"])
            } else if segment.hasPrefix("k:"), case .array(let items) = node, case .map(let keys) = listType(currentSchema) {
                current = items.first { itemKey($0, keys) == segment }
                currentSchema = Patches.resolved(currentSchema?["items"])
            } else if segment.hasPrefix("v:"), case .array(let items) = node {
                current = items.first { "v:" + canonical($0) == segment }
            } else {
                return nil
            }
        }
        return current
    }

    /// `object` without what is at `path`.
    static func removing(_ path: ArraySlice<String>, from object: JSONValue, schema: JSONValue?) -> JSONValue {
        guard let segment = path.first else { return object }
        let schema = Patches.resolved(schema)
        let rest = path.dropFirst()
        if segment.hasPrefix("f:"), case .object(var fields) = object {
            let key = String(segment.dropFirst(2))
            if rest.isEmpty || rest == ["."] {
                fields[key] = nil
            } else if let child = fields[key] {
                fields[key] = removing(rest, from: child, schema: schema?["properties"]?[key] ?? schema?["additionalProperties"])
            }
            return .object(fields)
        }
        if case .array(var items) = object {
            if segment.hasPrefix("k:"), case .map(let keys) = listType(schema), let index = items.firstIndex(where: { itemKey($0, keys) == segment }) {
                if rest.isEmpty || rest == ["."] { items.remove(at: index) } else { items[index] = removing(rest, from: items[index], schema: schema?["items"]) }
            } else if segment.hasPrefix("v:") {
                items.removeAll { "v:" + canonical($0) == segment }
            }
            return .array(items)
        }
        return object
    }

    /// `applied` merged into `base`: objects field by field, keyed lists item by item, sets as
    /// unions, everything else replaced.
    static func merge(_ base: JSONValue?, _ applied: JSONValue, schema: JSONValue?) -> JSONValue {
        let schema = Patches.resolved(schema)
        switch applied {
        case .object(let fields):
            var result = base?.objectValue ?? [:]
            for (key, value) in fields {
                result[key] = merge(result[key], value, schema: schema?["properties"]?[key] ?? schema?["additionalProperties"])
            }
            return .object(result)
        case .array(let items):
            switch listType(schema) {
            case .map(let keys):
                var result = base?.arrayValue ?? []
                for item in items {
                    let key = itemKey(item, keys)
                    if let index = result.firstIndex(where: { itemKey($0, keys) == key }) {
                        result[index] = merge(result[index], item, schema: schema?["items"])
                    } else {
                        result.append(item)
                    }
                }
                return .array(result)
            case .set:
                var result = base?.arrayValue ?? []
                for item in items where !result.contains(item) { result.append(item) }
                return .array(result)
            case .atomic:
                return applied
            }
        default:
            return applied
        }
    }

    // MARK: Apply

    struct ManagedEntry {
        var manager: String
        var operation: String
        var json: JSONValue
        var paths: Set<Path>
    }

    /// The object after `manager` applies `applied` to `current` (nil: it does not exist yet).
    public static func apply(_ applied: JSONValue, to current: JSONValue?, manager: String, force: Bool, definition: String?,
                             now: String) throws(APIError) -> JSONValue {
        let schema = definition.flatMap { OpenAPI.definitions[$0] }
        var intent = applied
        intent.setMetadata("managedFields", nil)
        intent.setMetadata("resourceVersion", nil)
        // What the manager applies, without the fields that identify the object.
        var owned = fieldSet(intent, schema: schema)
        owned = owned.filter { path in
            !(path == ["f:apiVersion"] || path == ["f:kind"] || path == ["f:metadata", "f:name"] || path == ["f:metadata", "f:namespace"])
        }
        var entries = (current?.metadata("managedFields")?.arrayValue ?? []).map { entry in
            ManagedEntry(manager: entry["manager"]?.stringValue ?? "", operation: entry["operation"]?.stringValue ?? "", json: entry,
                         paths: paths(entry["fieldsV1"]))
        }
        let previous = entries.first { $0.manager == manager && $0.operation == "Apply" }?.paths ?? []
        // Conflicts: fields another manager applied, with a different value now.
        var conflicts: [(manager: String, path: Path)] = []
        for index in entries.indices where !(entries[index].manager == manager && entries[index].operation == "Apply") {
            let shared = entries[index].paths.intersection(owned)
            for path in shared where path.last != "." {
                if value(at: path, in: current, schema: schema) != value(at: path, in: intent, schema: schema) {
                    if force { entries[index].paths.remove(path) } else { conflicts.append((entries[index].manager, path)) }
                }
            }
        }
        guard conflicts.isEmpty else {
            let sorted = conflicts.sorted { ($0.manager, $0.path.joined()) < ($1.manager, $1.path.joined()) }
            let lines = sorted.map { "conflict with \"\($0.manager)\": \(dotted($0.path))" }
            throw APIError(code: 409, reason: "Conflict",
                           message: "Apply failed with \(conflicts.count) conflict\(conflicts.count == 1 ? "" : "s"): " + lines.joined(separator: "\n"),
                           details: .init(name: applied.metadata("name")?.stringValue, group: nil, kind: applied["kind"]?.stringValue,
                                          causes: sorted.map { .init(reason: "FieldManagerConflict", message: "conflict with \"\($0.manager)\"", field: dotted($0.path)) }))
        }
        // Fields the manager applied before and no longer names, which no one else owns, go.
        var result = current ?? .object([:])
        let othersOwn = entries.filter { !($0.manager == manager && $0.operation == "Apply") }.reduce(into: Set<Path>()) { $0.formUnion($1.paths) }
        for path in previous.subtracting(owned).subtracting(othersOwn).sorted(by: { $0.count > $1.count }) {
            result = removing(path[...], from: result, schema: schema)
        }
        result = merge(result, intent, schema: schema)
        // Applying what is already there, owning what it owned: nothing changes (not even the
        // entry's time), so the write is a no-op and the resourceVersion stays.
        if let current, owned == previous {
            var before = current
            var after = result
            before.setMetadata("managedFields", nil)
            after.setMetadata("managedFields", nil)
            if before == after { return current }
        }
        // The manager's entry, first as Kubernetes keeps them; empty sets dropped.
        entries.removeAll { $0.manager == manager && $0.operation == "Apply" }
        var managed: [JSONValue] = [.object([
            "manager": .string(manager), "operation": "Apply", "apiVersion": applied["apiVersion"] ?? .null, "time": .string(now),
            "fieldsType": "FieldsV1", "fieldsV1": fieldsV1(owned),
        ])]
        for entry in entries where !entry.paths.isEmpty {
            guard case .object(var fields) = entry.json else { continue }
            fields["fieldsV1"] = fieldsV1(entry.paths)
            managed.append(.object(fields))
        }
        result.setMetadata("managedFields", .array(managed))
        return result
    }

    /// `.spec.replicas`, `.spec.template.spec.containers[name="web"].image`, as Kubernetes
    /// words a field in a conflict.
    static func dotted(_ path: Path) -> String {
        path.map { segment -> String in
            if segment.hasPrefix("f:") { return "." + segment.dropFirst(2) }
            if segment.hasPrefix("k:"), case .object(let keys)? = try? JSONDecoder().decode(JSONValue.self, from: Data(segment.dropFirst(2).utf8)) {
                return "[" + keys.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") + "]"
            }
            if segment.hasPrefix("v:") { return "[" + segment.dropFirst(2) + "]" }
            return ""
        }.joined()
    }
}
