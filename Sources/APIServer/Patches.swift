import Foundation
import Resources

/// The three patch types kube-apiserver applies to an object: JSON patch (RFC 6902), JSON merge
/// patch (RFC 7386) and strategic merge patch (lists merged by the key the schema names with
/// `x-kubernetes-patch-merge-key` where `x-kubernetes-patch-strategy` says merge, and the
/// `$patch`, `$retainKeys`, `$deleteFromPrimitiveList`, `$setElementOrder` directives).
public enum Patches {
    public enum Kind: String, Sendable {
        case json = "application/json-patch+json"
        case merge = "application/merge-patch+json"
        case strategic = "application/strategic-merge-patch+json"
    }

    /// Applies `patch` (the request body, JSON) of `kind` to `object`, whose schema is the
    /// definition named `definition` (for strategic merges).
    public static func apply(_ kind: Kind, patch body: [UInt8], to object: JSONValue, definition: String?) throws(APIError) -> JSONValue {
        let patch: JSONValue
        do {
            patch = try JSONDecoder().decode(JSONValue.self, from: Data(body))
        } catch {
            throw APIError.badRequest("the patch does not parse as JSON: \(error)")
        }
        switch kind {
        case .json: return try jsonPatch(object, patch)
        case .merge:
            guard case .object = patch else { throw APIError.badRequest("a merge patch must be a JSON object") }
            return mergePatch(object, patch)
        case .strategic:
            guard case .object = patch else { throw APIError.badRequest("a strategic merge patch must be a JSON object") }
            return try strategicMerge(object, patch, schema: definition.flatMap { OpenAPI.definitions[$0] })
        }
    }

    // MARK: RFC 7386

    public static func mergePatch(_ target: JSONValue, _ patch: JSONValue) -> JSONValue {
        guard case .object(let changes) = patch else { return patch }
        var fields = target.objectValue ?? [:]
        for (key, value) in changes {
            if value == .null {
                fields[key] = nil
            } else {
                fields[key] = mergePatch(fields[key] ?? .null, value)
            }
        }
        return .object(fields)
    }

    // MARK: RFC 6902

    public static func jsonPatch(_ document: JSONValue, _ patch: JSONValue) throws(APIError) -> JSONValue {
        guard let operations = patch.arrayValue else { throw APIError.badRequest("a JSON patch must be an array of operations") }
        var document = document
        for (index, operation) in operations.enumerated() {
            guard let op = operation["op"]?.stringValue, let path = operation["path"]?.stringValue else {
                throw APIError.badRequest("JSON patch operation \(index) needs \"op\" and \"path\"")
            }
            let pointer = try Pointer(path)
            switch op {
            case "add":
                guard let value = operation["value"] else { throw APIError.badRequest("JSON patch operation \(index) (add) needs a \"value\"") }
                document = try pointer.add(value, to: document)
            case "remove":
                document = try pointer.remove(from: document).document
            case "replace":
                guard let value = operation["value"] else { throw APIError.badRequest("JSON patch operation \(index) (replace) needs a \"value\"") }
                _ = try pointer.value(in: document)
                document = try pointer.add(value, to: pointer.remove(from: document).document)
            case "move", "copy":
                guard let fromText = operation["from"]?.stringValue else { throw APIError.badRequest("JSON patch operation \(index) (\(op)) needs \"from\"") }
                let from = try Pointer(fromText)
                if op == "move" {
                    if pointer.tokens.starts(with: from.tokens) && pointer.tokens.count > from.tokens.count {
                        throw APIError.badRequest("JSON patch operation \(index): cannot move \(fromText) into itself")
                    }
                    let (rest, value) = try from.remove(from: document)
                    document = try pointer.add(value, to: rest)
                } else {
                    document = try pointer.add(try from.value(in: document), to: document)
                }
            case "test":
                guard let value = operation["value"] else { throw APIError.badRequest("JSON patch operation \(index) (test) needs a \"value\"") }
                guard try pointer.value(in: document) == value else {
                    throw APIError(code: 422, reason: "Invalid", message: "the test of JSON patch operation \(index) failed: \(path) is not \(value)")
                }
            default:
                throw APIError.badRequest("JSON patch operation \(index): unknown op \"\(op)\"")
            }
        }
        return document
    }

