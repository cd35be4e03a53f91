// Generates the table of Kubernetes' protobuf messages that the API server reads request bodies
// in (`application/vnd.kubernetes.protobuf`, what kubectl's typed commands and client-go send),
// from Kubernetes' own `generated.proto` files (field numbers and types) and the Go `types.go`
// beside them (each field's JSON name, `omitempty`, and whether it is a pointer: what decides how
// a field present in protobuf appears in JSON).
//
//   cluster/generate-protobuf            # extracts k8s.io/api and k8s.io/apimachinery v0.33.9
//
// Input: a directory with PACKAGE-PATH/generated.proto and PACKAGE-PATH/*.go for each package
// (k8s.io/api/core/v1, ..., k8s.io/apimachinery/pkg/apis/meta/v1, ...). Writes
// Sources/Resources/Generated/ProtobufMessages.swift: one line per message,
//   FULL.NAME[!] NUMBER,JSON,KIND,TYPE,FLAGS ...
// (`!` a nullable wrapper whose JSON is its `items` array; KIND o optional, r repeated, m map with
// TYPE KEY=VALUE; FLAGS p pointer, e omitempty). Committed; CI never runs this.
import Foundation

let arguments = CommandLine.arguments
guard arguments.count == 3 else {
    FileHandle.standardError.write(Data("usage: generate-protobuf.swift INPUT-DIRECTORY OUTPUT-FILE\n".utf8))
    exit(2)
}
let inputDirectory = arguments[1]
let packages = [
    "k8s.io/api/core/v1", "k8s.io/api/apps/v1", "k8s.io/api/batch/v1", "k8s.io/api/coordination/v1",
    "k8s.io/api/discovery/v1", "k8s.io/api/rbac/v1", "k8s.io/api/authorization/v1", "k8s.io/api/autoscaling/v1",
    "k8s.io/api/policy/v1", "k8s.io/apimachinery/pkg/apis/meta/v1", "k8s.io/apimachinery/pkg/runtime",
    "k8s.io/apimachinery/pkg/runtime/schema", "k8s.io/apimachinery/pkg/api/resource", "k8s.io/apimachinery/pkg/util/intstr",
]
let scalars: Set<String> = ["string", "bytes", "bool", "int32", "int64", "uint32", "uint64", "double", "float", "fixed32", "fixed64", "sint32", "sint64"]

struct Field {
    var number: Int
    var protoName: String
    var kind: Character
    var type: String
}

struct Message {
    var name: String
    var nullable: Bool
    var fields: [Field]
}

struct GoField {
    var json: String
    var omitEmpty: Bool
    var pointer: Bool
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("generate-protobuf: \(message)\n".utf8))
    exit(1)
}

func qualified(_ type: String, in package: String) -> String {
    if scalars.contains(type) { return type }
    if type.hasPrefix(".") { return String(type.dropFirst()) }
    if type.contains(".") { return type }
    return "\(package).\(type)"
}

func match(_ pattern: String, _ line: String) -> [String]? {
    let expression = try! NSRegularExpression(pattern: pattern)
    guard let found = expression.firstMatch(in: line, range: NSRange(line.startIndex..., in: line)) else { return nil }
    return (1..<found.numberOfRanges).map { index in
        Range(found.range(at: index), in: line).map { String(line[$0]) } ?? ""
    }
}

func parseProto(_ text: String) -> (package: String, messages: [Message]) {
    var package = ""
    var messages: [Message] = []
    var comments: [String] = []
    var current: Message?
    for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
        let line = raw.trimmingCharacters(in: .whitespaces)
        if let found = match(#"^package ([\w.]+);"#, line) { package = found[0]; continue }
        if line.hasPrefix("//") { comments.append(line); continue }
        if let found = match(#"^message (\w+) \{"#, line) {
            if current != nil { fail("nested message \(found[0])") }
            current = Message(name: "\(package).\(found[0])", nullable: comments.contains { $0.contains("+protobuf.nullable=true") }, fields: [])
            comments = []
            continue
        }
        if line.isEmpty { if current == nil { comments = [] }; continue }
        if line == "}" {
            guard let message = current else { fail("unbalanced }") }
            messages.append(message)
            current = nil
            continue
        }
        guard current != nil else { comments = []; continue }
        if let found = match(#"^(optional|repeated) ([\w.]+) (\w+) = (\d+);"#, line) {
            current!.fields.append(Field(number: Int(found[3])!, protoName: found[2], kind: found[0] == "optional" ? "o" : "r",
                                         type: qualified(found[1], in: package)))
        } else if let found = match(#"^map<([\w.]+), ?([\w.]+)> (\w+) = (\d+);"#, line) {
            current!.fields.append(Field(number: Int(found[3])!, protoName: found[2], kind: "m",
                                         type: "\(qualified(found[0], in: package))=\(qualified(found[1], in: package))"))
        } else if !line.hasPrefix("option ") && !line.hasPrefix("reserved ") {
            fail("unread line in \(current!.name): \(line)")
        }
    }
    return (package, messages)
}

