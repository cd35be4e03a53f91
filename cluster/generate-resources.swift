// Generates the Kubernetes API types that raftkube serves, as Swift `Codable` structs, from
// Kubernetes' own schema (the OpenAPI definitions of v1.33 that PyPI's `kubernetes-validate`
// wheel carries as JSON Schema: `kubernetes-json-schema/v1.33.0-local/_definitions.json`).
//
//   cluster/generate-resources            # downloads the wheel with pip, then generates
//
// Writes Sources/Resources/Generated/*.swift (one file per API group version) and
// Sources/Resources/Generated/SchemaDefinitions.swift (the served definitions as JSON Schema
// text, one definition per line, for /openapi/v3, validation and patches). Both are committed;
// CI never runs this.
import Foundation

let arguments = CommandLine.arguments
guard arguments.count == 3 else {
    FileHandle.standardError.write(Data("usage: generate-resources.swift DEFINITIONS.json OUTPUT-DIRECTORY\n".utf8))
    exit(2)
}
let input = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: arguments[1]))) as! [String: Any]
let definitions = input["$defs"] as! [String: [String: Any]]
let output = arguments[2]

/// The API group versions served, by definition-name prefix, and the Swift namespace of each.
let namespaces: [(prefix: String, namespace: String)] = [
    ("io.k8s.api.core.v1.", "CoreV1"),
    ("io.k8s.api.apps.v1.", "AppsV1"),
    ("io.k8s.api.batch.v1.", "BatchV1"),
    ("io.k8s.api.coordination.v1.", "CoordinationV1"),
    ("io.k8s.api.discovery.v1.", "DiscoveryV1"),
    ("io.k8s.api.rbac.v1.", "RbacV1"),
    ("io.k8s.api.authorization.v1.", "AuthorizationV1"),
    ("io.k8s.api.autoscaling.v1.", "AutoscalingV1"),
    ("io.k8s.api.policy.v1.", "PolicyV1"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.", "MetaV1"),
]

/// Definitions written by hand in Sources/Resources (their JSON has no fixed shape).
let handWritten: [String: String] = [
    "io.k8s.apimachinery.pkg.api.resource.Quantity": "Quantity",
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
    "io.k8s.apimachinery.pkg.runtime.RawExtension": "JSONValue",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time": "Timestamp",
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime": "Timestamp",
    "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1": "JSONValue",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Patch": "JSONValue",
]

func namespace(of name: String) -> (namespace: String, type: String)? {
    for (prefix, namespace) in namespaces where name.hasPrefix(prefix) {
        return (namespace, String(name.dropFirst(prefix.count)))
    }
    return nil
}

func references(_ value: Any) -> [String] {
    if let object = value as? [String: Any] {
        var found: [String] = []
        for (key, inner) in object {
            if key == "$ref", let ref = inner as? String { found.append(String(ref.split(separator: "/").last!)) } else { found += references(inner) }
        }
        return found
    }
    if let array = value as? [Any] { return array.flatMap(references) }
    return []
}

// Every definition of the served groups, and everything they refer to.
var served = Set<String>()
var stack = definitions.keys.filter { namespace(of: $0) != nil }
while let name = stack.popLast() {
    guard served.insert(name).inserted else { continue }
    guard let definition = definitions[name] else { fatalError("\(name) is referred to but not defined") }
    stack += references(definition)
}
for name in served where namespace(of: name) == nil && handWritten[name] == nil {
    fatalError("\(name) is needed but has no namespace and is not written by hand")
}

func swiftType(ofReference name: String) -> String {
    if let hand = handWritten[name] { return hand }
    let (space, type) = namespace(of: name)!
    return "\(space).\(type)"
}

func types(_ schema: [String: Any]) -> [String] {
    if let list = schema["type"] as? [String] { return list.filter { $0 != "null" } }
    if let one = schema["type"] as? String { return [one] }
    return []
}

func swiftType(of schema: [String: Any]) -> String {
    if let ref = schema["$ref"] as? String { return swiftType(ofReference: String(ref.split(separator: "/").last!)) }
    if let allOf = schema["allOf"] as? [[String: Any]], allOf.count == 1 { return swiftType(of: allOf[0]) }
    switch types(schema).first {
    case "string": return "String"
    case "boolean": return "Bool"
    case "integer": return schema["format"] as? String == "int32" ? "Int32" : "Int64"
    case "number": return "Double"
    case "array": return "[\(swiftType(of: schema["items"] as! [String: Any]))]"
    case "object":
        if let values = schema["additionalProperties"] as? [String: Any] { return "[String: \(swiftType(of: values))]" }
        return "JSONValue"
    default: return "JSONValue"
    }
}

let keywords: Set<String> = ["default", "protocol", "operator", "continue", "class", "struct", "enum", "import", "in", "is", "as", "for",
                             "if", "return", "self", "Type", "where", "case", "init", "extension", "func", "internal", "private",
                             "public", "let", "var", "try", "throw", "repeat", "while", "do", "else", "switch", "break", "guard"]

func identifier(_ name: String) -> String { keywords.contains(name) ? "`\(name)`" : name }

func comment(_ text: String?, indent: String) -> String {
    guard let text, !text.isEmpty else { return "" }
    let words = text.replacingOccurrences(of: "\n", with: " ").split(separator: " ")
    var lines: [String] = []
    var line = ""
    for word in words {
        if line.count + word.count + 1 > 96 && !line.isEmpty {
            lines.append(line)
            line = ""
        }
        line += line.isEmpty ? String(word) : " " + word
    }
    if !line.isEmpty { lines.append(line) }
    return lines.map { "\(indent)/// \($0)\n" }.joined()
}

/// Properties in the order Kubernetes declares the few every object has, then alphabetical (for
/// reading; JSON keys have no order).
func orderedProperties(_ properties: [String: Any]) -> [String] {
    let first = ["apiVersion", "kind", "metadata", "spec", "status"].filter { properties[$0] != nil }
    return first + properties.keys.filter { !first.contains($0) }.sorted()
}

var files: [String: [String]] = [:]
for name in served.sorted() where handWritten[name] == nil {
    let definition = definitions[name]!
    let (space, type) = namespace(of: name)!
    let properties = definition["properties"] as? [String: Any] ?? [:]
    var text = comment(definition["description"] as? String, indent: "    ")
    let gvk = (definition["x-kubernetes-group-version-kind"] as? [[String: Any]])?.first
    text += "    public struct \(type): Codable, Sendable, Equatable {\n"
    if let gvk {
        let group = gvk["group"] as? String ?? ""
        let version = gvk["version"] as! String
        text += "        public static let apiVersion = \"\(group.isEmpty ? version : "\(group)/\(version)")\"\n"
        text += "        public static let kind = \"\(gvk["kind"] as! String)\"\n\n"
    }
    let names = orderedProperties(properties)
    for property in names {
        let schema = properties[property] as! [String: Any]
        text += comment(schema["description"] as? String, indent: "        ")
        text += "        public var \(identifier(property)): \(swiftType(of: schema))?\n"
    }
    let parameters = names.map { "\(identifier($0)): \(swiftType(of: properties[$0] as! [String: Any]))? = nil" }
    if parameters.isEmpty {
        text += "\n        public init() {}\n"
    } else {
        text += "\n        public init(\(parameters.joined(separator: ", "))) {\n"
        for property in names { text += "            self.\(identifier(property)) = \(identifier(property))\n" }
        text += "        }\n"
    }
    text += "    }\n"
    files[space, default: []].append(text)
}

let header = "// Generated by cluster/generate-resources from Kubernetes v1.33's API definitions. Do not edit.\n\n"
try FileManager.default.createDirectory(atPath: "\(output)/Generated", withIntermediateDirectories: true)
for (space, bodies) in files.sorted(by: { $0.key < $1.key }) {
    let text = header + "/// Kubernetes API types of \(space).\npublic enum \(space) {}\n\nextension \(space) {\n" + bodies.joined(separator: "\n") + "}\n"
    try text.write(toFile: "\(output)/Generated/\(space).swift", atomically: true, encoding: .utf8)
}

// The served definitions themselves, for /openapi/v3, validation and patches: a JSON object
// `{"$defs": {NAME: SCHEMA, ...}}` in a raw string literal, one definition per line.
var schemaLines: [String] = []
for name in served.sorted() {
    let key = String(decoding: try JSONSerialization.data(withJSONObject: name, options: [.fragmentsAllowed]), as: UTF8.self)
    let body = String(decoding: try JSONSerialization.data(withJSONObject: definitions[name]!, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
    precondition(!body.contains("\"\"\"#"), "a definition holds the raw string's delimiter")
    schemaLines.append("\(key):\(body)")
}
let schemaSwift = """
    // Generated by cluster/generate-resources from Kubernetes v1.33's definitions. Do not edit.

    /// The JSON Schema of every served type and what it refers to, with Kubernetes' extensions
    /// (`x-kubernetes-group-version-kind`, `-patch-merge-key`, `-patch-strategy`, `-list-type`,
    /// ...): `{"$defs": {NAME: SCHEMA}}`.
    public enum SchemaDefinitions {
        public static let json = #\"\"\"
    {"$defs":{
    \(schemaLines.joined(separator: ",\n"))
    }}
    \"\"\"#
    }

    """
try schemaSwift.write(toFile: "\(output)/Generated/SchemaDefinitions.swift", atomically: true, encoding: .utf8)
print("\(served.count) definitions, \(files.values.map(\.count).reduce(0, +)) generated types in \(files.count) namespaces")
