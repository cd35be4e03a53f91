import Resources

/// Kubernetes' bootstrap RBAC policy, the part that matters for the resources served: the
/// user-facing roles (`cluster-admin`, `admin`, `edit`, `view`, with the rules Kubernetes'
/// aggregation gives them for these resources, written out), the discovery, basic-user and
/// public-info roles, and their bindings (`cluster-admin` to `system:masters`). Labelled
/// `kubernetes.io/bootstrapping: rbac-defaults` as kube-apiserver labels them.
public enum BootstrapPolicy {
    static let readVerbs = ["get", "list", "watch"]
    static let writeVerbs = ["create", "delete", "deletecollection", "patch", "update"]

    static let viewRules: [PolicyRule] = [
        PolicyRule(verbs: readVerbs, apiGroups: [""], resources: [
            "configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods", "pods/status", "pods/log",
            "replicationcontrollers", "replicationcontrollers/scale", "replicationcontrollers/status", "serviceaccounts", "services", "services/status",
            "bindings", "events", "limitranges", "namespaces", "namespaces/status", "resourcequotas", "resourcequotas/status",
        ]),
        PolicyRule(verbs: readVerbs, apiGroups: ["apps"], resources: [
            "controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale", "deployments/status",
            "replicasets", "replicasets/scale", "replicasets/status", "statefulsets", "statefulsets/scale", "statefulsets/status",
        ]),
        PolicyRule(verbs: readVerbs, apiGroups: ["autoscaling"], resources: ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
        PolicyRule(verbs: readVerbs, apiGroups: ["batch"], resources: ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
        PolicyRule(verbs: readVerbs, apiGroups: ["policy"], resources: ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
        PolicyRule(verbs: readVerbs, apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"]),
        PolicyRule(verbs: readVerbs, apiGroups: ["coordination.k8s.io"], resources: ["leases"]),
    ]

    static let editRules: [PolicyRule] = viewRules + [
        PolicyRule(verbs: writeVerbs, apiGroups: [""], resources: [
            "pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "pods/eviction", "configmaps", "endpoints",
            "persistentvolumeclaims", "replicationcontrollers", "replicationcontrollers/scale", "secrets", "serviceaccounts", "services",
        ]),
        PolicyRule(verbs: readVerbs, apiGroups: [""], resources: ["secrets", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "services/proxy"]),
        PolicyRule(verbs: ["create"], apiGroups: [""], resources: ["serviceaccounts/token"]),
        PolicyRule(verbs: ["impersonate"], apiGroups: [""], resources: ["serviceaccounts"]),
        PolicyRule(verbs: writeVerbs, apiGroups: ["apps"], resources: [
            "daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets", "replicasets/scale", "statefulsets", "statefulsets/scale",
        ]),
        PolicyRule(verbs: writeVerbs, apiGroups: ["autoscaling"], resources: ["horizontalpodautoscalers"]),
        PolicyRule(verbs: writeVerbs, apiGroups: ["batch"], resources: ["cronjobs", "jobs"]),
        PolicyRule(verbs: writeVerbs, apiGroups: ["policy"], resources: ["poddisruptionbudgets"]),
        PolicyRule(verbs: writeVerbs, apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"]),
        PolicyRule(verbs: writeVerbs, apiGroups: ["coordination.k8s.io"], resources: ["leases"]),
    ]

    static let adminRules: [PolicyRule] = editRules + [
        PolicyRule(verbs: ["create"], apiGroups: ["authorization.k8s.io"], resources: ["localsubjectaccessreviews"]),
        PolicyRule(verbs: writeVerbs + readVerbs, apiGroups: ["rbac.authorization.k8s.io"], resources: ["rolebindings", "roles"]),
    ]

    public static let clusterRoles: [(name: String, rules: [PolicyRule])] = [
        ("cluster-admin", [PolicyRule(verbs: ["*"], apiGroups: ["*"], resources: ["*"]), PolicyRule(verbs: ["*"], nonResourceURLs: ["*"])]),
        ("admin", adminRules),
        ("edit", editRules),
        ("view", viewRules),
        ("system:discovery", [PolicyRule(verbs: ["get"], nonResourceURLs: ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"])]),
        ("system:basic-user", [PolicyRule(verbs: ["create"], apiGroups: ["authorization.k8s.io"], resources: ["selfsubjectaccessreviews", "selfsubjectrulesreviews"])]),
        ("system:public-info-viewer", [PolicyRule(verbs: ["get"], nonResourceURLs: ["/healthz", "/livez", "/readyz", "/version", "/version/"])]),
    ]

    public static let clusterRoleBindings: [(name: String, role: String, groups: [String])] = [
        ("cluster-admin", "cluster-admin", [UserInfo.mastersGroup]),
        ("system:discovery", "system:discovery", [UserInfo.authenticatedGroup]),
        ("system:basic-user", "system:basic-user", [UserInfo.authenticatedGroup]),
        ("system:public-info-viewer", "system:public-info-viewer", [UserInfo.authenticatedGroup, "system:unauthenticated"]),
    ]

    static let metadataLabels: JSONValue = .object(["kubernetes.io/bootstrapping": "rbac-defaults"])
    static let metadataAnnotations: JSONValue = .object(["rbac.authorization.kubernetes.io/autoupdate": "true"])

    /// The user-facing roles aggregate, as Kubernetes': a ClusterRole labelled
    /// `rbac.authorization.k8s.io/aggregate-to-view: "true"` adds its rules to view (and so to
    /// edit and admin, which aggregate view and edit in turn).
    static let aggregates: [String: (labels: [String], selects: String)] = [
        "admin": ([], "aggregate-to-admin"),
        "edit": (["aggregate-to-admin"], "aggregate-to-edit"),
        "view": (["aggregate-to-edit"], "aggregate-to-view"),
    ]

    public static func clusterRole(_ name: String, _ rules: [PolicyRule]) -> JSONValue {
        var labels = metadataLabels.objectValue ?? [:]
        var fields: [String: JSONValue] = ["apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "rules": .array(rules.map(\.json))]
        if let aggregate = aggregates[name] {
            for label in aggregate.labels { labels["rbac.authorization.k8s.io/\(label)"] = "true" }
            fields["aggregationRule"] = .object(["clusterRoleSelectors": .array([
                .object(["matchLabels": .object(["rbac.authorization.k8s.io/\(aggregate.selects)": "true"])]),
            ])])
        }
        fields["metadata"] = .object(["name": .string(name), "labels": .object(labels), "annotations": metadataAnnotations])
        return .object(fields)
    }

    public static func clusterRoleBinding(_ name: String, role: String, groups: [String]) -> JSONValue {
        .object([
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": .object(["name": .string(name), "labels": metadataLabels, "annotations": metadataAnnotations]),
            "roleRef": .object(["apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": .string(role)]),
            "subjects": .array(groups.map { .object(["apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": .string($0)]) }),
        ])
    }

    /// Every bootstrap RBAC object, by resource name.
    public static var objects: [(resource: String, object: JSONValue)] {
        clusterRoles.map { ("clusterroles", clusterRole($0.name, $0.rules)) }
            + clusterRoleBindings.map { ("clusterrolebindings", clusterRoleBinding($0.name, role: $0.role, groups: $0.groups)) }
    }
}
