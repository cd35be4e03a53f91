import Foundation

/// Reads Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`: the 4-byte `k8s\0`
/// prefix, then a `runtime.Unknown` carrying the type and the object's bytes) into the JSON the
/// API server stores, as kube-apiserver's JSON encoding of the same Go object would be: JSON
/// names, `omitempty` scalars left out unless the field is a pointer (which protobuf sends only
/// when set), times as RFC 3339, quantities and int-or-strings in their JSON forms, bytes in
/// base64. Field numbers and types come from Kubernetes v1.33's generated.proto
/// (`ProtobufMessages.swift`, made by cluster/generate-protobuf). Unknown field numbers are
/// skipped, as protobuf readers do.
public enum KubernetesProtobuf {
    public static let mediaType = "application/vnd.kubernetes.protobuf"
    static let magic: [UInt8] = [0x6b, 0x38, 0x73, 0x00]
    /// Messages nest no deeper than this (the served types nest about 15 deep).
    static let maximumDepth = 64

    /// Why bytes are not a Kubernetes protobuf object, in words for a 400's message.
    public struct DecodingError: Error, Equatable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
        init(_ message: String) { self.message = message }
    }

    enum Label: Character { case optional = "o", repeated = "r", map = "m" }

    struct Field {
        var json: String
        var label: Label
        /// A scalar's name (`string`, `int64`, ...) or a message's full name; a map's value type.
        var type: String
        var keyType: String
        var pointer: Bool
        var omitEmpty: Bool
    }

    struct Message {
        /// A Go slice type wrapped in a message (`ExtraValue`): its JSON is the `items` array.
        var nullable: Bool
        var fields: [Int: Field]
    }

    static let messages: [String: Message] = {
        var messages: [String: Message] = [:]
        for line in messageTable.split(separator: "\n") {
            let parts = line.split(separator: " ")
            var name = String(parts[0])
            let nullable = name.hasSuffix("!")
            if nullable { name.removeLast() }
            var fields: [Int: Field] = [:]
            for part in parts.dropFirst() {
                let values = part.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                let label = Label(rawValue: values[2].first!)!
                let types = values[3].split(separator: "=").map(String.init)
                fields[Int(values[0])!] = Field(json: values[1], label: label, type: types.last!, keyType: types.count == 2 ? types[0] : "",
                                                pointer: values[4].contains("p"), omitEmpty: values[4].contains("e"))
            }
            messages[name] = Message(nullable: nullable, fields: fields)
        }
        return messages
    }()

    /// Every message of the table, and the types its fields name (for the table's own test).
    static var messageNames: Set<String> { Set(messages.keys) }
    static func fieldTypes(of name: String) -> [String] {
        messages[name].map { $0.fields.values.flatMap { [$0.type, $0.keyType] }.filter { !$0.isEmpty } } ?? []
    }

    /// Whether `bytes` start with the protobuf envelope's prefix.
    public static func hasPrefix(_ bytes: [UInt8]) -> Bool {
        bytes.count >= magic.count && Array(bytes.prefix(magic.count)) == magic
    }

    /// The object that `bytes` (a whole request body) carry, as JSON with its apiVersion and kind.
    public static func decode(_ bytes: [UInt8]) throws(DecodingError) -> JSONValue {
        guard hasPrefix(bytes) else {
            throw DecodingError("the body is not Kubernetes protobuf: it does not start with the \"k8s\\x00\" prefix")
        }
        return try decodeUnknown(bytes[magic.count...], depth: 0)
    }

    static func decodeUnknown(_ bytes: ArraySlice<UInt8>, depth: Int) throws(DecodingError) -> JSONValue {
        var apiVersion = "", kind = "", contentEncoding = "", contentType = ""
        var raw: ArraySlice<UInt8> = []
        var reader = WireReader(bytes)
        while let (number, wire) = try reader.key() {
            switch (number, wire) {
            case (1, 2):
                var meta = WireReader(try reader.lengthDelimited())
                while let (inner, innerWire) = try meta.key() {
                    switch (inner, innerWire) {
                    case (1, 2): apiVersion = String(decoding: try meta.lengthDelimited(), as: UTF8.self)
                    case (2, 2): kind = String(decoding: try meta.lengthDelimited(), as: UTF8.self)
                    default: try meta.skip(innerWire)
                    }
                }
            case (2, 2): raw = try reader.lengthDelimited()
            case (3, 2): contentEncoding = String(decoding: try reader.lengthDelimited(), as: UTF8.self)
            case (4, 2): contentType = String(decoding: try reader.lengthDelimited(), as: UTF8.self)
            default: try reader.skip(wire)
            }
        }
        guard contentEncoding.isEmpty else { throw DecodingError("content encoding \"\(contentEncoding)\" is not supported") }
        guard contentType.isEmpty || contentType == mediaType else { throw DecodingError("embedded content type \"\(contentType)\" is not supported") }
        guard !kind.isEmpty else { throw DecodingError("Object 'Kind' is missing in the protobuf envelope") }
        guard let name = messageName(apiVersion: apiVersion, kind: kind) else {
            throw DecodingError("no kind \"\(kind)\" is registered for version \"\(apiVersion)\"")
        }
        guard case .object(var object) = try decodeMessage(raw, name, depth: depth + 1) else {
            throw DecodingError("\(kind) is not an object")
        }
        object["apiVersion"] = .string(apiVersion)
        object["kind"] = .string(kind)
        return .object(object)
    }

    /// Protobuf packages by API group (the served groups, and meta.k8s.io for options and Status).
    static let packages: [String: String] = [
        "": "k8s.io.api.core", "apps": "k8s.io.api.apps", "batch": "k8s.io.api.batch", "coordination.k8s.io": "k8s.io.api.coordination",
        "discovery.k8s.io": "k8s.io.api.discovery", "rbac.authorization.k8s.io": "k8s.io.api.rbac",
        "authorization.k8s.io": "k8s.io.api.authorization", "autoscaling": "k8s.io.api.autoscaling", "policy": "k8s.io.api.policy",
        "meta.k8s.io": "k8s.io.apimachinery.pkg.apis.meta",
    ]

    /// The message of `kind` in `apiVersion`; options (DeleteOptions, ...) are meta/v1's in any group.
    static func messageName(apiVersion: String, kind: String) -> String? {
        let parts = apiVersion.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count <= 2, let version = parts.last, !version.isEmpty, let package = packages[parts.count == 2 ? parts[0] : ""] else { return nil }
        let name = "\(package).\(version).\(kind)"
        if messages[name] != nil { return name }
        let meta = "k8s.io.apimachinery.pkg.apis.meta.v1.\(kind)"
        return version == "v1" && kind.hasSuffix("Options") && messages[meta] != nil ? meta : nil
    }

    static func decodeMessage(_ bytes: ArraySlice<UInt8>, _ name: String, depth: Int) throws(DecodingError) -> JSONValue {
        guard depth <= maximumDepth else { throw DecodingError("the object nests deeper than \(maximumDepth) messages") }
        if let special = try decodeSpecial(bytes, name, depth: depth) { return special }
        guard let message = messages[name] else { throw DecodingError("no protobuf message \(name)") }
        var object: [String: JSONValue] = [:]
        var reader = WireReader(bytes)
        while let (number, wire) = try reader.key() {
            guard let field = message.fields[number] else {
                try reader.skip(wire)
                continue
            }
            switch field.label {
            case .optional:
                object[field.json] = try value(&reader, wire: wire, type: field.type, depth: depth)
            case .repeated:
                var items = object[field.json]?.arrayValue ?? []
                if wire == 2 && isPackable(field.type) {
                    var packed = WireReader(try reader.lengthDelimited())
                    while !packed.atEnd { items.append(try value(&packed, wire: wireType(of: field.type), type: field.type, depth: depth)) }
                } else {
                    items.append(try value(&reader, wire: wire, type: field.type, depth: depth))
                }
                object[field.json] = .array(items)
            case .map:
                guard wire == 2 else { throw DecodingError("field \(field.json) of \(name): a map entry must be length-delimited") }
                var entry = WireReader(try reader.lengthDelimited())
                var key: JSONValue?, entryValue: JSONValue?
                while let (inner, innerWire) = try entry.key() {
                    switch inner {
                    case 1: key = try value(&entry, wire: innerWire, type: field.keyType, depth: depth)
                    case 2: entryValue = try value(&entry, wire: innerWire, type: field.type, depth: depth)
                    default: try entry.skip(innerWire)
                    }
                }
                var map = object[field.json]?.objectValue ?? [:]
                let keyText: String = switch key {
                case .string(let text): text
                case .integer(let number): String(number)
                default: ""
                }
                if let entryValue { map[keyText] = entryValue } else { map[keyText] = try defaultValue(field.type, depth: depth) }
                object[field.json] = .object(map)
            }
        }
        if message.nullable { return object["items"] ?? .array([]) }
        // A non-pointer scalar is always on the wire; JSON leaves it out when empty and omitempty.
        for (_, field) in message.fields where field.label == .optional && field.omitEmpty && !field.pointer && isScalar(field.type) {
            if let present = object[field.json], isEmptyScalar(present) { object[field.json] = nil }
        }
        return .object(object)
    }

    /// Types whose JSON is not an object of their fields.
    static func decodeSpecial(_ bytes: ArraySlice<UInt8>, _ name: String, depth: Int) throws(DecodingError) -> JSONValue? {
        switch name {
        case "k8s.io.apimachinery.pkg.api.resource.Quantity":
            return .string(try fields(bytes)[1].map { String(decoding: $0.bytes, as: UTF8.self) } ?? "")
        case "k8s.io.apimachinery.pkg.util.intstr.IntOrString":
            let values = try fields(bytes)
            if values[1]?.number == 1 { return .string(values[3].map { String(decoding: $0.bytes, as: UTF8.self) } ?? "") }
            return .integer(Int64(Int32(truncatingIfNeeded: values[2]?.number ?? 0)))
        case "k8s.io.apimachinery.pkg.apis.meta.v1.Time", "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime":
            // An empty message is Go's zero time, which JSON writes as null.
            guard !bytes.isEmpty else { return .null }
            let values = try fields(bytes)
            let seconds = Int64(bitPattern: values[1]?.number ?? 0), nanos = Int64(Int32(truncatingIfNeeded: values[2]?.number ?? 0))
            return .string(try rfc3339(seconds: seconds, nanos: nanos, micro: name.hasSuffix("MicroTime")))
        case "k8s.io.apimachinery.pkg.apis.meta.v1.Duration":
            return .string(goDuration(Int64(bitPattern: try fields(bytes)[1]?.number ?? 0)))
        case "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1", "k8s.io.apimachinery.pkg.runtime.RawExtension":
            guard let raw = try fields(bytes)[1]?.bytes, !raw.isEmpty else { return name.hasSuffix("FieldsV1") ? .object([:]) : .null }
            if hasPrefix(Array(raw)) { return try decodeUnknown(raw.dropFirst(magic.count), depth: depth + 1) }
            do {
                return try JSONDecoder().decode(JSONValue.self, from: Data(raw))
            } catch {
                throw DecodingError("\(name.split(separator: ".").last!) does not hold JSON")
            }
        default:
            return nil
        }
    }

    /// The fields of a small message by number (the last of each): a varint's number, else bytes.
    static func fields(_ bytes: ArraySlice<UInt8>) throws(DecodingError) -> [Int: (number: UInt64, bytes: ArraySlice<UInt8>)] {
        var found: [Int: (number: UInt64, bytes: ArraySlice<UInt8>)] = [:]
        var reader = WireReader(bytes)
        while let (number, wire) = try reader.key() {
            switch wire {
            case 0: found[number] = (try reader.varint(), [])
            case 2: found[number] = (0, try reader.lengthDelimited())
            default: try reader.skip(wire)
            }
        }
        return found
    }

    static func value(_ reader: inout WireReader, wire: Int, type: String, depth: Int) throws(DecodingError) -> JSONValue {
        let expected = wireType(of: type)
        guard wire == expected else { throw DecodingError("a \(type) field came with wire type \(wire), not \(expected)") }
        switch type {
        case "string": return .string(String(decoding: try reader.lengthDelimited(), as: UTF8.self))
        case "bytes": return .string(Data(try reader.lengthDelimited()).base64EncodedString())
        case "bool": return .bool(try reader.varint() != 0)
        case "int32": return .integer(Int64(Int32(truncatingIfNeeded: try reader.varint())))
        case "int64": return .integer(Int64(bitPattern: try reader.varint()))
        case "uint32": return .integer(Int64(UInt32(truncatingIfNeeded: try reader.varint())))
        case "uint64": return .integer(Int64(bitPattern: try reader.varint()))
        case "double": return .number(Double(bitPattern: try reader.fixed64()))
        case "float": return .number(Double(Float(bitPattern: try reader.fixed32())))
        default: return try decodeMessage(try reader.lengthDelimited(), type, depth: depth + 1)
        }
    }

    static func defaultValue(_ type: String, depth: Int) throws(DecodingError) -> JSONValue {
        switch type {
        case "string", "bytes": .string("")
        case "bool": .bool(false)
        case "int32", "int64", "uint32", "uint64": .integer(0)
        case "double", "float": .number(0)
        default: try decodeMessage([], type, depth: depth + 1)
        }
    }

    static func wireType(of type: String) -> Int {
        switch type {
        case "bool", "int32", "int64", "uint32", "uint64": 0
        case "double": 1
        case "float": 5
        default: 2
        }
    }

    static func isScalar(_ type: String) -> Bool { !type.contains(".") }
    static func isPackable(_ type: String) -> Bool { isScalar(type) && type != "string" && type != "bytes" }

    static func isEmptyScalar(_ value: JSONValue) -> Bool {
        switch value {
        case .string(let text): text.isEmpty
        case .bool(let flag): !flag
        case .integer(let number): number == 0
        case .number(let number): number == 0
        default: false
        }
    }

    /// A moment as metav1.Time writes it in JSON (whole seconds, UTC) or MicroTime (microseconds);
    /// years outside 0-9999 are refused, as Go's JSON encoding of a time refuses them.
    static func rfc3339(seconds: Int64, nanos: Int64, micro: Bool) throws(DecodingError) -> String {
        guard seconds >= -62_167_219_200, seconds <= 253_402_300_799 else { throw DecodingError("a time is outside the years 0-9999") }
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func padded(_ value: Int64, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        var text = "\(padded(year, 4))-\(padded(month, 2))-\(padded(day, 2))T\(padded(secondOfDay / 3_600, 2)):\(padded(secondOfDay / 60 % 60, 2)):\(padded(secondOfDay % 60, 2))"
        if micro { text += "." + padded(max(0, min(nanos, 999_999_999)) / 1_000, 6) }
        return text + "Z"
    }

    /// Go's `time.Duration.String()` for `nanoseconds` ("1h2m3s", "1.5s", "0s").
    static func goDuration(_ nanoseconds: Int64) -> String {
        if nanoseconds == 0 { return "0s" }
        let negative = nanoseconds < 0
        let magnitude = nanoseconds.magnitude
        var text: String
        if magnitude < 1_000_000_000 {
            let (unit, size): (String, UInt64) = magnitude < 1_000 ? ("ns", 1) : magnitude < 1_000_000 ? ("µs", 1_000) : ("ms", 1_000_000)
            text = fraction(magnitude, size) + unit
        } else {
            let hours = magnitude / 3_600_000_000_000, minutes = magnitude / 60_000_000_000 % 60
            text = fraction(magnitude % 60_000_000_000, 1_000_000_000) + "s"
            if hours > 0 { text = "\(hours)h\(minutes)m" + text } else if minutes > 0 { text = "\(minutes)m" + text }
        }
        return negative ? "-" + text : text
    }

    /// `value / size` with the remainder's digits, trailing zeros trimmed ("1.5", "3").
    static func fraction(_ value: UInt64, _ size: UInt64) -> String {
        let whole = value / size, rest = value % size
        guard rest > 0 else { return "\(whole)" }
        var digits = String(rest)
        digits = String(repeating: "0", count: String(size).count - 1 - digits.count) + digits
        while digits.hasSuffix("0") { digits.removeLast() }
        return "\(whole).\(digits)"
    }
}

