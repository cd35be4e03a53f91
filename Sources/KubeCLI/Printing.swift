import Foundation
import Resources
import YAMLValue

/// How `get` prints: the server's Table (default, `wide`), or the objects (`yaml`, `json`, `name`).
public enum OutputFormat: String, Sendable, CaseIterable {
    case table = "", wide, yaml, json, name

    public init(flag: String?) throws {
        guard let flag, !flag.isEmpty else { self = .table; return }
        guard let format = OutputFormat(rawValue: flag), format != .table else {
            throw CLIError("unable to match a printer suitable for the output format \"\(flag)\", allowed formats are: json,name,wide,yaml")
        }
        self = format
    }
}

/// Prints a meta.k8s.io Table as kubectl does: upper-case headers, columns padded to their
/// widest cell plus three spaces, `wide` showing the priority-1 columns, a NAMESPACE column
/// first across namespaces, and `kind/name` names when several kinds are printed together.
public struct TablePrinter: Sendable {
    public var wide = false
    public var withNamespace = false
    public var kindPrefix: String?
    public var headers = true

    public init(wide: Bool = false, withNamespace: Bool = false, kindPrefix: String? = nil, headers: Bool = true) {
        self.wide = wide
        self.withNamespace = withNamespace
        self.kindPrefix = kindPrefix
        self.headers = headers
    }

    /// The rows of `table` (their cells as text, header first when `headers`), not yet aligned.
    public func rows(_ table: JSONValue, columns definitions: [JSONValue]) -> [[String]] {
        let shown = definitions.enumerated().filter { wide || ($0.element["priority"]?.integerValue ?? 0) == 0 }
        var rows: [[String]] = []
        if headers {
            rows.append((withNamespace ? ["NAMESPACE"] : []) + shown.map { ($0.element["name"]?.stringValue ?? "").uppercased() })
        }
        for row in table["rows"]?.arrayValue ?? [] {
            let cells = row["cells"]?.arrayValue ?? []
            var line: [String] = []
            if withNamespace { line.append(row["object"]?["metadata"]?["namespace"]?.stringValue ?? "") }
            for (index, definition) in shown {
                var text = index < cells.count ? TablePrinter.text(cells[index]) : ""
                if index == 0, definition["format"]?.stringValue == "name" || definition["name"]?.stringValue == "Name", let kindPrefix { text = "\(kindPrefix)/\(text)" }
                line.append(text)
            }
            rows.append(line)
        }
        return rows
    }

    /// Aligns rows into lines (the last column is not padded).
    public static func align(_ rows: [[String]]) -> String {
        let count = rows.map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: count)
        for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index] + 3, withPad: " ", startingAt: 0)
            }.joined()
        }.map { $0 + "\n" }.joined()
    }

    /// A cell as kubectl prints it: strings as they are, numbers plainly, lists joined, null `<none>`.
    static func text(_ cell: JSONValue) -> String {
        switch cell {
        case .null: return "<none>"
        case .string(let value): return value
        case .integer(let value): return String(value)
        case .number(let value): return value == value.rounded() ? String(Int64(value)) : String(value)
        case .bool(let value): return value ? "true" : "false"
        case .array(let items): return items.map(text).joined(separator: ",")
        case .object: return cell.description
        }
    }
}

public enum ObjectPrinter {
    /// JSON as kubectl prints it: four-space indents (keys sorted here), a newline at the end.
    public static func json(_ value: JSONValue) -> String {
        var out = ""
        write(value, indent: 0, to: &out)
        return out + "\n"
    }

    public static func yaml(_ value: JSONValue) -> String {
        YAMLBody.render(value)
    }

    /// Several objects as kubectl prints them: one alone, more (or a list asked for) as a `List`.
    public static func list(_ items: [JSONValue]) -> JSONValue {
        .object(["apiVersion": "v1", "kind": "List", "items": .array(items), "metadata": .object(["resourceVersion": ""])])
    }

    private static func write(_ value: JSONValue, indent: Int, to out: inout String) {
        let pad = String(repeating: " ", count: indent + 4)
        switch value {
        case .array(let items) where !items.isEmpty:
            out += "[\n"
            for (index, item) in items.enumerated() {
                out += pad
                write(item, indent: indent + 4, to: &out)
                out += index == items.count - 1 ? "\n" : ",\n"
            }
            out += String(repeating: " ", count: indent) + "]"
        case .object(let object) where !object.isEmpty:
            out += "{\n"
            let keys = object.keys.sorted()
            for (index, key) in keys.enumerated() {
                out += pad + String(decoding: JSONValue.string(key).jsonBytes, as: UTF8.self) + ": "
                write(object[key]!, indent: indent + 4, to: &out)
                out += index == keys.count - 1 ? "\n" : ",\n"
            }
            out += String(repeating: " ", count: indent) + "}"
        case .array: out += "[]"
        case .object: out += "{}"
        default: out += String(decoding: value.jsonBytes, as: UTF8.self)
        }
    }
}
