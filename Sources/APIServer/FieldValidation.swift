import Resources

/// A request body checked against its kind's schema, as kube-apiserver decodes one: a value of
/// the wrong type is an error whatever the client asked (the body cannot be decoded); fields the
/// schema does not declare are dropped, and reported as the client asked (`fieldValidation`:
/// `Strict` refuses the request naming them, `Warn` (the default) answers with a `Warning`
/// header for each, `Ignore` says nothing); fields the schema requires must be there (422).
public enum FieldValidation {
    public enum Directive: String, Sendable {
        case strict = "Strict", warn = "Warn", ignore = "Ignore"
    }

    /// What the check found.
    public struct Findings: Sendable, Equatable {
        /// Paths of undeclared fields (`spec.containers[0].imagee`), dropped from the value.
        public var unknown: [String] = []
        /// Fields of the wrong type: the path, the type the schema wants, the type given.
        public var mistyped: [(path: String, expected: String, given: String)] = []
        /// Paths of required fields that are missing.
        public var missing: [String] = []

        public static func == (lhs: Findings, rhs: Findings) -> Bool {
            lhs.unknown == rhs.unknown && lhs.missing == rhs.missing
                && lhs.mistyped.map { "\($0.path) \($0.expected) \($0.given)" } == rhs.mistyped.map { "\($0.path) \($0.expected) \($0.given)" }
        }
    }

    /// Checks `object` against the definition named `definition`; returns it without its
    /// undeclared fields, and the findings.
    public static func check(_ object: JSONValue, definition: String) -> (pruned: JSONValue, findings: Findings) {
        var findings = Findings()
        let pruned = check(object, schema: OpenAPI.definitions[definition], path: "", findings: &findings)
        return (pruned, findings)
    }

    /// Checks a body for `resource` under `directive`; throws the error Kubernetes answers with,
    /// or returns the pruned object and the warnings to send.
    /// `partial`: an apply configuration, which names only the fields its manager sets (the
    /// merged object is checked for required fields afterwards).
    public static func validate(_ object: JSONValue, resource: ResourceType, directive: Directive, partial: Bool = false) throws(APIError) -> (object: JSONValue, warnings: [String]) {
        guard let definition = OpenAPI.definitionName(group: resource.group, version: resource.version, kind: resource.kind) else {
            return (object, [])
        }
        let (pruned, findings) = check(object, definition: definition)
        let kind = resource.kind
        if let wrong = findings.mistyped.first {
            throw APIError.badRequest("\(kind) in version \"\(resource.version)\" cannot be handled as a \(kind): json: cannot unmarshal \(wrong.given) into Go struct field \(wrong.path) of type \(wrong.expected)")
        }
        if directive == .strict && !findings.unknown.isEmpty {
            let list = findings.unknown.map { "unknown field \"\($0)\"" }.joined(separator: ", ")
            throw APIError.badRequest("\(kind) in version \"\(resource.version)\" cannot be handled as a \(kind): strict decoding error: \(list)")
        }
        if !findings.missing.isEmpty && !partial {
            let name = object.metadata("name")?.stringValue ?? ""
            let causes = findings.missing.map { APIError.Cause(reason: "FieldValueRequired", message: "Required value", field: $0) }
            throw APIError.invalid(kind: kind, group: resource.group, name: name, causes: causes)
        }
        return (pruned, directive == .warn ? findings.unknown.map { "unknown field \"\($0)\"" } : [])
    }

    static func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    static func types(_ schema: JSONValue) -> [String] {
        if let one = schema["type"]?.stringValue { return [one] }
        return (schema["type"]?.arrayValue ?? []).compactMap(\.stringValue).filter { $0 != "null" }
    }

    static func matches(_ value: JSONValue, _ type: String) -> Bool {
        switch (type, value) {
        case ("string", .string), ("boolean", .bool), ("array", .array), ("object", .object), ("integer", .integer), ("number", .integer), ("number", .number):
            true
        case ("integer", .number(let number)):
            number.rounded() == number
        default:
            false
        }
    }

    static func check(_ value: JSONValue, schema: JSONValue?, path: String, findings: inout Findings) -> JSONValue {
        guard let schema = Patches.resolved(schema) else { return value }
        if value == .null { return value }
        if let alternatives = schema["oneOf"]?.arrayValue {
            // IntOrString, Quantity: any of the alternatives' types.
            let allowed = alternatives.flatMap { Patches.resolved($0).map(types) ?? [] }
            if !allowed.isEmpty && !allowed.contains(where: { matches(value, $0) }) {
                findings.mistyped.append((path, allowed.joined(separator: " or "), value.typeName))
            }
            return value
        }
        let allowed = types(schema)
        if !allowed.isEmpty && !allowed.contains(where: { matches(value, $0) }) {
            findings.mistyped.append((path, allowed.first == "array" ? "array" : allowed.joined(separator: " or "), value.typeName))
            return value
        }
        switch value {
        case .object(let fields):
            let properties = schema["properties"]?.objectValue
            let additional = schema["additionalProperties"]
            var kept: [String: JSONValue] = [:]
            for (key, field) in fields {
                if let property = properties?[key] {
                    kept[key] = check(field, schema: property, path: join(path, key), findings: &findings)
                } else if let additional, additional != .bool(false) {
                    kept[key] = additional == .bool(true) ? field : check(field, schema: additional, path: join(path, key), findings: &findings)
                } else if properties == nil {
                    // A free-form object (RawExtension, FieldsV1): anything goes.
                    kept[key] = field
                } else {
                    findings.unknown.append(join(path, key))
                }
            }
            for required in schema["required"]?.arrayValue ?? [] {
                if let name = required.stringValue, fields[name] == nil || fields[name] == .null { findings.missing.append(join(path, name)) }
            }
            return .object(kept)
        case .array(let items):
            guard let itemSchema = schema["items"] else { return value }
            return .array(items.enumerated().map { index, item in check(item, schema: itemSchema, path: "\(path)[\(index)]", findings: &findings) })
        default:
            return value
        }
    }
}
