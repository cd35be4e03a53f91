/// Every resource the API server serves, with what discovery says of it (as kube-apiserver
/// 1.33 lists them: short names, categories, verbs, subresources) and its store prefix
/// (Kubernetes' own: services under `/registry/services/specs`, nodes under `/registry/minions`).
public enum ServedResources {
    static let readWrite = ResourceType.allVerbs

    public static let all: [ResourceType] = [
        // core/v1
        ResourceType(group: "", version: "v1", name: "namespaces", singularName: "namespace", kind: "Namespace", namespaced: false,
                     shortNames: ["ns"], verbs: ["create", "delete", "get", "list", "patch", "update", "watch"], subresources: ["status", "finalize"]),
        ResourceType(group: "", version: "v1", name: "pods", singularName: "pod", kind: "Pod", namespaced: true,
                     shortNames: ["po"], categories: ["all"], subresources: ["status", "binding", "eviction"]),
        ResourceType(group: "", version: "v1", name: "nodes", singularName: "node", kind: "Node", namespaced: false,
                     shortNames: ["no"], subresources: ["status"], keyPrefix: "/registry/minions"),
        ResourceType(group: "", version: "v1", name: "services", singularName: "service", kind: "Service", namespaced: true,
                     shortNames: ["svc"], categories: ["all"], verbs: ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                     subresources: ["status"], keyPrefix: "/registry/services/specs"),
        ResourceType(group: "", version: "v1", name: "endpoints", singularName: "endpoints", kind: "Endpoints", namespaced: true,
                     shortNames: ["ep"], keyPrefix: "/registry/services/endpoints"),
        ResourceType(group: "", version: "v1", name: "configmaps", singularName: "configmap", kind: "ConfigMap", namespaced: true, shortNames: ["cm"]),
        ResourceType(group: "", version: "v1", name: "secrets", singularName: "secret", kind: "Secret", namespaced: true),
        ResourceType(group: "", version: "v1", name: "serviceaccounts", singularName: "serviceaccount", kind: "ServiceAccount", namespaced: true,
                     shortNames: ["sa"]),
        ResourceType(group: "", version: "v1", name: "events", singularName: "event", kind: "Event", namespaced: true, shortNames: ["ev"]),
        // apps/v1
        ResourceType(group: "apps", version: "v1", name: "deployments", singularName: "deployment", kind: "Deployment", namespaced: true,
                     shortNames: ["deploy"], categories: ["all"], subresources: ["status", "scale"]),
        ResourceType(group: "apps", version: "v1", name: "replicasets", singularName: "replicaset", kind: "ReplicaSet", namespaced: true,
                     shortNames: ["rs"], categories: ["all"], subresources: ["status", "scale"]),
        ResourceType(group: "apps", version: "v1", name: "daemonsets", singularName: "daemonset", kind: "DaemonSet", namespaced: true,
                     shortNames: ["ds"], categories: ["all"], subresources: ["status"]),
        ResourceType(group: "apps", version: "v1", name: "statefulsets", singularName: "statefulset", kind: "StatefulSet", namespaced: true,
                     shortNames: ["sts"], categories: ["all"], subresources: ["status", "scale"]),
        // batch/v1
        ResourceType(group: "batch", version: "v1", name: "jobs", singularName: "job", kind: "Job", namespaced: true,
                     categories: ["all"], subresources: ["status"]),
        // coordination.k8s.io/v1
        ResourceType(group: "coordination.k8s.io", version: "v1", name: "leases", singularName: "lease", kind: "Lease", namespaced: true),
        // discovery.k8s.io/v1
        ResourceType(group: "discovery.k8s.io", version: "v1", name: "endpointslices", singularName: "endpointslice", kind: "EndpointSlice", namespaced: true),
        // rbac.authorization.k8s.io/v1
        ResourceType(group: "rbac.authorization.k8s.io", version: "v1", name: "roles", singularName: "role", kind: "Role", namespaced: true),
        ResourceType(group: "rbac.authorization.k8s.io", version: "v1", name: "rolebindings", singularName: "rolebinding", kind: "RoleBinding", namespaced: true),
        ResourceType(group: "rbac.authorization.k8s.io", version: "v1", name: "clusterroles", singularName: "clusterrole", kind: "ClusterRole", namespaced: false),
        ResourceType(group: "rbac.authorization.k8s.io", version: "v1", name: "clusterrolebindings", singularName: "clusterrolebinding",
                     kind: "ClusterRoleBinding", namespaced: false),
        // authorization.k8s.io/v1
        ResourceType(group: "authorization.k8s.io", version: "v1", name: "selfsubjectaccessreviews", singularName: "selfsubjectaccessreview",
                     kind: "SelfSubjectAccessReview", namespaced: false, verbs: ["create"]),
        ResourceType(group: "authorization.k8s.io", version: "v1", name: "selfsubjectrulesreviews", singularName: "selfsubjectrulesreview",
                     kind: "SelfSubjectRulesReview", namespaced: false, verbs: ["create"]),
    ]

    /// The resource at `group`/`version` named `name` (its plural), if served.
    public static func find(group: String, version: String, name: String) -> ResourceType? {
        all.first { $0.group == group && $0.version == version && $0.name == name }
    }

    /// What a name a user types means (`po`, `pod`, `pods`, `deploy`, `deployments.apps`): every
    /// resource it may be, for `raftkube get` and friends.
    public static func resolve(_ typed: String) -> [ResourceType] {
        let lowered = typed.lowercased()
        let parts = lowered.split(separator: ".", maxSplits: 1).map(String.init)
        let group = parts.count == 2 ? parts[1] : nil
        return all.filter { resource in
            guard group == nil || resource.group == group else { return false }
            let name = parts[0]
            return resource.name == name || resource.singularName == name || resource.shortNames.contains(name) || resource.kind.lowercased() == name
        }
    }

    /// The group versions served, core first.
    public static var groupVersions: [(group: String, version: String)] {
        var seen: [(String, String)] = []
        for resource in all where !seen.contains(where: { $0 == (resource.group, resource.version) }) { seen.append((resource.group, resource.version)) }
        return seen
    }
}
