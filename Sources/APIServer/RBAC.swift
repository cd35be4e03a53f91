import Foundation
import Resources
import Synchronization

/// One rule of a Role or ClusterRole (rbac.authorization.k8s.io/v1 PolicyRule).
public struct PolicyRule: Sendable, Equatable, CustomStringConvertible {
    public var verbs: [String]
    public var apiGroups: [String]
    public var resources: [String]
    public var resourceNames: [String]
    public var nonResourceURLs: [String]

    public init(verbs: [String], apiGroups: [String] = [], resources: [String] = [], resourceNames: [String] = [], nonResourceURLs: [String] = []) {
        self.verbs = verbs
        self.apiGroups = apiGroups
        self.resources = resources
        self.resourceNames = resourceNames
        self.nonResourceURLs = nonResourceURLs
    }

    /// The rule as a role's JSON holds it.
    public init(_ json: JSONValue) {
        func strings(_ key: String) -> [String] { json[key]?.arrayValue?.compactMap(\.stringValue) ?? [] }
        self.init(verbs: strings("verbs"), apiGroups: strings("apiGroups"), resources: strings("resources"),
                  resourceNames: strings("resourceNames"), nonResourceURLs: strings("nonResourceURLs"))
    }

    public var json: JSONValue {
        var object: [String: JSONValue] = ["verbs": .array(verbs.map(JSONValue.string))]
        if !apiGroups.isEmpty || nonResourceURLs.isEmpty { object["apiGroups"] = .array(apiGroups.map(JSONValue.string)) }
        if !resources.isEmpty { object["resources"] = .array(resources.map(JSONValue.string)) }
        if !resourceNames.isEmpty { object["resourceNames"] = .array(resourceNames.map(JSONValue.string)) }
        if !nonResourceURLs.isEmpty { object["nonResourceURLs"] = .array(nonResourceURLs.map(JSONValue.string)) }
        return .object(object)
    }

    /// Whether the rule allows `request`, as Kubernetes' RBAC matches: `*` for any verb, group or
    /// resource; `resource/subresource` or `*/subresource`; resource names only for named
    /// requests; non-resource URLs exactly or by a trailing `*`.
    public func allows(_ request: RequestInfo) -> Bool {
        guard verbs.contains("*") || verbs.contains(request.verb) else { return false }
        guard request.isResourceRequest else {
            return nonResourceURLs.contains { url in
                url == "*" || url == request.path || (url.hasSuffix("*") && request.path.hasPrefix(url.dropLast()))
            }
        }
        guard apiGroups.contains("*") || apiGroups.contains(request.group) else { return false }
        let combined = request.subresource.map { "\(request.resource)/\($0)" } ?? request.resource
        let resourceMatches = resources.contains { resource in
            resource == "*" || resource == combined || (request.subresource != nil && resource == "*/\(request.subresource!)")
        }
        guard resourceMatches else { return false }
        if resourceNames.isEmpty { return true }
        return request.name.map(resourceNames.contains) ?? false
    }

    /// Kubernetes' way of printing a rule in an escalation refusal.
    public var description: String {
        func list(_ values: [String]) -> String { "[" + values.map { "\"\($0)\"" }.joined(separator: " ") + "]" }
        var parts: [String] = []
        if !apiGroups.isEmpty { parts.append("APIGroups:\(list(apiGroups))") }
        if !resources.isEmpty { parts.append("Resources:\(list(resources))") }
        if !resourceNames.isEmpty { parts.append("ResourceNames:\(list(resourceNames))") }
        if !nonResourceURLs.isEmpty { parts.append("NonResourceURLs:\(list(nonResourceURLs))") }
        parts.append("Verbs:\(list(verbs))")
        return "{" + parts.joined(separator: ", ") + "}"
    }

    /// Every single permission the rule grants (one verb, group, resource, name each; `*` kept
    /// as itself), as requests: holding each of them is holding the rule.
    public var atomicRequests: [RequestInfo] {
        var requests: [RequestInfo] = []
        for verb in verbs {
            for url in nonResourceURLs { requests.append(RequestInfo(verb: verb, nonResourcePath: url)) }
            for group in apiGroups {
                for resource in resources {
                    let parts = resource.split(separator: "/", maxSplits: 1).map(String.init)
                    let names: [String?] = resourceNames.isEmpty ? [nil] : resourceNames
                    for name in names {
                        requests.append(RequestInfo(verb: verb, group: group, version: "", resource: parts[0], subresource: parts.count == 2 ? parts[1] : nil,
                                                    namespace: nil, name: name))
                    }
                }
            }
        }
        return requests
    }
}