/// Each Go struct's fields by protobuf number: JSON name, omitempty, pointer.
func parseGo(_ text: String) -> [String: [Int: GoField]] {
    var structs: [String: [Int: GoField]] = [:]
    var current: String?
    for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
        let line = String(raw)
        if let found = match(#"^type (\w+) struct \{"#, line) { current = found[0]; structs[found[0], default: [:]] = [:]; continue }
        if line.hasPrefix("}") { current = nil; continue }
        guard let name = current, let tick = line.firstIndex(of: "`") else { continue }
        let declaration = line[..<tick].split(separator: " ", omittingEmptySubsequences: true).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        let tag = String(line[tick...])
        guard let proto = match(#"protobuf:"([^"]*)""#, tag)?[0], let json = match(#"json:"([^"]*)""#, tag)?[0] else { continue }
        let protoParts = proto.split(separator: ",")
        guard protoParts.count >= 2, let number = Int(protoParts[1]) else { fail("bad protobuf tag in \(name): \(tag)") }
        let jsonParts = json.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        let type = declaration.count >= 2 ? declaration[1] : declaration[0]
        structs[name]![number] = GoField(json: jsonParts[0], omitEmpty: jsonParts.dropFirst().contains("omitempty"), pointer: type.hasPrefix("*"))
    }
    return structs
}

var lines: [String] = []
var mismatches = 0
for path in packages {
    let directory = "\(inputDirectory)/\(path)"
    guard let proto = try? String(contentsOfFile: "\(directory)/generated.proto", encoding: .utf8) else { fail("no \(directory)/generated.proto") }
    let (package, messages) = parseProto(proto)
    var goStructs: [String: [Int: GoField]] = [:]
    for file in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where file.hasSuffix(".go") && !file.hasSuffix("_test.go") {
        let text = try String(contentsOfFile: "\(directory)/\(file)", encoding: .utf8)
        goStructs.merge(parseGo(text)) { old, new in old.isEmpty ? new : old }
    }
    for message in messages.sorted(by: { $0.name < $1.name }) {
        let goName = String(message.name.split(separator: ".").last!)
        let goFields = goStructs[goName] ?? [:]
        var line = message.name + (message.nullable ? "!" : "")
        for field in message.fields.sorted(by: { $0.number < $1.number }) {
            let go = goFields[field.number]
            let json = go?.json ?? field.protoName
            if let go, go.json != field.protoName, !go.json.isEmpty {
                FileHandle.standardError.write(Data("note: \(message.name).\(field.protoName) is \"\(go.json)\" in JSON\n".utf8))
                mismatches += 1
            }
            let flags = (go?.pointer == true ? "p" : "") + (go?.omitEmpty == true ? "e" : "")
            line += " \(field.number),\(json.isEmpty ? field.protoName : json),\(field.kind),\(field.type),\(flags)"
        }
        lines.append(line)
    }
    FileHandle.standardError.write(Data("\(package): \(messages.count) messages\n".utf8))
}

let output = """
// Generated by cluster/generate-protobuf from Kubernetes v1.33 (k8s.io/api and
// k8s.io/apimachinery v0.33.9): generated.proto for numbers and types, types.go for JSON names,
// omitempty and pointers. Do not edit.

extension KubernetesProtobuf {
    /// One message per line: NAME[!] then NUMBER,JSON,KIND,TYPE,FLAGS for each field.
    static let messageTable = #\"\"\"
\(lines.joined(separator: "\n"))
\"\"\"#
}

"""
try output.write(toFile: arguments[2], atomically: true, encoding: .utf8)
FileHandle.standardError.write(Data("wrote \(lines.count) messages to \(arguments[2]) (\(mismatches) JSON names differ from proto names)\n".utf8))