    /// A JSON pointer (RFC 6901): `/spec/containers/0/image`, `~1` for `/`, `~0` for `~`.
    struct Pointer {
        let tokens: [String]
        let text: String

        init(_ text: String) throws(APIError) {
            guard text.isEmpty || text.hasPrefix("/") else { throw APIError.badRequest("JSON pointer \"\(text)\" must start with /") }
            self.text = text
            tokens = text.isEmpty ? [] : text.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
                .map { $0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~") }
        }

        func missing() -> APIError { APIError(code: 422, reason: "Invalid", message: "JSON patch path \(text) does not exist in the object") }

        func value(in document: JSONValue) throws(APIError) -> JSONValue {
            var current = document
            for token in tokens {
                switch current {
                case .object(let fields):
                    guard let next = fields[token] else { throw missing() }
                    current = next
                case .array(let items):
                    guard let index = Int(token), items.indices.contains(index) else { throw missing() }
                    current = items[index]
                default:
                    throw missing()
                }
            }
            return current
        }

        func add(_ value: JSONValue, to document: JSONValue) throws(APIError) -> JSONValue {
            try Self.add(value, to: document, tokens[...], pointer: self)
        }

        static func add(_ value: JSONValue, to document: JSONValue, _ tokens: ArraySlice<String>, pointer: Pointer) throws(APIError) -> JSONValue {
            guard let token = tokens.first else { return value }
            let last = tokens.count == 1
            switch document {
            case .object(var fields):
                if last {
                    fields[token] = value
                } else {
                    guard let child = fields[token] else { throw pointer.missing() }
                    fields[token] = try add(value, to: child, tokens.dropFirst(), pointer: pointer)
                }
                return .object(fields)
            case .array(var items):
                if last {
                    if token == "-" {
                        items.append(value)
                    } else {
                        guard let index = Int(token), index >= 0, index <= items.count else { throw pointer.missing() }
                        items.insert(value, at: index)
                    }
                } else {
                    guard let index = Int(token), items.indices.contains(index) else { throw pointer.missing() }
                    items[index] = try add(value, to: items[index], tokens.dropFirst(), pointer: pointer)
                }
                return .array(items)
            default:
                throw pointer.missing()
            }
        }

        func remove(from document: JSONValue) throws(APIError) -> (document: JSONValue, removed: JSONValue) {
            guard !tokens.isEmpty else { throw APIError.badRequest("JSON patch cannot remove the whole object") }
            var removed = JSONValue.null
            let rest = try Self.remove(from: document, tokens[...], pointer: self, removed: &removed)
            return (rest, removed)
        }

        static func remove(from document: JSONValue, _ tokens: ArraySlice<String>, pointer: Pointer, removed: inout JSONValue) throws(APIError) -> JSONValue {
            guard let token = tokens.first else { return document }
            let last = tokens.count == 1
            switch document {
            case .object(var fields):
                guard let child = fields[token] else { throw pointer.missing() }
                if last {
                    removed = child
                    fields[token] = nil
                } else {
                    fields[token] = try remove(from: child, tokens.dropFirst(), pointer: pointer, removed: &removed)
                }
                return .object(fields)
            case .array(var items):
                guard let index = Int(token), items.indices.contains(index) else { throw pointer.missing() }
                if last {
                    removed = items.remove(at: index)
                } else {
                    items[index] = try remove(from: items[index], tokens.dropFirst(), pointer: pointer, removed: &removed)
                }
                return .array(items)
            default:
                throw pointer.missing()
            }
        }
    }

    // MARK: Strategic merge patch

