import Foundation
import Resources

/// How a request sees a stored object: the whole object (the resource itself; `status`;
/// `finalize`) or another kind made from it (`scale`: an autoscaling/v1 Scale), and how what the
/// client sends is taken back into the stored object. A write through `status` changes only the
/// status; a write to the resource itself leaves the status as it was (Kubernetes' status
/// strategies), so `kubectl apply` never undoes what a controller reported.
struct ObjectView: Sendable {
    /// What a body sent to the view is checked against (its schema, kind and apiVersion).
    let bodyType: ResourceType
    let project: @Sendable (JSONValue) throws(APIError) -> JSONValue
    /// The stored object (second) with the client's view of it (first) taken in.
    let merge: @Sendable (JSONValue, JSONValue) throws(APIError) -> JSONValue

    /// The resource itself: what is sent is the object, except its status when the resource
    /// has a status subresource.
    static func main(_ resource: ResourceType) -> ObjectView {
        let keepsStatus = resource.subresources.contains("status")
        return ObjectView(bodyType: resource, project: { $0 }, merge: { new, existing in
            guard keepsStatus, case .object(var object) = new else { return new }
            object["status"] = existing["status"]
            return .object(object)
        })
    }

    static func subresource(_ name: String, of resource: ResourceType) -> ObjectView? {
        switch name {
        case "status":
            // The stored object with the new status; metadata and spec stay as stored.
            return ObjectView(bodyType: resource, project: { $0 }, merge: { new, existing in
                guard case .object(var object) = existing else { return existing }
                object["status"] = new["status"]
                if let version = new.metadata("resourceVersion") { object = JSONValue.object(object).settingMetadata("resourceVersion", version).objectValue ?? object }
                return .object(object)
            })
        case "finalize" where resource.kind == "Namespace":
            return ObjectView(bodyType: resource, project: { $0 }, merge: { new, existing in
                guard case .object(var object) = existing, case .object(var spec) = existing["spec"] ?? .object([:]) else { return existing }
                spec["finalizers"] = new["spec"]?["finalizers"]
                object["spec"] = .object(spec)
                return .object(object)
            })
        case "scale" where resource.subresources.contains("scale"):
            return ObjectView(bodyType: scaleType(resource.namespaced), project: { object throws(APIError) in Self.scale(of: object) }, merge: { scale, existing throws(APIError) in
                guard case .integer(let replicas) = scale["spec"]?["replicas"] ?? .integer(0), replicas >= 0, replicas <= Int64(Int32.max) else {
                    throw APIError.invalid(kind: "Scale", group: "autoscaling", name: existing.metadata("name")?.stringValue ?? "", causes: [
                        .init(reason: "FieldValueInvalid", message: "Invalid value: \(scale["spec"]?["replicas"] ?? .null): must be greater than or equal to 0",
                              field: "spec.replicas"),
                    ])
                }
                guard case .object(var object) = existing, case .object(var spec) = existing["spec"] ?? .object([:]) else { return existing }
                spec["replicas"] = .integer(replicas)
                object["spec"] = .object(spec)
                var merged = JSONValue.object(object)
                if let version = scale.metadata("resourceVersion") { merged = merged.settingMetadata("resourceVersion", version) }
                return merged
            })
        default:
            return nil
        }
    }

    static func scaleType(_ namespaced: Bool) -> ResourceType {
        ResourceType(group: "autoscaling", version: "v1", name: "scale", singularName: "scale", kind: "Scale", namespaced: namespaced)
    }

    /// The autoscaling/v1 Scale of a Deployment, ReplicaSet or StatefulSet: its desired and
    /// current replicas and its selector as text (what `kubectl scale` and autoscalers read).
    static func scale(of object: JSONValue) -> JSONValue {
        var metadata: [String: JSONValue] = [:]
        for key in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] { metadata[key] = object.metadata(key) }
        var status: [String: JSONValue] = ["replicas": object["status"]?["replicas"] ?? .integer(0)]
        if let selector = object["spec"]?["selector"] { status["selector"] = .string(LabelSelector.text(of: selector)) }
        return .object([
            "apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": .object(metadata),
            "spec": .object(["replicas": object["spec"]?["replicas"] ?? .integer(1)]), "status": .object(status),
        ])
    }
}

extension JSONValue {
    func settingMetadata(_ key: String, _ value: JSONValue?) -> JSONValue {
        var copy = self
        copy.setMetadata(key, value)
        return copy
    }
}

