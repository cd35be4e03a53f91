/// Kubernetes' rules for object names, with its messages (k8s.io/apimachinery's validation).
public enum NameRules {
    static let subdomainMessage = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    static let labelMessage = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"

    /// What is wrong with `name` as a DNS-1123 subdomain (most objects' names), or nothing.
    public static func dnsSubdomainProblems(_ name: String) -> [String] {
        var problems: [String] = []
        if name.utf8.count > 253 { problems.append("must be no more than 253 characters") }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        if name.isEmpty || !labels.allSatisfy({ isLabel(Array($0.utf8)) }) { problems.append(subdomainMessage) }
        return problems
    }

    /// What is wrong with `name` as a DNS-1123 label (namespaces', services' names), or nothing.
    public static func dnsLabelProblems(_ name: String) -> [String] {
        var problems: [String] = []
        if name.utf8.count > 63 { problems.append("must be no more than 63 characters") }
        if !isLabel(Array(name.utf8)) { problems.append(labelMessage) }
        return problems
    }

    static func isLabel(_ bytes: [UInt8]) -> Bool {
        guard let first = bytes.first, let last = bytes.last, isLowerAlphanumeric(first), isLowerAlphanumeric(last) else { return false }
        return bytes.allSatisfy { isLowerAlphanumeric($0) || $0 == UInt8(ascii: "-") }
    }

    static func isLowerAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }

    static let label1035Message = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"

    /// What is wrong with `name` as a DNS-1035 label (services' names: they become DNS names
    /// and environment variables, so they start with a letter), or nothing.
    public static func dns1035LabelProblems(_ name: String) -> [String] {
        var problems: [String] = []
        if name.utf8.count > 63 { problems.append("must be no more than 63 characters") }
        let bytes = Array(name.utf8)
        if !isLabel(bytes) || !(UInt8(ascii: "a")...UInt8(ascii: "z")).contains(bytes[0]) { problems.append(label1035Message) }
        return problems
    }

    /// What is wrong with `name` as the name of an object of `resource`, by Kubernetes' rule for
    /// it: namespaces DNS-1123 labels, services DNS-1035 labels, RBAC objects (`system:...`)
    /// path segments only, the rest DNS-1123 subdomains.
    public static func problems(_ name: String, for resource: ResourceType) -> [String] {
        let segment = pathSegmentProblems(name)
        switch (resource.group, resource.name) {
        case ("", "namespaces"): return segment + dnsLabelProblems(name)
        case ("", "services"): return segment + dns1035LabelProblems(name)
        case ("rbac.authorization.k8s.io", _): return segment
        default: return segment + dnsSubdomainProblems(name)
        }
    }

    /// A path segment name (what every name must be at least: it is part of a URL and a key).
    public static func pathSegmentProblems(_ name: String) -> [String] {
        if name == "." || name == ".." { return ["may not be '\(name)'"] }
        if name.contains("/") { return ["may not contain '/'"] }
        if name.contains("%") { return ["may not contain '%'"] }
        return []
    }
}
