import Foundation
import Resources

/// A label selector, as `?labelSelector=` and `kubectl -l` write it (`app=web,tier!=db`,
/// `env in (prod,staging)`, `!canary`, `release`), or as an object's `MetaV1.LabelSelector`
/// (matchLabels, matchExpressions) holds it. Parsed once, matched against each object's labels.
public struct LabelSelector: Sendable, Equatable {
    public enum Operator: Sendable, Equatable {
        case equals, notEquals, `in`, notIn, exists, doesNotExist
    }

    public struct Requirement: Sendable, Equatable {
        public var key: String
        public var op: Operator
        /// Sorted, without repeats.
        public var values: [String]

        public func matches(_ labels: [String: String]) -> Bool {
            switch op {
            case .equals, .in: labels[key].map(values.contains) ?? false
            case .notEquals, .notIn: labels[key].map { !values.contains($0) } ?? true
            case .exists: labels[key] != nil
            case .doesNotExist: labels[key] == nil
            }
        }
    }

    public var requirements: [Requirement]

    /// Matches everything.
    public static let everything = LabelSelector(requirements: [])

    public init(requirements: [Requirement]) {
        self.requirements = requirements
    }

    public func matches(_ labels: [String: String]) -> Bool {
        requirements.allSatisfy { $0.matches(labels) }
    }

    /// The labels of an object (`metadata.labels`).
    public func matches(object: JSONValue) -> Bool {
        guard !requirements.isEmpty else { return true }
        var labels: [String: String] = [:]
        for (key, value) in object.metadata("labels")?.objectValue ?? [:] { if let text = value.stringValue { labels[key] = text } }
        return matches(labels)
    }

    /// Parses Kubernetes' selector syntax; errors as kube-apiserver words them
    /// (`unable to parse requirement: ...`), for a 400.
    public init(parsing text: String) throws(APIError) {
        var parser = SelectorParser(text)
        requirements = try parser.parse()
    }

    /// `MetaV1.LabelSelector` as a selector (a Deployment's, a Service's `spec.selector` map).
    public init(_ selector: MetaV1.LabelSelector) throws(APIError) {
        var requirements: [Requirement] = []
        for (key, value) in (selector.matchLabels ?? [:]).sorted(by: { $0.key < $1.key }) {
            try LabelSyntax.checkKey(key)
            try LabelSyntax.checkValue(value, key: key)
            requirements.append(Requirement(key: key, op: .equals, values: [value]))
        }
        for expression in selector.matchExpressions ?? [] {
            try LabelSyntax.checkKey(expression.key ?? "")
            let values = Array(Set(expression.values ?? [])).sorted()
            let op: Operator
            switch expression.operator ?? "" {
            case "In": op = .in
            case "NotIn": op = .notIn
            case "Exists": op = .exists
            case "DoesNotExist": op = .doesNotExist
            case let other: throw APIError.badRequest("\"\(other)\" is not a valid label selector operator")
            }
            if (op == .in || op == .notIn) && values.isEmpty {
                throw APIError.badRequest("for 'in', 'notin' operators, values set can't be empty")
            }
            if (op == .exists || op == .doesNotExist) && !values.isEmpty {
                throw APIError.badRequest("values set must be empty for exists and does not exist")
            }
            requirements.append(Requirement(key: expression.key ?? "", op: op, values: values))
        }
        self.requirements = requirements
    }
}

extension LabelSelector {
    /// The selector in Kubernetes' text form (requirements sorted by key): `app=web,tier in (a,b)`.
    public var text: String {
        requirements.sorted { $0.key < $1.key }.map { requirement in
            switch requirement.op {
            case .equals: "\(requirement.key)=\(requirement.values.first ?? "")"
            case .notEquals: "\(requirement.key)!=\(requirement.values.first ?? "")"
            case .in: "\(requirement.key) in (\(requirement.values.joined(separator: ",")))"
            case .notIn: "\(requirement.key) notin (\(requirement.values.joined(separator: ",")))"
            case .exists: requirement.key
            case .doesNotExist: "!\(requirement.key)"
            }
        }.joined(separator: ",")
    }

    /// The text form of an object's selector (`spec.selector` as JSON); "" when it is not one.
    static func text(of json: JSONValue) -> String {
        guard let selector = try? JSONDecoder().decode(MetaV1.LabelSelector.self, from: Data(json.jsonBytes)),
              let parsed = try? LabelSelector(selector) else { return "" }
        return parsed.text
    }
}

