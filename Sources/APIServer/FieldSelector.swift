import Foundation
import Resources

/// A field selector (`?fieldSelector=spec.nodeName=node1,status.phase!=Succeeded`): equality
/// and inequality on the fields each kind lets clients select on, as kube-apiserver's field
/// label conversion functions allow them. A field that is absent reads as "".
public struct FieldSelector: Sendable, Equatable {
    public struct Requirement: Sendable, Equatable {
        public var field: String
        public var equals: Bool
        public var value: String
    }

    public var requirements: [Requirement]

    public static let everything = FieldSelector(requirements: [])

    public init(requirements: [Requirement]) {
        self.requirements = requirements
    }

    /// The fields every kind has, and those particular kinds add (Kubernetes' own lists).
    public static let commonFields = ["metadata.name", "metadata.namespace"]
    public static let fieldsByKind: [String: [String]] = [
        "Pod": ["spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork",
                "status.phase", "status.podIP", "status.podIPs", "status.nominatedNodeName"],
        "Event": ["involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                  "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
                  "reportingComponent", "source", "type"],
        "Node": ["spec.unschedulable"],
        "Secret": ["type"],
        "Namespace": ["status.phase"],
        "ReplicaSet": ["status.replicas"],
        "ReplicationController": ["status.replicas"],
        "Job": ["status.successful"],
    ]

    /// Parses `text` for objects of `kind`; 400 for bad syntax or a field the kind does not offer.
    public init(parsing text: String, kind: String) throws(APIError) {
        guard text.utf8.count <= 16 << 10 else { throw APIError.badRequest("the field selector is longer than 16 KiB") }
        var requirements: [Requirement] = []
        let allowed = Self.commonFields + (Self.fieldsByKind[kind] ?? [])
        for part in Self.split(text) {
            let term = part.trimmingCharacters(in: .whitespaces)
            if term.isEmpty { continue }
            let requirement: Requirement
            if let range = term.range(of: "!=") {
                requirement = Requirement(field: String(term[..<range.lowerBound]), equals: false, value: String(term[range.upperBound...]))
            } else if let range = term.range(of: "==") {
                requirement = Requirement(field: String(term[..<range.lowerBound]), equals: true, value: String(term[range.upperBound...]))
            } else if let range = term.range(of: "=") {
                requirement = Requirement(field: String(term[..<range.lowerBound]), equals: true, value: String(term[range.upperBound...]))
            } else {
                throw APIError.badRequest("invalid selector: '\(text)'; can't understand '\(term)'")
            }
            guard allowed.contains(requirement.field) else {
                throw APIError.badRequest("field label not supported: \(requirement.field)")
            }
            requirements.append(requirement)
        }
        self.requirements = requirements
    }

    /// Splits on commas not escaped with a backslash (Kubernetes allows `\,` in values).
    static func split(_ text: String) -> [String] {
        var parts: [String] = []
        var current = ""
        var escaped = false
        for character in text {
            if escaped {
                current.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else if character == "," {
                parts.append(current)
                current = ""
            } else {
                current.append(character)
            }
        }
        parts.append(current)
        return parts
    }

    public func matches(object: JSONValue) -> Bool {
        requirements.allSatisfy { requirement in
            (Self.value(of: requirement.field, in: object) == requirement.value) == requirement.equals
        }
    }

    /// The field's text: strings as they are, booleans and numbers as Kubernetes prints them,
    /// absent as ""; `status.podIPs` as the first IP.
    static func value(of field: String, in object: JSONValue) -> String {
        var current: JSONValue? = object
        for component in field.split(separator: ".") { current = current?[String(component)] }
        if field == "status.podIPs", case .array(let ips) = current { current = ips.first?["ip"] }
        switch current {
        case .string(let text): return text
        case .bool(let value): return value ? "true" : "false"
        case .integer(let value): return String(value)
        case .number(let value): return String(value)
        default: return ""
        }
    }
}
