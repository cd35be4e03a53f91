/// One served resource: what discovery lists, what the router matches, and where its objects
/// live in the store (Kubernetes' own key layout under `/registry/`).
public struct ResourceType: Sendable, Hashable {
    /// "" for the core group.
    public var group: String
    public var version: String
    /// The plural, as in URLs: `pods`, `deployments`.
    public var name: String
    public var singularName: String
    public var kind: String
    public var namespaced: Bool
    public var shortNames: [String]
    public var categories: [String]
    public var verbs: [String]
    /// `status`, `scale`, `binding`, `eviction`.
    public var subresources: [String]
    /// The store prefix of its objects, without the trailing slash (`/registry/pods`).
    public var keyPrefix: String

    public init(group: String, version: String, name: String, singularName: String, kind: String, namespaced: Bool,
                shortNames: [String] = [], categories: [String] = [], verbs: [String] = ResourceType.allVerbs,
                subresources: [String] = [], keyPrefix: String? = nil) {
        self.group = group
        self.version = version
        self.name = name
        self.singularName = singularName
        self.kind = kind
        self.namespaced = namespaced
        self.shortNames = shortNames
        self.categories = categories
        self.verbs = verbs
        self.subresources = subresources
        self.keyPrefix = keyPrefix ?? "/registry/\(name)"
    }

    public static let allVerbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

    /// `v1` or `apps/v1`.
    public var apiVersion: String { group.isEmpty ? version : "\(group)/\(version)" }

    /// `pods`, or `deployments.apps`: how Kubernetes names a resource in its messages.
    public var qualifiedName: String { group.isEmpty ? name : "\(name).\(group)" }

    /// The store key of one object: `/registry/pods/default/web`, `/registry/namespaces/default`.
    public func key(namespace: String?, name: String) -> [UInt8] {
        Array((namespaced ? "\(keyPrefix)/\(namespace ?? "")/\(name)" : "\(keyPrefix)/\(name)").utf8)
    }

    /// The prefix of every object of this resource, or of one namespace's (`/registry/pods/default/`).
    public func prefix(namespace: String?) -> [UInt8] {
        if namespaced, let namespace { return Array("\(keyPrefix)/\(namespace)/".utf8) }
        return Array("\(keyPrefix)/".utf8)
    }
}