/// Who a binding names (rbac/v1 Subject): a user, a group, or a service account.
public struct Subject: Sendable, Equatable {
    public var kind: String
    public var name: String
    public var namespace: String?

    public init(kind: String, name: String, namespace: String? = nil) {
        self.kind = kind
        self.name = name
        self.namespace = namespace
    }

    func matches(_ user: UserInfo, bindingNamespace: String?) -> Bool {
        switch kind {
        case "User": return user.name == name
        case "Group": return user.groups.contains(name)
        case "ServiceAccount":
            let namespace = (namespace?.isEmpty == false ? namespace : bindingNamespace) ?? ""
            return user.name == "system:serviceaccount:\(namespace):\(name)"
        default: return false
        }
    }
}

/// A RoleBinding or ClusterRoleBinding, reduced to what authorization needs.
public struct Binding: Sendable, Equatable {
    /// `Role` or `ClusterRole`.
    public var roleKind: String
    public var roleName: String
    public var subjects: [Subject]

    public init(roleKind: String, roleName: String, subjects: [Subject]) {
        self.roleKind = roleKind
        self.roleName = roleName
        self.subjects = subjects
    }

    public init(_ json: JSONValue) {
        roleKind = json["roleRef"]?["kind"]?.stringValue ?? ""
        roleName = json["roleRef"]?["name"]?.stringValue ?? ""
        subjects = (json["subjects"]?.arrayValue ?? []).map { subject in
            Subject(kind: subject["kind"]?.stringValue ?? "", name: subject["name"]?.stringValue ?? "", namespace: subject["namespace"]?.stringValue)
        }
    }
}

/// The RBAC objects of the cluster, as the authorizer evaluates them: cluster roles and their
/// bindings apply everywhere; a namespace's bindings grant their role's rules in that
/// namespace only (a RoleBinding may refer to a ClusterRole, granting its rules there).
public struct RBACPolicy: Sendable, Equatable {
    /// Each ClusterRole's rules as evaluated: its own, and for an aggregated role
    /// (`aggregationRule.clusterRoleSelectors`) those of every ClusterRole its selectors match,
    /// transitively, as Kubernetes' aggregation controller writes them.
    public private(set) var clusterRoles: [String: [PolicyRule]] = [:]
    var ownClusterRoles: [String: [PolicyRule]] = [:]
    var clusterRoleLabels: [String: [String: String]] = [:]
    var aggregation: [String: [LabelSelector]] = [:]
    /// By namespace, then name.
    public var roles: [String: [String: [PolicyRule]]] = [:]
    public var clusterRoleBindings: [String: Binding] = [:]
    /// By namespace, then name.
    public var roleBindings: [String: [String: Binding]] = [:]

    public init() {}

    public func allows(_ user: UserInfo, _ request: RequestInfo) -> Bool {
        for binding in clusterRoleBindings.values where binding.roleKind == "ClusterRole" && binding.subjects.contains(where: { $0.matches(user, bindingNamespace: nil) }) {
            if clusterRoles[binding.roleName]?.contains(where: { $0.allows(request) }) == true { return true }
        }
        guard request.isResourceRequest, let namespace = request.namespace else { return false }
        for binding in (roleBindings[namespace] ?? [:]).values where binding.subjects.contains(where: { $0.matches(user, bindingNamespace: namespace) }) {
            if rules(ofRole: binding.roleKind, name: binding.roleName, namespace: namespace)?.contains(where: { $0.allows(request) }) == true { return true }
        }
        return false
    }

    /// Every rule bound to `user` that applies in `namespace`: cluster-wide bindings' and the
    /// namespace's.
    public func rules(for user: UserInfo, namespace: String) -> [PolicyRule] {
        var rules: [PolicyRule] = []
        for binding in clusterRoleBindings.values where binding.roleKind == "ClusterRole" && binding.subjects.contains(where: { $0.matches(user, bindingNamespace: nil) }) {
            rules += clusterRoles[binding.roleName] ?? []
        }
        for binding in (roleBindings[namespace] ?? [:]).values where binding.subjects.contains(where: { $0.matches(user, bindingNamespace: namespace) }) {
            rules += self.rules(ofRole: binding.roleKind, name: binding.roleName, namespace: namespace) ?? []
        }
        return rules
    }

