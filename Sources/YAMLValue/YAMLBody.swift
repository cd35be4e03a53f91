import Resources
import Yams

/// YAML request bodies (`application/yaml`), read into JSON as kube-apiserver reads them: one
/// document, mapping keys as strings, scalars by YAML's own types (ints, floats, booleans,
/// null, strings). Aliases are expanded with a budget, so a small body cannot grow into a huge
/// object ("billion laughs").
public enum YAMLBody {
    public static let mediaType = "application/yaml"
    /// At most this many values once aliases are expanded.
    public static let maximumNodes = 1 << 20

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public static func decode(_ bytes: [UInt8]) throws(Failure) -> JSONValue {
        let text = String(decoding: bytes, as: UTF8.self)
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            throw Failure(description: "\(error)")
        }
        guard let node else { throw Failure(description: "the body holds no YAML document") }
        var budget = maximumNodes
        return try convert(node, budget: &budget, depth: 0)
    }

    /// Every document of a multi-document stream (`---` between them; empty documents skipped),
    /// the alias budget shared by all of them.
    public static func decodeAll(_ text: String) throws(Failure) -> [JSONValue] {
        var budget = maximumNodes
        var documents: [JSONValue] = []
        do {
            // Parser.nextRoot, not compose_all: that sequence ends silently at a malformed document.
            let parser = try Parser(yaml: text)
            while let node = try parser.nextRoot() {
                if case .scalar(let scalar) = node, node.tag.rawValue == Tag.Name.null.rawValue, scalar.string.isEmpty || scalar.string == "~" { continue }
                documents.append(try convert(node, budget: &budget, depth: 0))
            }
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(description: "\(error)")
        }
        return documents
    }

    /// `value` as YAML the way kubectl prints it: keys sorted, block style, strings that would
    /// read back as another type quoted.
    public static func render(_ value: JSONValue) -> String {
        do {
            return try Yams.serialize(node: node(value), indent: 2, width: -1, allowUnicode: true, sortKeys: true)
        } catch {
            return "# cannot render as YAML: \(error)\n"
        }
    }

    static let yaml11Booleans: Set<String> = ["y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF"]

    static func node(_ value: JSONValue) -> Node {
        switch value {
        case .null: return Node("null", Tag(.null))
        case .bool(let value): return Node(value ? "true" : "false", Tag(.bool))
        case .integer(let value): return Node(String(value), Tag(.int))
        case .number(let value): return Node(value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value), Tag(.float))
        case .string(let value):
            if value.contains("\n") && !value.contains("\r") && value.last != " " { return Node(value, Tag(.str), .literal) }
            // Quoted when it would read back as another type: numbers, booleans (YAML 1.1's yes/no/on/off
            // too, as Go's YAML readers take them), null, timestamps.
            let plain = Resolver.default.resolveTag(of: Node(value)) == .str && !yaml11Booleans.contains(value)
            return Node(value, Tag(.str), plain ? .any : .doubleQuoted)
        case .array(let items): return Node(items.map(node))
        case .object(let object): return Node(object.map { (Node($0.key, Tag(.str)), node($0.value)) })
        }
    }

    static func convert(_ node: Node, budget: inout Int, depth: Int) throws(Failure) -> JSONValue {
        budget -= 1
        guard budget >= 0 else { throw Failure(description: "the document expands to more than \(maximumNodes) values") }
        guard depth <= 100 else { throw Failure(description: "the document nests deeper than 100 levels") }
        switch node {
        case .scalar(let scalar):
            switch node.tag.rawValue {
            case Tag.Name.null.rawValue: return .null
            case Tag.Name.bool.rawValue: return node.bool.map(JSONValue.bool) ?? .string(scalar.string)
            case Tag.Name.int.rawValue:
                if let value = Int64(scalar.string) ?? node.int.map(Int64.init) { return .integer(value) }
                return node.float.map(JSONValue.number) ?? .string(scalar.string)
            case Tag.Name.float.rawValue: return node.float.map(JSONValue.number) ?? .string(scalar.string)
            default: return .string(scalar.string)
            }
        case .mapping(let mapping):
            var object: [String: JSONValue] = [:]
            for (key, value) in mapping {
                guard case .scalar(let keyScalar) = key else { throw Failure(description: "a mapping key is not a scalar") }
                object[keyScalar.string] = try convert(value, budget: &budget, depth: depth + 1)
            }
            return .object(object)
        case .sequence(let sequence):
            var items: [JSONValue] = []
            for item in sequence { items.append(try convert(item, budget: &budget, depth: depth + 1)) }
            return .array(items)
        case .alias:
            throw Failure(description: "an alias that names no anchor")
        }
    }
}
