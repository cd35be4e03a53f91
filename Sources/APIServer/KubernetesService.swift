import KVStore
import Resources
import Store

/// The `kubernetes` Service in `default` (10.96.0.1:443, what in-cluster clients dial) and its
/// Endpoints, the live API servers, as kube-apiserver's lease endpoint reconciler keeps them:
/// each API server holds a key `/registry/masterleases/IP` on a store lease of 15 s, renewed every
/// 5 s, and writes the Endpoints from the keys that are alive; one that stops drops out when its
/// lease expires.
public struct KubernetesService: Sendable {
    public static let leasePrefix = "/registry/masterleases/"
    public static let leaseSeconds: Int64 = 15
    let storage: ObjectStorage
    let address: String
    let port: Int

    public init(storage: ObjectStorage, address: String, port: Int) {
        self.storage = storage
        self.address = address
        self.port = port
    }

    static let services = ServedResources.find(group: "", version: "v1", name: "services")!
    static let endpoints = ServedResources.find(group: "", version: "v1", name: "endpoints")!

    /// The Service as kube-apiserver makes it.
    static func service(port: Int) -> JSONValue {
        .object([
            "apiVersion": "v1", "kind": "Service",
            "metadata": .object(["name": "kubernetes", "namespace": "default", "labels": .object(["component": "apiserver", "provider": "kubernetes"])]),
            "spec": .object([
                "type": "ClusterIP", "clusterIP": .string(ServiceAllocation.kubernetesServiceIP), "clusterIPs": .array([.string(ServiceAllocation.kubernetesServiceIP)]),
                "ipFamilies": .array(["IPv4"]), "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
                "ports": .array([.object(["name": "https", "port": .integer(443), "protocol": "TCP", "targetPort": .integer(Int64(port))])]),
            ]),
            "status": .object(["loadBalancer": .object([:])]),
        ])
    }

    /// Keeps this server's lease and the Endpoints current until cancelled.
    public func run(every interval: Duration = .seconds(5)) async {
        var lease: Int64 = 0
        while !Task.isCancelled {
            do {
                try await ensureService()
                lease = try await renew(lease)
                try await reconcile()
            } catch {
                lease = 0
            }
            try? await Task.sleep(for: interval)
        }
    }

    func ensureService() async throws(APIError) {
        // A read of this member's view first: the create's txn would go through the log every time.
        if (try? await storage.get(Self.services, namespace: "default", name: "kubernetes", consistent: false)) != nil { return }
        let object = try ObjectMetaRules.prepareForCreate(Self.service(port: port), .init(resource: Self.services, namespace: "default"))
        do {
            _ = try await storage.create(Self.services, namespace: "default", name: "kubernetes", object: object)
        } catch where error.reason == "AlreadyExists" {
            return
        }
    }

    /// Keeps this server's key alive on `lease` (a new lease when 0 or expired); returns the lease.
    func renew(_ lease: Int64) async throws(APIError) -> Int64 {
        let store = storage.store
        if lease != 0, (try? await store.leaseKeepAlive(id: lease)) ?? 0 > 0 { return lease }
        let granted = try await ObjectStorage.call { () throws(StoreError) in try await store.leaseGrant(ttl: Self.leaseSeconds, id: 0) }
        let key = Array((Self.leasePrefix + address).utf8)
        _ = try await ObjectStorage.call { () throws(StoreError) in
            try await store.put(PutRequest(key: key, value: Array("\(port)".utf8), lease: granted.id))
        }
        return granted.id
    }

    /// Writes the Endpoints `kubernetes` from the live lease keys, when they changed.
    func reconcile() async throws(APIError) {
        let prefix = Array(Self.leasePrefix.utf8)
        let store = storage.store
        let live = try await ObjectStorage.call { () throws(StoreError) in
            try await store.range(RangeRequest(key: prefix, rangeEnd: ObjectStorage.prefixEnd(prefix)))
        }.kvs.map { String(decoding: $0.key.dropFirst(prefix.count), as: UTF8.self) }.sorted()
        let subsets: JSONValue = live.isEmpty ? .array([]) : .array([.object([
            "addresses": .array(live.map { .object(["ip": .string($0)]) }),
            "ports": .array([.object(["name": "https", "port": .integer(Int64(port)), "protocol": "TCP"])]),
        ])])
        do {
            _ = try await storage.guaranteedUpdate(Self.endpoints, namespace: "default", name: "kubernetes") { current throws(APIError) in
                guard case .object(var fields) = current else { return current }
                fields["subsets"] = subsets
                return .object(fields)
            }
        } catch where error.reason == "NotFound" {
            let object = try ObjectMetaRules.prepareForCreate(.object([
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": .object(["name": "kubernetes", "namespace": "default", "labels": .object(["endpointslice.kubernetes.io/skip-mirror": "true"])]),
                "subsets": subsets,
            ]), .init(resource: Self.endpoints, namespace: "default"))
            _ = try? await storage.create(Self.endpoints, namespace: "default", name: "kubernetes", object: object)
        }
    }
}
