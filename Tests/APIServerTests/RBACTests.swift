import APIServer
import Resources
import Testing

/// An authorizer over a fixed policy (the RBAC core without the store).
struct PolicyAuthorizer: Authorizer {
    let policy: RBACPolicy
    func allows(_ user: UserInfo, _ request: RequestInfo) -> Bool { policy.allows(user, request) }
    func rules(ofRole kind: String, name: String, namespace: String?) -> [PolicyRule]? { policy.rules(ofRole: kind, name: name, namespace: namespace) }
}

@Suite("RBAC: rules, bindings, escalation")
struct RBACTests {
    static func request(_ verb: String, _ group: String = "", _ resource: String, _ subresource: String? = nil, namespace: String? = "default", name: String? = nil) -> RequestInfo {
        RequestInfo(verb: verb, group: group, version: "v1", resource: resource, subresource: subresource, namespace: namespace, name: name)
    }

    @Test("Rule matching: wildcards, subresources and */sub, resource names only for named requests, non-resource URLs exact or by prefix")
    func ruleMatching() {
        let pods = PolicyRule(verbs: ["get", "list"], apiGroups: [""], resources: ["pods"])
        #expect(pods.allows(Self.request("get", "", "pods", name: "a")))
        #expect(!pods.allows(Self.request("delete", "", "pods", name: "a")))
        #expect(!pods.allows(Self.request("get", "apps", "pods", name: "a")))
        #expect(!pods.allows(Self.request("get", "", "pods", "status", name: "a")), "a subresource is its own resource")
        #expect(PolicyRule(verbs: ["update"], apiGroups: [""], resources: ["pods/status"]).allows(Self.request("update", "", "pods", "status", name: "a")))
        #expect(PolicyRule(verbs: ["get"], apiGroups: ["apps"], resources: ["*/scale"]).allows(Self.request("get", "apps", "deployments", "scale", name: "a")))
        #expect(!PolicyRule(verbs: ["get"], apiGroups: ["apps"], resources: ["*/scale"]).allows(Self.request("get", "apps", "deployments", name: "a")))
        let any = PolicyRule(verbs: ["*"], apiGroups: ["*"], resources: ["*"])
        #expect(any.allows(Self.request("deletecollection", "batch", "jobs")))
        #expect(!any.allows(RequestInfo(verb: "get", nonResourcePath: "/metrics")), "resource rules grant no URLs")
        let named = PolicyRule(verbs: ["get", "list"], apiGroups: [""], resources: ["configmaps"], resourceNames: ["settings"])
        #expect(named.allows(Self.request("get", "", "configmaps", name: "settings")))
        #expect(!named.allows(Self.request("get", "", "configmaps", name: "other")))
        #expect(!named.allows(Self.request("list", "", "configmaps")), "a list names nothing, so resourceNames do not grant it")
        let urls = PolicyRule(verbs: ["get"], nonResourceURLs: ["/healthz", "/apis/*"])
        #expect(urls.allows(RequestInfo(verb: "get", nonResourcePath: "/healthz")))
        #expect(urls.allows(RequestInfo(verb: "get", nonResourcePath: "/apis/apps/v1")))
        #expect(!urls.allows(RequestInfo(verb: "get", nonResourcePath: "/healthz/etcd")))
        #expect(!urls.allows(RequestInfo(verb: "post", nonResourcePath: "/healthz")))
        #expect(PolicyRule(.object(["verbs": .array(["get"]), "apiGroups": .array([""]), "resources": .array(["pods"])])) == PolicyRule(verbs: ["get"], apiGroups: [""], resources: ["pods"]))
    }

    static let policy: RBACPolicy = {
        var policy = RBACPolicy()
        for (name, rules) in BootstrapPolicy.clusterRoles {
            policy.apply(kind: "ClusterRole", namespace: nil, name: name, object: BootstrapPolicy.clusterRole(name, rules))
        }
        for binding in BootstrapPolicy.clusterRoleBindings {
            policy.apply(kind: "ClusterRoleBinding", namespace: nil, name: binding.name,
                         object: BootstrapPolicy.clusterRoleBinding(binding.name, role: binding.role, groups: binding.groups))
        }
        policy.apply(kind: "Role", namespace: "team", name: "reader", object: .object([
            "rules": .array([PolicyRule(verbs: ["get", "list"], apiGroups: [""], resources: ["pods"]).json]),
        ]))
        policy.apply(kind: "RoleBinding", namespace: "team", name: "alice-reads", object: .object([
            "roleRef": .object(["kind": "Role", "name": "reader"]),
            "subjects": .array([.object(["kind": "User", "name": "alice"]), .object(["kind": "ServiceAccount", "name": "robot"])]),
        ]))
        policy.apply(kind: "RoleBinding", namespace: "team", name: "bob-edits", object: .object([
            "roleRef": .object(["kind": "ClusterRole", "name": "edit"]),
            "subjects": .array([.object(["kind": "Group", "name": "devs"])]),
        ]))
        return policy
    }()

