import Resources

/// Kubernetes' Node authorizer, for kubelets (`system:node:NAME` in `system:nodes`): what a
/// kubelet needs and no more. It reads nodes, pods, services and endpoints; writes Nodes and
/// their status, pods' status, mirror pods, Events, and Leases; ``NodeRestriction`` then limits
/// each write to the node's own objects. Secrets and config maps (which Kubernetes gives a node
/// only for the pods bound to it, by a graph of references) are not granted yet.
public struct NodeAuthorizer: Authorizer {
    public static let nodesGroup = "system:nodes"
    public static let userPrefix = "system:node:"

    public init() {}

    /// The node a user is, if it is a kubelet's identity.
    public static func nodeName(of user: UserInfo) -> String? {
        guard user.groups.contains(nodesGroup), user.name.hasPrefix(userPrefix) else { return nil }
        let name = String(user.name.dropFirst(userPrefix.count))
        return name.isEmpty ? nil : name
    }

    static let rules: [PolicyRule] = [
        PolicyRule(verbs: ["get", "list", "watch"], apiGroups: [""], resources: ["nodes", "pods", "services", "endpoints"]),
        PolicyRule(verbs: ["get", "list", "watch"], apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"]),
        PolicyRule(verbs: ["create", "update", "patch", "delete"], apiGroups: [""], resources: ["nodes"]),
        PolicyRule(verbs: ["get", "update", "patch"], apiGroups: [""], resources: ["nodes/status", "pods/status"]),
        PolicyRule(verbs: ["create", "delete"], apiGroups: [""], resources: ["pods"]),
        PolicyRule(verbs: ["create"], apiGroups: [""], resources: ["pods/eviction"]),
        PolicyRule(verbs: ["create", "update", "patch"], apiGroups: ["", "events.k8s.io"], resources: ["events"]),
        PolicyRule(verbs: ["get", "create", "update", "patch", "delete"], apiGroups: ["coordination.k8s.io"], resources: ["leases"]),
    ]

    public func allows(_ user: UserInfo, _ request: RequestInfo) -> Bool {
        guard Self.nodeName(of: user) != nil, request.isResourceRequest else { return false }
        return Self.rules.contains { $0.allows(request) }
    }
}

/// Kubernetes' NodeRestriction admission: a kubelet changes only its own Node and Lease, the
/// status of pods bound to it, and creates only mirror pods bound to itself; messages as
/// kube-apiserver's.
public enum NodeRestriction {
    public static let mirrorAnnotation = "kubernetes.io/config.mirror"

    /// Checks a kubelet's request: `body` is the object it sends (create), `existing` the stored
    /// object it acts on (pod status, delete, eviction); nil when not needed or not given.
    public static func check(node: String, _ request: RequestInfo, body: JSONValue?, existing: JSONValue?) throws(APIError) {
        func forbidden(_ message: String) -> APIError {
            APIError(code: 403, reason: "Forbidden", message: message, details: .init(name: request.name, group: request.group, kind: request.resource))
        }
        guard request.isResourceRequest, ["create", "update", "patch", "delete"].contains(request.verb) else { return }
        switch (request.group, request.resource) {
        case ("", "nodes"):
            let target = request.name ?? body?.metadata("name")?.stringValue ?? ""
            guard target == node else { throw forbidden("node \"\(node)\" is not allowed to modify node \"\(target)\"") }
        case ("coordination.k8s.io", "leases"):
            let target = request.name ?? body?.metadata("name")?.stringValue ?? ""
            guard request.namespace == "kube-node-lease" else { throw forbidden("can only access leases in the \"kube-node-lease\" namespace") }
            guard target == node else { throw forbidden("can only access node lease with the same name as the requesting node") }
        case ("", "pods"):
            if request.verb == "create" && request.subresource == nil {
                guard body?.metadata("annotations")?[mirrorAnnotation] != nil else {
                    throw forbidden("pod does not have \"\(mirrorAnnotation)\" annotation, node \"\(node)\" can only create mirror pods")
                }
                guard body?["spec"]?["nodeName"]?.stringValue == node else {
                    throw forbidden("node \"\(node)\" can only create pods with spec.nodeName set to itself")
                }
                return
            }
            let bound = existing?["spec"]?["nodeName"]?.stringValue ?? ""
            guard bound == node else {
                let what = request.subresource == "status" ? "update pod status for pods" : request.subresource == "eviction" ? "evict pods" : "delete pods"
                throw forbidden("node \"\(node)\" can only \(what) with spec.nodeName set to itself")
            }
        default:
            return
        }
    }
}