    /// The rules of the role a binding in `namespace` (nil: a ClusterRoleBinding) refers to.
    public func rules(ofRole kind: String, name: String, namespace: String?) -> [PolicyRule]? {
        switch kind {
        case "ClusterRole": clusterRoles[name]
        case "Role": namespace.flatMap { roles[$0]?[name] }
        default: nil
        }
    }

    /// The evaluated rules of every ClusterRole from the own rules and aggregation rules.
    mutating func aggregate() {
        var effective = ownClusterRoles
        for _ in 0..<8 {
            var next = ownClusterRoles
            for (name, selectors) in aggregation where !selectors.isEmpty {
                for (other, labels) in clusterRoleLabels where other != name && selectors.contains(where: { $0.matches(labels) }) {
                    for rule in effective[other] ?? [] where !(next[name]?.contains(rule) ?? false) { next[name, default: []].append(rule) }
                }
            }
            if next == effective { break }
            effective = next
        }
        clusterRoles = effective
    }

    /// Takes in a change to an RBAC object (`object` nil: deleted).
    public mutating func apply(kind: String, namespace: String?, name: String, object: JSONValue?) {
        let ruleList = object.map { ($0["rules"]?.arrayValue ?? []).map(PolicyRule.init) }
        let binding = object.map(Binding.init)
        switch kind {
        case "ClusterRole":
            ownClusterRoles[name] = ruleList
            var labels: [String: String] = [:]
            for (key, value) in object?.metadata("labels")?.objectValue ?? [:] { labels[key] = value.stringValue }
            clusterRoleLabels[name] = object == nil ? nil : labels
            aggregation[name] = object?["aggregationRule"]?["clusterRoleSelectors"]?.arrayValue.map { selectors in
                selectors.compactMap { selector in
                    (try? JSONDecoder().decode(MetaV1.LabelSelector.self, from: Data(selector.jsonBytes))).flatMap { try? LabelSelector($0) }
                }
            }
            aggregate()
        case "Role": roles[namespace ?? "", default: [:]][name] = ruleList
        case "ClusterRoleBinding": clusterRoleBindings[name] = binding
        case "RoleBinding": roleBindings[namespace ?? "", default: [:]][name] = binding
        default: break
        }
    }
}

/// RBAC's escalation check: a user may write a role only with permissions they hold (or the
/// `escalate` verb on roles), and a binding only to a role whose permissions they hold (or the
/// `bind` verb on it), so that the right to write RBAC objects is not the right to everything.
public enum RBACEscalation {
    public static func check(_ object: JSONValue, resource: ResourceType, namespace: String?, user: UserInfo, authorizer: any Authorizer) throws(APIError) {
        guard resource.group == "rbac.authorization.k8s.io" else { return }
        let name = object.metadata("name")?.stringValue ?? ""
        let rules: [PolicyRule]
        switch resource.kind {
        case "Role", "ClusterRole":
            let escalate = RequestInfo(verb: "escalate", group: resource.group, version: resource.version, resource: resource.name, subresource: nil,
                                       namespace: namespace, name: name)
            if authorizer.allows(user, escalate) { return }
            rules = (object["rules"]?.arrayValue ?? []).map(PolicyRule.init)
        case "RoleBinding", "ClusterRoleBinding":
            let binding = Binding(object)
            let bind = RequestInfo(verb: "bind", group: resource.group, version: resource.version,
                                   resource: binding.roleKind == "Role" ? "roles" : "clusterroles", subresource: nil,
                                   namespace: namespace, name: binding.roleName)
            if authorizer.allows(user, bind) { return }
            guard let referred = authorizer.rules(ofRole: binding.roleKind, name: binding.roleName, namespace: namespace) else {
                throw APIError(code: 403, reason: "Forbidden",
                               message: "\(resource.name).\(resource.group) \"\(name)\" is forbidden: user \"\(user.name)\" cannot bind to \(binding.roleKind.lowercased()) \"\(binding.roleName)\", which does not exist or is not known yet",
                               details: .init(name: name, group: resource.group, kind: resource.name))
            }
            rules = referred
        default:
            return
        }
        var missing: [PolicyRule] = []
        for rule in rules where !rule.atomicRequests.allSatisfy({ request in
            var scoped = request
            if request.isResourceRequest { scoped.namespace = namespace }
            return authorizer.allows(user, scoped)
        }) {
            missing.append(rule)
        }
        guard missing.isEmpty else {
            throw APIError(code: 403, reason: "Forbidden",
                           message: "\(resource.name).\(resource.group) \"\(name)\" is forbidden: user \"\(user.name)\" (groups=[\(user.groups.map { "\"\($0)\"" }.joined(separator: " "))]) is attempting to grant RBAC permissions not currently held:\n"
                               + missing.map(\.description).joined(separator: "\n"),
                           details: .init(name: name, group: resource.group, kind: resource.name))
        }
    }
}