    @Test("Bindings: users, groups and service accounts; a RoleBinding grants only in its namespace, also when it refers to a ClusterRole; cluster-admin to system:masters")
    func bindings() {
        let alice = UserInfo(name: "alice", groups: [])
        let bob = UserInfo(name: "bob", groups: ["devs"])
        let robot = UserInfo(name: "system:serviceaccount:team:robot", groups: ["system:serviceaccounts"])
        let otherRobot = UserInfo(name: "system:serviceaccount:other:robot", groups: [])
        let admin = UserInfo(name: "root", groups: [UserInfo.mastersGroup])
        let policy = Self.policy
        #expect(policy.allows(alice, Self.request("list", "", "pods", namespace: "team")))
        #expect(!policy.allows(alice, Self.request("list", "", "pods", namespace: "default")))
        #expect(!policy.allows(alice, Self.request("list", "", "pods", namespace: nil)), "all namespaces needs a cluster-wide grant")
        #expect(policy.allows(robot, Self.request("get", "", "pods", namespace: "team", name: "p")))
        #expect(!policy.allows(otherRobot, Self.request("get", "", "pods", namespace: "team", name: "p")))
        #expect(policy.allows(bob, Self.request("create", "apps", "deployments", namespace: "team")))
        #expect(policy.allows(bob, Self.request("get", "", "secrets", namespace: "team", name: "s")))
        #expect(!policy.allows(bob, Self.request("create", "apps", "deployments", namespace: "default")))
        #expect(!policy.allows(bob, Self.request("create", "rbac.authorization.k8s.io", "roles", namespace: "team")), "edit does not write RBAC")
        #expect(policy.allows(admin, Self.request("delete", "", "nodes", namespace: nil, name: "n1")))
        #expect(policy.allows(admin, RequestInfo(verb: "get", nonResourcePath: "/metrics")))
        #expect(policy.allows(alice, RequestInfo(verb: "get", nonResourcePath: "/apis/apps/v1")), "system:discovery for every authenticated user")
        #expect(!policy.allows(alice, RequestInfo(verb: "get", nonResourcePath: "/metrics")))

        var revoked = policy
        revoked.apply(kind: "RoleBinding", namespace: "team", name: "alice-reads", object: nil)
        #expect(!revoked.allows(alice, Self.request("list", "", "pods", namespace: "team")))
        var replaced = policy
        replaced.replace(kind: "RoleBinding", objects: [])
        #expect(!replaced.allows(bob, Self.request("create", "apps", "deployments", namespace: "team")))
    }

