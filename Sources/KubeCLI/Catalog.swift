import KubeClient
import Resources

/// The resources a server serves, from its discovery documents (`/api/v1`, `/apis`, each
/// group's preferred version), and the names a user may give them: plural, singular, kind,
/// short names (`po`, `deploy`), `plural.group`, and categories (`all`).
public struct ResourceCatalog: Sendable {
    public struct Entry: Sendable, Equatable {
        public var ref: ResourceRef
        public var singular: String
        public var shortNames: [String]
        public var categories: [String]
        public var verbs: [String]
    }

    public var entries: [Entry]

    public init(entries: [Entry]) {
        self.entries = entries
    }

    public static func discover(_ client: KubeClient) async throws -> ResourceCatalog {
        var entries = try await resources(client, path: "/api/v1", group: "", version: "v1")
        let groups = try await client.request(.GET, "/apis").json
        for group in groups["groups"]?.arrayValue ?? [] {
            guard let name = group["name"]?.stringValue, let version = group["preferredVersion"]?["version"]?.stringValue else { continue }
            entries += try await resources(client, path: "/apis/\(name)/\(version)", group: name, version: version)
        }
        return ResourceCatalog(entries: entries)
    }

    static func resources(_ client: KubeClient, path: String, group: String, version: String) async throws -> [Entry] {
        let list = try await client.request(.GET, path).json
        return entries(list, group: group, version: version)
    }

    /// The entries of one APIResourceList (subresources left out).
    public static func entries(_ list: JSONValue, group: String, version: String) -> [Entry] {
        (list["resources"]?.arrayValue ?? []).compactMap { resource in
            guard let name = resource["name"]?.stringValue, !name.contains("/"), let kind = resource["kind"]?.stringValue else { return nil }
            func strings(_ key: String) -> [String] { resource[key]?.arrayValue?.compactMap(\.stringValue) ?? [] }
            return Entry(ref: ResourceRef(group: group, version: version, plural: name, kind: kind, namespaced: resource["namespaced"] == .bool(true)),
                         singular: resource["singularName"]?.stringValue ?? kind.lowercased(), shortNames: strings("shortNames"),
                         categories: strings("categories"), verbs: strings("verbs"))
        }
    }

    /// The resource a user's word names: `pods`, `pod`, `po`, `Pod`, `deployments.apps`, `deploy.apps`, `deployments.v1.apps`.
    public func resolve(_ word: String) throws -> Entry {
        let lowered = word.lowercased()
        var name = lowered
        var group: String?
        var version: String?
        if let dot = lowered.firstIndex(of: ".") {
            name = String(lowered[..<dot])
            let rest = String(lowered[lowered.index(after: dot)...])
            let parts = rest.split(separator: ".", maxSplits: 1).map(String.init)
            if parts.count == 2, parts[0].first == "v", parts[0].dropFirst().first?.isNumber == true {
                version = parts[0]
                group = parts[1]
            } else {
                group = rest
            }
        }
        let matching = entries.filter { entry in
            (group == nil || entry.ref.group == group || (group == "core" && entry.ref.group.isEmpty)) && (version == nil || entry.ref.version == version)
        }
        for match in [{ (e: Entry) in e.ref.plural == name }, { $0.singular == name }, { $0.shortNames.contains(name) }, { $0.ref.kind.lowercased() == name }] {
            // Core first, as kubectl prefers it (`events` is core/v1 before events.k8s.io).
            if let found = matching.first(where: match) { return found }
        }
        throw CLIError("the server doesn't have a resource type \"\(word)\"")
    }

    /// `all` and other categories name several resources; any other word names one.
    public func expand(_ word: String) throws -> [Entry] {
        let category = entries.filter { $0.categories.contains(word.lowercased()) }
        if !category.isEmpty, (try? resolve(word)) == nil { return category }
        return [try resolve(word)]
    }

    /// The entry for a manifest's `apiVersion` and `kind`.
    public func entry(apiVersion: String, kind: String) throws -> Entry {
        let parts = apiVersion.split(separator: "/").map(String.init)
        let (group, version) = parts.count == 2 ? (parts[0], parts[1]) : ("", parts.first ?? "")
        if let found = entries.first(where: { $0.ref.kind == kind && $0.ref.group == group && $0.ref.version == version }) { return found }
        if entries.contains(where: { $0.ref.kind == kind && $0.ref.group == group }) {
            throw CLIError("no matches for kind \"\(kind)\" in version \"\(apiVersion)\": this server serves \(kind) in \(entries.filter { $0.ref.kind == kind }.map(\.ref.apiVersion).joined(separator: ", "))")
        }
        throw CLIError("no matches for kind \"\(kind)\" in version \"\(apiVersion)\"")
    }
}

extension ResourceRef {
    /// `pod`, `deployment.apps`: the prefix kubectl prints before a name (`-o name`, "created").
    public var typeName: String { group.isEmpty ? kind.lowercased() : "\(kind.lowercased()).\(group)" }
}

public struct CLIError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