    /// The schema a `$ref` names, or the schema itself.
    static func resolved(_ schema: JSONValue?) -> JSONValue? {
        var current = schema
        for _ in 0..<8 {
            guard let reference = current?["$ref"]?.stringValue, reference.hasPrefix(OpenAPI.referencePrefix) else { return current }
            current = OpenAPI.definitions[String(reference.dropFirst(OpenAPI.referencePrefix.count))]
        }
        return current
    }

    static func strategicMerge(_ original: JSONValue, _ patch: JSONValue, schema: JSONValue?) throws(APIError) -> JSONValue {
        guard case .object(var changes) = patch else { return patch }
        let schema = resolved(schema)
        if let directive = changes["$patch"]?.stringValue {
            switch directive {
            case "replace":
                changes["$patch"] = nil
                return try strategicMerge(.object([:]), .object(changes), schema: schema)
            case "delete": return .null
            default: throw APIError.badRequest("unknown patch directive $patch: \(directive)")
            }
        }
        var fields = original.objectValue ?? [:]
        if let retain = changes.removeValue(forKey: "$retainKeys")?.arrayValue {
            let keep = Set(retain.compactMap(\.stringValue))
            fields = fields.filter { keep.contains($0.key) }
        }
        for key in changes.keys where key.hasPrefix("$setElementOrder/") { changes[key] = nil }
        for key in changes.keys where key.hasPrefix("$deleteFromPrimitiveList/") {
            let field = String(key.dropFirst("$deleteFromPrimitiveList/".count))
            let removed = Set(changes[key]?.arrayValue ?? [])
            if let list = fields[field]?.arrayValue { fields[field] = .array(list.filter { !removed.contains($0) }) }
            changes[key] = nil
        }
        for (key, value) in changes {
            let property = resolvedProperty(schema, key)
            if value == .null {
                fields[key] = nil
                continue
            }
            switch value {
            case .object:
                let merged = try strategicMerge(fields[key] ?? .object([:]), value, schema: property ?? schema?["additionalProperties"])
                fields[key] = merged == .null ? nil : merged
            case .array(let items):
                fields[key] = .array(try mergeList(fields[key]?.arrayValue ?? [], items, schema: property))
            default:
                fields[key] = value
            }
        }
        return .object(fields)
    }

    static func resolvedProperty(_ schema: JSONValue?, _ key: String) -> JSONValue? {
        schema?["properties"]?[key]
    }

    /// A list under its schema's strategy: merged by key (or as a set of primitives) when the
    /// strategy is merge, replaced otherwise.
    static func mergeList(_ original: [JSONValue], _ patch: [JSONValue], schema: JSONValue?) throws(APIError) -> [JSONValue] {
        let strategy = schema?["x-kubernetes-patch-strategy"]?.stringValue ?? ""
        guard strategy.split(separator: ",").contains("merge") else {
            return try patch.map { item throws(APIError) in try strategicMerge(.null, item, schema: resolved(schema?["items"])) }
                .filter { $0 != .null }
        }
        guard let key = schema?["x-kubernetes-patch-merge-key"]?.stringValue else {
            // A set of primitives (finalizers): the union, in order.
            var merged = original
            for item in patch where !merged.contains(item) { merged.append(item) }
            return merged
        }
        let itemSchema = resolved(schema?["items"])
        var merged = original
        for item in patch {
            if item["$patch"]?.stringValue == "replace" && item.objectValue?.count == 1 {
                // `[{"$patch": "replace"}, ...]`: the list is the patch's other items.
                return try patch.filter { $0 != item }.map { entry throws(APIError) in try strategicMerge(.null, entry, schema: itemSchema) }
            }
        }
        for item in patch {
            guard let value = item[key] else { throw APIError.badRequest("an item of a list merged by \"\(key)\" has no \(key): \(item)") }
            if let index = merged.firstIndex(where: { $0[key] == value }) {
                let result = try strategicMerge(merged[index], item, schema: itemSchema)
                if result == .null { merged.remove(at: index) } else { merged[index] = result }
            } else if item["$patch"]?.stringValue != "delete" {
                merged.append(try strategicMerge(.object([:]), item, schema: itemSchema))
            }
        }
        return merged
    }
}
