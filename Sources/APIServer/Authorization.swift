/// Who sent a request, as the shell authenticated it: a client certificate of the cluster CA
/// names the user (CN) and their groups (O), as kube-apiserver reads them; every authenticated
/// user is also in `system:authenticated`.
public struct UserInfo: Sendable, Equatable {
    public var name: String
    public var groups: [String]

    public static let authenticatedGroup = "system:authenticated"
    /// Kubernetes' superuser group (the administrator's certificate is in it).
    public static let mastersGroup = "system:masters"

    public init(name: String, groups: [String]) {
        self.name = name
        self.groups = groups.contains(Self.authenticatedGroup) ? groups : groups + [Self.authenticatedGroup]
    }
}

/// Decides whether a user may make a request (by its ``RequestInfo``: verb, group, resource,
/// subresource, namespace, name; or a non-resource path).
public protocol Authorizer: Sendable {
    func allows(_ user: UserInfo, _ request: RequestInfo) -> Bool
    /// The rules of a role (`Role` in `namespace`, or `ClusterRole`), for RBAC's escalation
    /// check of a binding; nil when the authorizer knows no such role.
    func rules(ofRole kind: String, name: String, namespace: String?) -> [PolicyRule]?
    /// Every rule that grants `user` something in `namespace` (SelfSubjectRulesReview); nil when
    /// the authorizer cannot list them.
    func rules(for user: UserInfo, namespace: String) -> [PolicyRule]?
}

extension Authorizer {
    public func rules(ofRole kind: String, name: String, namespace: String?) -> [PolicyRule]? { nil }
    public func rules(for user: UserInfo, namespace: String) -> [PolicyRule]? { nil }
}

/// The authorizer until RBAC is served: `system:masters` may do everything; every other
/// authenticated user may read only what Kubernetes' bootstrap policy gives everyone
/// (`system:discovery`, `system:public-info-viewer`: discovery documents, /version, health;
/// `system:basic-user`: a SelfSubjectAccessReview about oneself).
/// Least power: a kubelet's or anyone else's certificate can touch no object yet.
public struct MastersAuthorizer: Authorizer {
    public init() {}

    public func allows(_ user: UserInfo, _ request: RequestInfo) -> Bool {
        if user.groups.contains(UserInfo.mastersGroup) { return true }
        return Self.everyone.contains { $0.allows(request) }
    }

    /// What every authenticated user may do: ask what they may do (system:basic-user), read
    /// discovery, health and the OpenAPI documents (system:discovery, system:public-info-viewer).
    public static let everyone: [PolicyRule] = [
        PolicyRule(verbs: ["create"], apiGroups: ["authorization.k8s.io"], resources: ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
        PolicyRule(verbs: ["get"], nonResourceURLs: ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz", "/version", "/version/", "/openapi", "/openapi/*"]),
    ]
    public static let superuser: [PolicyRule] = [
        PolicyRule(verbs: ["*"], apiGroups: ["*"], resources: ["*"]), PolicyRule(verbs: ["*"], nonResourceURLs: ["*"]),
    ]

    public func rules(for user: UserInfo, namespace: String) -> [PolicyRule]? {
        user.groups.contains(UserInfo.mastersGroup) ? Self.superuser + Self.everyone : Self.everyone
    }

}

extension RequestInfo {
    /// What anonymous clients may read (Kubernetes' `system:public-info-viewer`): /version and
    /// the health checks; everything else is 401 without credentials.
    public var isAnonymousAllowed: Bool {
        guard !isResourceRequest, verb == "get" else { return false }
        let parts = path.split(separator: "/")
        return parts.count == 1 && ["version", "healthz", "livez", "readyz"].contains(parts[0])
    }
}

extension APIError {
    /// 401: no credentials, or credentials the server does not accept.
    public static let unauthorized = APIError(code: 401, reason: "Unauthorized", message: "Unauthorized")

    /// 403 in Kubernetes' words: `pods is forbidden: User "alice" cannot list resource "pods" in
    /// API group "" in the namespace "default"`, or `forbidden: User "alice" cannot get path "/x"`.
    public static func forbidden(_ user: UserInfo, _ request: RequestInfo) -> APIError {
        guard request.isResourceRequest else {
            return APIError(code: 403, reason: "Forbidden", message: "forbidden: User \"\(user.name)\" cannot \(request.verb) path \"\(request.path)\"",
                            details: Details())
        }
        let resource = request.subresource.map { "\(request.resource)/\($0)" } ?? request.resource
        let qualified = request.group.isEmpty ? request.resource : "\(request.resource).\(request.group)"
        let subject = request.name.map { "\(qualified) \"\($0)\"" } ?? qualified
        let scope = request.namespace.map { "in the namespace \"\($0)\"" } ?? "at the cluster scope"
        return APIError(code: 403, reason: "Forbidden",
                        message: "\(subject) is forbidden: User \"\(user.name)\" cannot \(request.verb) resource \"\(resource)\" in API group \"\(request.group)\" \(scope)",
                        details: Details(name: request.name, group: request.group, kind: request.resource))
    }
}