extension APIHandler {
    /// A request to a subresource: `status`, `scale` and `finalize` read and written through
    /// their view; `pods/binding` assigns a pod to a node; `pods/eviction` deletes it.
    func subresource(_ name: String, _ resource: ResourceType, namespace: String?, objectName: String, verb: String, _ request: APIRequest,
                     user: UserInfo?) async throws(APIError) -> APIResponse {
        switch (name, verb) {
        case ("binding", "create") where resource.kind == "Pod":
            return try await bind(namespace: namespace ?? "", name: objectName, request)
        case ("eviction", "create") where resource.kind == "Pod":
            return try await evict(resource, namespace: namespace ?? "", name: objectName, request)
        default:
            break
        }
        guard let view = ObjectView.subresource(name, of: resource) else { throw APIError.noSuchResource }
        switch verb {
        case "get":
            return .object(status: 200, try view.project(try await storage.get(resource, namespace: namespace, name: objectName)))
        case "update":
            let (body, warnings) = try Self.validated(try Self.decodeBody(request.body, contentType: request.contentType), view.bodyType, request.query)
            let existing = try await storage.get(resource, namespace: namespace, name: objectName)
            let prepared = try prepared(body, existing: existing, resource, namespace: namespace, view: view, user: user, takenPorts: try await takenPorts(resource))
            if request.query["dryRun"] == "All" { return .object(status: 200, try view.project(prepared), warnings: warnings) }
            let version = body.metadata("resourceVersion")?.stringValue.flatMap { Int64($0) }
            let stored = try await storage.update(resource, namespace: namespace, name: objectName, object: prepared, resourceVersion: version)
            return .object(status: 200, try view.project(try await finishDeletion(resource, namespace: namespace, stored)), warnings: warnings)
        case "patch":
            let (patched, warnings) = try await patch(resource, namespace: namespace, name: objectName, request, user: user, view: view)
            return .object(status: 200, patched, warnings: warnings)
        default:
            throw APIError.methodNotAllowed
        }
    }

    /// The stored object that an update through `view` makes: checked against the URL and the
    /// stored object (name, namespace, kind of the view's body), server-owned fields kept.
    func prepared(_ body: JSONValue, existing: JSONValue, _ resource: ResourceType, namespace: String?, view: ObjectView, user: UserInfo?,
                  takenPorts: Set<Int64> = []) throws(APIError) -> JSONValue {
        let name = existing.metadata("name")?.stringValue ?? ""
        if view.bodyType.kind != resource.kind {
            try ObjectMetaRules.checkKind(body, view.bodyType)
            if let given = body.metadata("name")?.stringValue, given != name {
                throw APIError.badRequest("the name of the object (\(given)) does not match the name on the URL (\(name))")
            }
        }
        var merged = try view.merge(body, existing)
        if resource == ServiceAllocation.servicesType { merged = ServiceAllocation.dropTypeDependentFields(merged, existing: existing) }
        merged = Defaults.apply(merged, resource)
        let prepared = try ObjectMetaRules.prepareForUpdate(merged, existing: existing, .init(resource: resource, namespace: namespace))
        try ObjectValidation.check(prepared, existing: existing, resource)
        if Self.isDeleting(existing) {
            let before = Set((existing.metadata("finalizers")?.arrayValue ?? []).compactMap(\.stringValue))
            if (prepared.metadata("finalizers")?.arrayValue ?? []).compactMap(\.stringValue).contains(where: { !before.contains($0) }) {
                throw APIError.invalid(kind: resource.kind, group: resource.group, name: name, causes: [
                    .init(reason: "FieldValueForbidden", message: "Forbidden: no new finalizers can be added if the object is being deleted", field: "metadata.finalizers"),
                ])
            }
        }
        if let user { try RBACEscalation.check(prepared, resource: resource, namespace: namespace, user: user, authorizer: authorizer) }
        if resource == ServiceAllocation.servicesType { return try ServiceAllocation.assign(prepared, existing: existing, takenPorts: takenPorts) }
        return prepared
    }

    /// The node ports taken, when `resource` is Services (their writes allocate them).
    func takenPorts(_ resource: ResourceType) async throws(APIError) -> Set<Int64> {
        resource == ServiceAllocation.servicesType ? try await storage.takenNodePorts() : []
    }

    /// Runs `write` again (at most 8 times) when an address or node port it chose was taken
    /// meanwhile; one the client asked for is a 422.
    func retryingAllocation(_ object: JSONValue, existing: JSONValue?, _ write: () async throws(APIError) -> JSONValue) async throws(APIError) -> JSONValue {
        for _ in 0..<8 {
            do {
                return try await write()
            } catch where error == .allocationTaken {
                if ServiceAllocation.chosenByClient(object, existing: existing) { throw ServiceAllocation.taken(object) }
                continue
            }
        }
        throw ServiceAllocation.taken(object)
    }