/// Kubernetes' rules for label keys and values (and annotation keys), with its messages.
public enum LabelSyntax {
    /// `[prefix/]name`: the prefix a DNS subdomain of at most 253, the name at most 63 of
    /// alphanumerics, '-', '_', '.', beginning and ending alphanumeric.
    public static func keyProblems(_ key: String) -> [String] {
        var problems: [String] = []
        let parts = key.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let name: String
        if parts.count == 2 {
            if parts[0].isEmpty {
                problems.append("prefix part must be non-empty")
            } else {
                problems += NameRules.dnsSubdomainProblems(parts[0]).map { "prefix part \($0)" }
            }
            name = parts[1]
        } else {
            name = key
        }
        if name.isEmpty {
            problems.append("name part must be non-empty")
        } else {
            if name.utf8.count > 63 { problems.append("name part must be no more than 63 characters") }
            if !isQualifiedName(name) {
                problems.append("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
            }
        }
        return problems
    }

    /// A label value: empty, or at most 63 of alphanumerics, '-', '_', '.', beginning and ending alphanumeric.
    public static func valueProblems(_ value: String) -> [String] {
        guard !value.isEmpty else { return [] }
        var problems: [String] = []
        if value.utf8.count > 63 { problems.append("must be no more than 63 characters") }
        if !isQualifiedName(value) {
            problems.append("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
        }
        return problems
    }

    static func isQualifiedName(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard let first = bytes.first, let last = bytes.last, isAlphanumeric(first), isAlphanumeric(last) else { return false }
        return bytes.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") }
    }

    static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }

    static func checkKey(_ key: String) throws(APIError) {
        let problems = keyProblems(key)
        if !problems.isEmpty { throw APIError.badRequest("unable to parse requirement: invalid label key \"\(key)\": \(problems.joined(separator: "; "))") }
    }

    static func checkValue(_ value: String, key: String) throws(APIError) {
        let problems = valueProblems(value)
        if !problems.isEmpty {
            throw APIError.badRequest("unable to parse requirement: values[0][\(key)]: Invalid value: \"\(value)\": \(problems.joined(separator: "; "))")
        }
    }
}

/// The selector grammar of k8s.io/apimachinery/pkg/labels: requirements separated by commas;
/// `key`, `!key`, `key=value`, `key==value`, `key!=value`, `key in (a,b)`, `key notin (a,b)`.
struct SelectorParser {
    let bytes: [UInt8]
    var position = 0

    init(_ text: String) { bytes = Array(text.utf8) }

    mutating func parse() throws(APIError) -> [LabelSelector.Requirement] {
        guard bytes.count <= 16 << 10 else { throw APIError.badRequest("the label selector is longer than 16 KiB") }
        var requirements: [LabelSelector.Requirement] = []
        skipSpaces()
        if position == bytes.count { return [] }
        while true {
            requirements.append(try requirement())
            skipSpaces()
            if position == bytes.count { break }
            guard bytes[position] == UInt8(ascii: ",") else { throw error("found '\(rest())', expected: ',' or 'end of string'") }
            position += 1
        }
        return requirements
    }

    mutating func requirement() throws(APIError) -> LabelSelector.Requirement {
        skipSpaces()
        if peek() == UInt8(ascii: "!") {
            position += 1
            let key = word()
            try LabelSyntax.checkKey(key)
            return LabelSelector.Requirement(key: key, op: .doesNotExist, values: [])
        }
        let key = word()
        guard !key.isEmpty else { throw error("found '\(rest())', expected: !, identifier, or 'end of string'") }
        try LabelSyntax.checkKey(key)
        skipSpaces()
        if position == bytes.count || peek() == UInt8(ascii: ",") {
            return LabelSelector.Requirement(key: key, op: .exists, values: [])
        }
        if consume("==") || consume("=") {
            return LabelSelector.Requirement(key: key, op: .equals, values: [try value(for: key)])
        }
        if consume("!=") {
            return LabelSelector.Requirement(key: key, op: .notEquals, values: [try value(for: key)])
        }
        let keyword = word()
        let op: LabelSelector.Operator
        switch keyword {
        case "in": op = .in
        case "notin": op = .notIn
        default: throw error("found '\(keyword.isEmpty ? rest() : keyword)', expected: in, notin, =, ==, !=, gt, lt")
        }
        skipSpaces()
        guard consume("(") else { throw error("found '\(rest())', expected: '('") }
        var values: [String] = []
        while true {
            skipSpaces()
            let item = word()
            try LabelSyntax.checkValue(item, key: key)
            values.append(item)
            skipSpaces()
            if consume(")") { break }
            guard consume(",") else { throw error("found '\(rest())', expected: ',', or ')'") }
        }
        // "()" is the set of the empty value, as Kubernetes' parser reads it.
        return LabelSelector.Requirement(key: key, op: op, values: Array(Set(values)).sorted())
    }

    mutating func value(for key: String) throws(APIError) -> String {
        skipSpaces()
        let text = word()
        try LabelSyntax.checkValue(text, key: key)
        return text
    }

    /// Characters up to a space or one of `,()=!`.
    mutating func word() -> String {
        let start = position
        while position < bytes.count, !" \t,()=!".utf8.contains(bytes[position]) { position += 1 }
        return String(decoding: bytes[start..<position], as: UTF8.self)
    }

    mutating func consume(_ text: String) -> Bool {
        let expected = Array(text.utf8)
        guard position + expected.count <= bytes.count, Array(bytes[position..<position + expected.count]) == expected else { return false }
        position += expected.count
        return true
    }

    func peek() -> UInt8? { position < bytes.count ? bytes[position] : nil }

    mutating func skipSpaces() {
        while position < bytes.count, bytes[position] == UInt8(ascii: " ") || bytes[position] == UInt8(ascii: "\t") { position += 1 }
    }

    func rest() -> String { String(decoding: bytes[min(position, bytes.count)...], as: UTF8.self) }

    func error(_ detail: String) -> APIError {
        APIError.badRequest("unable to parse requirement: \(detail)")
    }
}
