import Resources

/// What every cluster has from its start (kube-apiserver's bootstrap controllers): the
/// namespaces `default`, `kube-system`, `kube-public` and `kube-node-lease`, and the bootstrap
/// RBAC policy (``BootstrapPolicy``).
public enum BootstrapObjects {
    public static let namespaces = ["default", "kube-system", "kube-public", "kube-node-lease"]

    /// A Namespace as Kubernetes makes it: the `kubernetes` finalizer, phase Active.
    public static func namespace(_ name: String) -> JSONValue {
        .object([
            "apiVersion": .string("v1"), "kind": .string("Namespace"),
            "metadata": .object(["name": .string(name), "labels": .object(["kubernetes.io/metadata.name": .string(name)])]),
            "spec": .object(["finalizers": .array([.string("kubernetes")])]),
            "status": .object(["phase": .string("Active")]),
        ])
    }

    /// Creates the bootstrap namespaces that are missing (every API server does this as it
    /// starts; the create's txn on revision 0 makes one win, the others see AlreadyExists).
    public static func ensure(_ storage: ObjectStorage) async throws(APIError) {
        var objects = namespaces.map { (resource: "namespaces", object: namespace($0)) }
        objects += BootstrapPolicy.objects
        for (name, object) in objects {
            let group = name == "namespaces" ? "" : "rbac.authorization.k8s.io"
            guard let resource = ServedResources.find(group: group, version: "v1", name: name) else { continue }
            let prepared = try ObjectMetaRules.prepareForCreate(object, .init(resource: resource, namespace: nil))
            do {
                _ = try await storage.create(resource, namespace: nil, name: prepared.metadata("name")?.stringValue ?? "", object: prepared)
            } catch where error.reason == "AlreadyExists" {
                continue
            }
        }
    }
}
