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