extension RBACPolicy {
    /// Replaces every object of `kind` with `objects` (after a list).
    public mutating func replace(kind: String, objects: [JSONValue]) {
        switch kind {
        case "ClusterRole":
            ownClusterRoles = [:]
            clusterRoleLabels = [:]
            aggregation = [:]
            clusterRoles = [:]
        case "Role": roles = [:]
        case "ClusterRoleBinding": clusterRoleBindings = [:]
        case "RoleBinding": roleBindings = [:]
        default: break
        }
        for object in objects {
            apply(kind: kind, namespace: object.metadata("namespace")?.stringValue, name: object.metadata("name")?.stringValue ?? "", object: object)
        }
    }
}

/// Kubernetes' authorizer chain for this server: the built-in grants of ``MastersAuthorizer``
/// (system:masters; discovery, health and self-review for everyone), the ``NodeAuthorizer``
/// for kubelets (its writes limited by ``NodeRestriction``), then RBAC over the
/// cluster's Roles, ClusterRoles and bindings. The RBAC objects are held in memory, listed and
/// then watched from the store by ``run(_:)`` (one watch per kind, relisted after 410), so a
/// request's check costs no store access; a change reaches every API server within a watch's delay.
public final class RBACAuthorizer: Authorizer {
    private let policy = Mutex(RBACPolicy())
    static let kinds = ["clusterroles", "roles", "clusterrolebindings", "rolebindings"]

    public init() {}

    public func allows(_ user: UserInfo, _ request: RequestInfo) -> Bool {
        if MastersAuthorizer().allows(user, request) || NodeAuthorizer().allows(user, request) { return true }
        return policy.withLock { $0.allows(user, request) }
    }

    public func rules(ofRole kind: String, name: String, namespace: String?) -> [PolicyRule]? {
        policy.withLock { $0.rules(ofRole: kind, name: name, namespace: namespace) }
    }

    public func rules(for user: UserInfo, namespace: String) -> [PolicyRule]? {
        var rules = MastersAuthorizer().rules(for: user, namespace: namespace) ?? []
        if NodeAuthorizer.nodeName(of: user) != nil { rules += NodeAuthorizer.rules }
        return rules + policy.withLock { $0.rules(for: user, namespace: namespace) }
    }

    /// The policy as it is now (for tests and diagnostics).
    public var current: RBACPolicy { policy.withLock { $0 } }

    /// Keeps the policy current from `storage` until cancelled: list, then watch from the list's
    /// revision; after an error, waits `retry` and lists again.
    public func run(_ storage: ObjectStorage, retry: Duration = .milliseconds(500)) async {
        await withTaskGroup(of: Void.self) { group in
            for name in Self.kinds {
                guard let resource = ServedResources.find(group: "rbac.authorization.k8s.io", version: "v1", name: name) else { continue }
                group.addTask { await self.follow(resource, storage, retry: retry) }
            }
        }
    }

    func follow(_ resource: ResourceType, _ storage: ObjectStorage, retry: Duration) async {
        while !Task.isCancelled {
            do {
                let page = try await storage.list(resource, namespace: nil)
                policy.withLock { $0.replace(kind: resource.kind, objects: page.items) }
                let watch = try await storage.watch(resource, namespace: nil, after: page.resourceVersion)
                defer { watch.cancel() }
                for try await event in watch {
                    policy.withLock { policy in
                        switch event {
                        case .added(let object), .modified(let object):
                            policy.apply(kind: resource.kind, namespace: object.metadata("namespace")?.stringValue, name: object.metadata("name")?.stringValue ?? "", object: object)
                        case .deleted(let object):
                            policy.apply(kind: resource.kind, namespace: object.metadata("namespace")?.stringValue, name: object.metadata("name")?.stringValue ?? "", object: nil)
                        case .bookmark:
                            break
                        }
                    }
                }
            } catch {
                // No leader yet, compacted history, the store stopping: list again shortly.
            }
            try? await Task.sleep(for: retry)
        }
    }
}