    @Test("Escalation: a role only with held permissions, a binding only to a role whose permissions are held, unless escalate or bind is granted")
    func escalation() throws {
        var policy = Self.policy
        // carol may write roles and bindings in team, and read pods there.
        policy.apply(kind: "Role", namespace: "team", name: "rbac", object: .object(["rules": .array([
            PolicyRule(verbs: ["create", "update"], apiGroups: ["rbac.authorization.k8s.io"], resources: ["roles", "rolebindings"]).json,
            PolicyRule(verbs: ["get", "list"], apiGroups: [""], resources: ["pods"]).json,
        ])]))
        policy.apply(kind: "RoleBinding", namespace: "team", name: "carol", object: .object([
            "roleRef": .object(["kind": "Role", "name": "rbac"]), "subjects": .array([.object(["kind": "User", "name": "carol"])]),
        ]))
        let carol = UserInfo(name: "carol", groups: [])
        let authorizer = PolicyAuthorizer(policy: policy)
        let roles = try #require(ServedResources.find(group: "rbac.authorization.k8s.io", version: "v1", name: "roles"))
        let bindings = try #require(ServedResources.find(group: "rbac.authorization.k8s.io", version: "v1", name: "rolebindings"))
        func role(_ rules: [PolicyRule]) -> JSONValue { .object(["metadata": .object(["name": "r"]), "rules": .array(rules.map(\.json))]) }
        func binding(_ kind: String, _ name: String) -> JSONValue {
            .object(["metadata": .object(["name": "b"]), "roleRef": .object(["kind": .string(kind), "name": .string(name)]),
                     "subjects": .array([.object(["kind": "User", "name": "carol"])])])
        }
        try RBACEscalation.check(role([PolicyRule(verbs: ["list"], apiGroups: [""], resources: ["pods"])]), resource: roles, namespace: "team", user: carol, authorizer: authorizer)
        #expect(throws: APIError.self) {
            try RBACEscalation.check(role([PolicyRule(verbs: ["get"], apiGroups: [""], resources: ["secrets"])]), resource: roles, namespace: "team", user: carol, authorizer: authorizer)
        }
        #expect(throws: APIError.self, "holding list pods is not holding * pods") {
            try RBACEscalation.check(role([PolicyRule(verbs: ["*"], apiGroups: [""], resources: ["pods"])]), resource: roles, namespace: "team", user: carol, authorizer: authorizer)
        }
        #expect(throws: APIError.self, "what is held in team is not held in default") {
            try RBACEscalation.check(role([PolicyRule(verbs: ["list"], apiGroups: [""], resources: ["pods"])]), resource: roles, namespace: "default", user: carol, authorizer: authorizer)
        }
        try RBACEscalation.check(binding("Role", "reader"), resource: bindings, namespace: "team", user: carol, authorizer: authorizer)
        do {
            try RBACEscalation.check(binding("ClusterRole", "admin"), resource: bindings, namespace: "team", user: carol, authorizer: authorizer)
            Issue.record("binding admin was allowed")
        } catch {
            #expect(error.code == 403 && error.message.contains("is attempting to grant RBAC permissions not currently held"), "\(error.message)")
        }
        #expect(throws: APIError.self, "a role that does not exist") {
            try RBACEscalation.check(binding("Role", "missing"), resource: bindings, namespace: "team", user: carol, authorizer: authorizer)
        }
        // With bind on the admin ClusterRole, the binding is allowed.
        policy.apply(kind: "Role", namespace: "team", name: "binder", object: .object(["rules": .array([
            PolicyRule(verbs: ["bind"], apiGroups: ["rbac.authorization.k8s.io"], resources: ["clusterroles"], resourceNames: ["admin"]).json,
        ])]))
        policy.apply(kind: "RoleBinding", namespace: "team", name: "carol-binds", object: .object([
            "roleRef": .object(["kind": "Role", "name": "binder"]), "subjects": .array([.object(["kind": "User", "name": "carol"])]),
        ]))
        try RBACEscalation.check(binding("ClusterRole", "admin"), resource: bindings, namespace: "team", user: carol, authorizer: PolicyAuthorizer(policy: policy))
    }

    @Test("Aggregation: a ClusterRole labelled aggregate-to-view adds its rules to view, and through it to edit and admin; removed, they go")
    func aggregation() {
        var policy = Self.policy
        let viewer = UserInfo(name: "v", groups: [])
        policy.apply(kind: "ClusterRoleBinding", namespace: nil, name: "v-view", object: .object([
            "roleRef": .object(["kind": "ClusterRole", "name": "view"]), "subjects": .array([.object(["kind": "User", "name": "v"])]),
        ]))
        let widgets = Self.request("get", "example.com", "widgets", name: "w")
        #expect(!policy.allows(viewer, widgets))
        policy.apply(kind: "ClusterRole", namespace: nil, name: "widget-viewer", object: .object([
            "metadata": .object(["name": "widget-viewer", "labels": .object(["rbac.authorization.k8s.io/aggregate-to-view": "true"])]),
            "rules": .array([PolicyRule(verbs: ["get"], apiGroups: ["example.com"], resources: ["widgets"]).json]),
        ]))
        #expect(policy.allows(viewer, widgets))
        for role in ["edit", "admin"] {
            #expect(policy.rules(ofRole: "ClusterRole", name: role, namespace: nil)?.contains { $0.allows(widgets) } == true, "\(role) aggregates view")
        }
        #expect(policy.rules(for: viewer, namespace: "default").contains { $0.allows(widgets) })
        policy.apply(kind: "ClusterRole", namespace: nil, name: "widget-viewer", object: nil)
        #expect(!policy.allows(viewer, widgets))
    }
}