/// Reads protobuf's wire format from a byte slice, every read bounded by what is left.
struct WireReader {
    private var bytes: ArraySlice<UInt8>

    init(_ bytes: ArraySlice<UInt8>) { self.bytes = bytes }

    var atEnd: Bool { bytes.isEmpty }

    /// The next field's number and wire type; nil at the end.
    mutating func key() throws(KubernetesProtobuf.DecodingError) -> (Int, Int)? {
        guard !bytes.isEmpty else { return nil }
        let key = try varint()
        let number = key >> 3
        guard number > 0, number < 1 << 29 else { throw .init("field number \(number) is out of range") }
        return (Int(number), Int(key & 7))
    }

    mutating func varint() throws(KubernetesProtobuf.DecodingError) -> UInt64 {
        var result: UInt64 = 0
        for shift in stride(from: 0, to: 70, by: 7) {
            guard let byte = bytes.popFirst() else { throw .init("the body ends inside a number") }
            guard shift < 63 || byte <= 1 else { throw .init("a number is longer than 64 bits") }
            result |= UInt64(byte & 0x7f) << UInt64(shift)
            if byte & 0x80 == 0 { return result }
        }
        throw .init("a number is longer than 10 bytes")
    }

    mutating func lengthDelimited() throws(KubernetesProtobuf.DecodingError) -> ArraySlice<UInt8> {
        let length = try varint()
        guard length <= UInt64(bytes.count) else { throw .init("a field says \(length) bytes follow, but \(bytes.count) do") }
        let value = bytes.prefix(Int(length))
        bytes = bytes.dropFirst(Int(length))
        return value
    }

    mutating func fixed64() throws(KubernetesProtobuf.DecodingError) -> UInt64 {
        guard bytes.count >= 8 else { throw .init("the body ends inside a 64-bit number") }
        let value = bytes.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        bytes = bytes.dropFirst(8)
        return value
    }

    mutating func fixed32() throws(KubernetesProtobuf.DecodingError) -> UInt32 {
        guard bytes.count >= 4 else { throw .init("the body ends inside a 32-bit number") }
        let value = bytes.prefix(4).reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        bytes = bytes.dropFirst(4)
        return value
    }

    mutating func skip(_ wire: Int) throws(KubernetesProtobuf.DecodingError) {
        switch wire {
        case 0: _ = try varint()
        case 1: _ = try fixed64()
        case 2: _ = try lengthDelimited()
        case 5: _ = try fixed32()
        default: throw .init("wire type \(wire) is not supported")
        }
    }
}
