import Foundation
import Resources

/// `describe`'s text: the object's name, namespace, labels and annotations, its spec and status
/// as an indented tree (keys capitalised as kubectl's describers print them), then its Events.
public enum Describer {
    public static func describe(_ object: JSONValue, kind: String, events: [JSONValue], now: Date = Date()) -> String {
        let metadata = object["metadata"] ?? .object([:])
        var lines: [(String, String)] = [("Name:", metadata["name"]?.stringValue ?? "")]
        if let namespace = metadata["namespace"]?.stringValue { lines.append(("Namespace:", namespace)) }
        lines += pairs("Labels:", metadata["labels"], separator: "=")
        lines += pairs("Annotations:", metadata["annotations"], separator: ": ")
        if let created = metadata["creationTimestamp"]?.stringValue { lines.append(("CreationTimestamp:", created)) }
        if let deleting = metadata["deletionTimestamp"]?.stringValue { lines.append(("DeletionTimestamp:", deleting)) }
        if let owners = metadata["ownerReferences"]?.arrayValue, !owners.isEmpty {
            lines.append(("Controlled By:", owners.map { "\($0["kind"]?.stringValue ?? "")/\($0["name"]?.stringValue ?? "")" }.joined(separator: ", ")))
        }
        let width = (lines.map(\.0.count).max() ?? 0) + 2
        var out = lines.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + $0.1 }.joined(separator: "\n") + "\n"
        guard case .object(let fields) = object else { return out }
        for key in fields.keys.sorted() where !["metadata", "apiVersion", "kind"].contains(key) {
            out += tree(key, fields[key]!, indent: 0)
        }
        out += eventsSection(events, now: now)
        return out
    }

    static func pairs(_ title: String, _ value: JSONValue?, separator: String) -> [(String, String)] {
        guard let object = value?.objectValue, !object.isEmpty else { return [(title, "<none>")] }
        return object.keys.sorted().enumerated().map { index, key in
            (index == 0 ? title : "", "\(key)\(separator)\(object[key]!.stringValue ?? object[key]!.description)")
        }
    }

    static func title(_ key: String) -> String {
        guard let first = key.first else { return key }
        return first.uppercased() + key.dropFirst()
    }

    static func tree(_ key: String, _ value: JSONValue, indent: Int) -> String {
        let pad = String(repeating: " ", count: indent)
        switch value {
        case .object(let object) where !object.isEmpty && object.values.allSatisfy({ $0.stringValue != nil }):
            // A map of strings (labels, selectors, data): its keys are the user's, printed as they are.
            let keys = object.keys.sorted()
            return keys.enumerated().map { index, name in
                (index == 0 ? pad + title(key) + ":  " : pad + String(repeating: " ", count: title(key).count + 3)) + "\(name)=\(object[name]!.stringValue!)\n"
            }.joined()
        case .object(let object) where !object.isEmpty:
            return pad + title(key) + ":\n" + object.keys.sorted().map { tree($0, object[$0]!, indent: indent + 2) }.joined()
        case .array(let items) where !items.isEmpty && items.allSatisfy({ $0.objectValue != nil }):
            var out = pad + title(key) + ":\n"
            for item in items {
                let object = item.objectValue ?? [:]
                let heading = object["name"]?.stringValue ?? object["type"]?.stringValue
                if let heading { out += pad + "  " + heading + ":\n" } else { out += pad + "  -\n" }
                for field in object.keys.sorted() where !(heading != nil && (field == "name" || (object["name"] == nil && field == "type"))) {
                    out += tree(field, object[field]!, indent: indent + 4)
                }
            }
            return out
        case .array(let items):
            return pad + title(key) + ":  " + (items.isEmpty ? "<none>" : items.map { $0.stringValue ?? $0.description }.joined(separator: ", ")) + "\n"
        case .object:
            return pad + title(key) + ":  <none>\n"
        case .string(let text):
            return pad + title(key) + ":  " + text + "\n"
        default:
            return pad + title(key) + ":  " + value.description + "\n"
        }
    }

    static func eventsSection(_ events: [JSONValue], now: Date) -> String {
        guard !events.isEmpty else { return "Events:  <none>\n" }
        let sorted = events.sorted { time($0) ?? .distantPast < time($1) ?? .distantPast }
        var rows = [["Type", "Reason", "Age", "From", "Message"], ["----", "------", "----", "----", "-------"]]
        for event in sorted {
            let from = event["source"]?["component"]?.stringValue ?? event["reportingComponent"]?.stringValue ?? ""
            rows.append([event["type"]?.stringValue ?? "", event["reason"]?.stringValue ?? "", time(event).map { age(now.timeIntervalSince($0)) } ?? "<unknown>",
                         from, (event["message"]?.stringValue ?? "").trimmingCharacters(in: .whitespacesAndNewlines)])
        }
        return "Events:\n" + TablePrinter.align(rows).split(separator: "\n").map { "  " + $0 }.joined(separator: "\n") + "\n"
    }

    static func time(_ event: JSONValue) -> Date? {
        for key in ["lastTimestamp", "eventTime", "firstTimestamp"] {
            if let text = event[key]?.stringValue, let date = parse(text) { return date }
        }
        return event["metadata"]?["creationTimestamp"]?.stringValue.flatMap(parse)
    }

    static func parse(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)
    }

    /// A duration as kubectl prints ages: 45s, 3m20s, 12m, 5h30m, 20h, 3d4h, 12d, 2y30d.
    public static func age(_ seconds: TimeInterval) -> String {
        let s = Int(max(0, seconds))
        if s < 120 { return "\(s)s" }
        let m = s / 60
        if m < 10 { return s % 60 == 0 ? "\(m)m" : "\(m)m\(s % 60)s" }
        if m < 180 { return "\(m)m" }
        let h = m / 60
        if h < 8 { return m % 60 == 0 ? "\(h)h" : "\(h)h\(m % 60)m" }
        if h < 48 { return "\(h)h" }
        let d = h / 24
        if d < 8 { return h % 24 == 0 ? "\(d)d" : "\(d)d\(h % 24)h" }
        if d < 365 * 2 { return "\(d)d" }
        return "\(d / 365)y\(d % 365 == 0 ? "" : "\(d % 365)d")"
    }
}