    /// pods/NAME/binding: a v1 Binding naming the node; the pod gets `spec.nodeName` and a
    /// PodScheduled condition, unless it is already assigned (409) or being deleted.
    func bind(namespace: String, name: String, _ request: APIRequest) async throws(APIError) -> APIResponse {
        guard let pods = resources.first(where: { $0.group.isEmpty && $0.name == "pods" }) else { throw APIError.noSuchResource }
        let bindings = ResourceType(group: "", version: "v1", name: "bindings", singularName: "binding", kind: "Binding", namespaced: true)
        let (body, _) = try Self.validated(try Self.decodeBody(request.body, contentType: request.contentType), bindings, request.query)
        try ObjectMetaRules.checkKind(body, bindings)
        if let given = body.metadata("name")?.stringValue, !given.isEmpty, given != name {
            throw APIError.badRequest("the name of the Binding (\(given)) does not match the pod's name on the URL (\(name))")
        }
        guard let node = body["target"]?["name"]?.stringValue, !node.isEmpty else {
            throw APIError.invalid(kind: "Binding", group: "", name: name, causes: [.init(reason: "FieldValueRequired", message: "Required value", field: "target.name")])
        }
        if let kind = body["target"]?["kind"]?.stringValue, !kind.isEmpty, kind != "Node" {
            throw APIError.invalid(kind: "Binding", group: "", name: name, causes: [
                .init(reason: "FieldValueNotSupported", message: "Unsupported value: \"\(kind)\": supported values: \"Node\"", field: "target.kind"),
            ])
        }
        let now = Timestamp(Date()).text
        _ = try await storage.guaranteedUpdate(pods, namespace: namespace, name: name) { pod throws(APIError) in
            if pod.metadata("deletionTimestamp") != nil && pod.metadata("deletionTimestamp") != .null {
                throw APIError.conflict(pods, name: name, why: "pod \(name) is being deleted, cannot be assigned to a host")
            }
            if let assigned = pod["spec"]?["nodeName"]?.stringValue, !assigned.isEmpty {
                throw APIError.conflict(pods, name: name, why: "pod \(name) is already assigned to node \"\(assigned)\"")
            }
            guard case .object(var object) = pod, case .object(var spec) = pod["spec"] ?? .object([:]) else { return pod }
            spec["nodeName"] = .string(node)
            object["spec"] = .object(spec)
            var status = object["status"]?.objectValue ?? [:]
            var conditions = (status["conditions"]?.arrayValue ?? []).filter { $0["type"] != "PodScheduled" }
            conditions.append(.object(["type": "PodScheduled", "status": "True", "lastProbeTime": .null, "lastTransitionTime": .string(now)]))
            status["conditions"] = .array(conditions)
            object["status"] = .object(status)
            return .object(object)
        }
        return .object(status: 201, Self.success(201))
    }

    /// pods/NAME/eviction: a policy/v1 Eviction; with no PodDisruptionBudgets served, the pod is
    /// deleted (with the eviction's delete options' preconditions).
    func evict(_ resource: ResourceType, namespace: String, name: String, _ request: APIRequest) async throws(APIError) -> APIResponse {
        let evictions = ResourceType(group: "policy", version: "v1", name: "evictions", singularName: "eviction", kind: "Eviction", namespaced: true)
        let (body, _) = try Self.validated(try Self.decodeBody(request.body, contentType: request.contentType), evictions, request.query)
        try ObjectMetaRules.checkKind(body, evictions)
        if let given = body.metadata("name")?.stringValue, !given.isEmpty, given != name {
            throw APIError.badRequest("name in URL does not match name in Eviction object")
        }
        var preconditions = ObjectStorage.Preconditions()
        preconditions.uid = body["deleteOptions"]?["preconditions"]?["uid"]?.stringValue
        preconditions.resourceVersion = body["deleteOptions"]?["preconditions"]?["resourceVersion"]?.stringValue
        _ = try await storage.delete(resource, namespace: namespace, name: name, preconditions: preconditions)
        return .object(status: 201, Self.success(201))
    }

    static func success(_ code: Int) -> JSONValue {
        .object(["kind": "Status", "apiVersion": "v1", "metadata": .object([:]), "status": "Success", "code": .integer(Int64(code))])
    }
}
