import Foundation
import Resources

/// A served resource: where its objects live in the REST API.
public struct ResourceRef: Sendable, Hashable, CustomStringConvertible {
    /// "" for the core group.
    public var group: String
    public var version: String
    /// The URL's plural name: `pods`, `deployments`.
    public var plural: String
    public var kind: String
    public var namespaced: Bool

    public init(group: String, version: String, plural: String, kind: String, namespaced: Bool) {
        self.group = group
        self.version = version
        self.plural = plural
        self.kind = kind
        self.namespaced = namespaced
    }

    public var apiVersion: String { group.isEmpty ? version : "\(group)/\(version)" }

    /// `pods`, `deployments.apps`: how kubectl names it in messages.
    public var description: String { group.isEmpty ? plural : "\(plural).\(group)" }

    /// The collection's path (`namespace` nil: across all namespaces, or a cluster-scoped one).
    public func path(namespace: String?, name: String? = nil, subresource: String? = nil) -> String {
        var path = group.isEmpty ? "/api/\(version)" : "/apis/\(group)/\(version)"
        if namespaced, let namespace { path += "/namespaces/\(escaped(namespace))" }
        path += "/\(plural)"
        if let name { path += "/\(escaped(name))" }
        if let subresource { path += "/\(subresource)" }
        return path
    }

    private func escaped(_ segment: String) -> String {
        segment.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(.init(charactersIn: "/?#"))) ?? segment
    }

    public static let namespaces = ResourceRef(group: "", version: "v1", plural: "namespaces", kind: "Namespace", namespaced: false)
    public static let pods = ResourceRef(group: "", version: "v1", plural: "pods", kind: "Pod", namespaced: true)
    public static let nodes = ResourceRef(group: "", version: "v1", plural: "nodes", kind: "Node", namespaced: false)
    public static let services = ResourceRef(group: "", version: "v1", plural: "services", kind: "Service", namespaced: true)
    public static let endpoints = ResourceRef(group: "", version: "v1", plural: "endpoints", kind: "Endpoints", namespaced: true)
    public static let configMaps = ResourceRef(group: "", version: "v1", plural: "configmaps", kind: "ConfigMap", namespaced: true)
    public static let secrets = ResourceRef(group: "", version: "v1", plural: "secrets", kind: "Secret", namespaced: true)
    public static let serviceAccounts = ResourceRef(group: "", version: "v1", plural: "serviceaccounts", kind: "ServiceAccount", namespaced: true)
    public static let events = ResourceRef(group: "", version: "v1", plural: "events", kind: "Event", namespaced: true)
    public static let deployments = ResourceRef(group: "apps", version: "v1", plural: "deployments", kind: "Deployment", namespaced: true)
    public static let replicaSets = ResourceRef(group: "apps", version: "v1", plural: "replicasets", kind: "ReplicaSet", namespaced: true)
    public static let daemonSets = ResourceRef(group: "apps", version: "v1", plural: "daemonsets", kind: "DaemonSet", namespaced: true)
    public static let statefulSets = ResourceRef(group: "apps", version: "v1", plural: "statefulsets", kind: "StatefulSet", namespaced: true)
    public static let jobs = ResourceRef(group: "batch", version: "v1", plural: "jobs", kind: "Job", namespaced: true)
    public static let leases = ResourceRef(group: "coordination.k8s.io", version: "v1", plural: "leases", kind: "Lease", namespaced: true)
    public static let endpointSlices = ResourceRef(group: "discovery.k8s.io", version: "v1", plural: "endpointslices", kind: "EndpointSlice", namespaced: true)
    public static let roles = ResourceRef(group: "rbac.authorization.k8s.io", version: "v1", plural: "roles", kind: "Role", namespaced: true)
    public static let clusterRoles = ResourceRef(group: "rbac.authorization.k8s.io", version: "v1", plural: "clusterroles", kind: "ClusterRole", namespaced: false)
    public static let roleBindings = ResourceRef(group: "rbac.authorization.k8s.io", version: "v1", plural: "rolebindings", kind: "RoleBinding", namespaced: true)
    public static let clusterRoleBindings = ResourceRef(group: "rbac.authorization.k8s.io", version: "v1", plural: "clusterrolebindings", kind: "ClusterRoleBinding", namespaced: false)
}

/// A typed Kubernetes object the client reads and writes (the generated `Resources` types).
public protocol APIObject: Codable, Sendable {
    static var resource: ResourceRef { get }
    var metadata: MetaV1.ObjectMeta? { get set }
}

extension APIObject {
    public var name: String { metadata?.name ?? "" }
    public var namespace: String? { metadata?.namespace }
    public var resourceVersion: String? { metadata?.resourceVersion }
    /// `namespace/name` (or `name`): the key of informers' caches and work queues.
    public var key: String { ObjectKey(namespace: metadata?.namespace, name: metadata?.name ?? "").description }
}

/// `namespace/name`, or `name` for a cluster-scoped object.
public struct ObjectKey: Sendable, Hashable, CustomStringConvertible {
    public var namespace: String?
    public var name: String

    public init(namespace: String?, name: String) {
        self.namespace = namespace.flatMap { $0.isEmpty ? nil : $0 }
        self.name = name
    }

    public init(_ key: String) {
        let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
        self.init(namespace: parts.count == 2 ? parts[0] : nil, name: parts.last ?? "")
    }

    public var description: String { namespace.map { "\($0)/\(name)" } ?? name }
}

extension CoreV1.Namespace: APIObject { public static var resource: ResourceRef { .namespaces } }
extension CoreV1.Pod: APIObject { public static var resource: ResourceRef { .pods } }
extension CoreV1.Node: APIObject { public static var resource: ResourceRef { .nodes } }
extension CoreV1.Service: APIObject { public static var resource: ResourceRef { .services } }
extension CoreV1.Endpoints: APIObject { public static var resource: ResourceRef { .endpoints } }
extension CoreV1.ConfigMap: APIObject { public static var resource: ResourceRef { .configMaps } }
extension CoreV1.Secret: APIObject { public static var resource: ResourceRef { .secrets } }
extension CoreV1.ServiceAccount: APIObject { public static var resource: ResourceRef { .serviceAccounts } }
extension CoreV1.Event: APIObject { public static var resource: ResourceRef { .events } }
extension AppsV1.Deployment: APIObject { public static var resource: ResourceRef { .deployments } }
extension AppsV1.ReplicaSet: APIObject { public static var resource: ResourceRef { .replicaSets } }
extension AppsV1.DaemonSet: APIObject { public static var resource: ResourceRef { .daemonSets } }
extension AppsV1.StatefulSet: APIObject { public static var resource: ResourceRef { .statefulSets } }
extension BatchV1.Job: APIObject { public static var resource: ResourceRef { .jobs } }
extension CoordinationV1.Lease: APIObject { public static var resource: ResourceRef { .leases } }
extension DiscoveryV1.EndpointSlice: APIObject { public static var resource: ResourceRef { .endpointSlices } }
extension RbacV1.Role: APIObject { public static var resource: ResourceRef { .roles } }
extension RbacV1.ClusterRole: APIObject { public static var resource: ResourceRef { .clusterRoles } }
extension RbacV1.RoleBinding: APIObject { public static var resource: ResourceRef { .roleBindings } }
extension RbacV1.ClusterRoleBinding: APIObject { public static var resource: ResourceRef { .clusterRoleBindings } }
