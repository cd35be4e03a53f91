import Foundation
import Resources

/// A delete's options (meta/v1 DeleteOptions from the body, or the query's `gracePeriodSeconds`,
/// `propagationPolicy`, `dryRun`).
struct DeleteOptions: Sendable {
    var gracePeriodSeconds: Int64?
    var propagationPolicy: String?
    var preconditions = ObjectStorage.Preconditions()
    var dryRun = false

    static let policies = ["Orphan", "Background", "Foreground"]

    init(body: JSONValue?, query: [String: String]) throws(APIError) {
        if let body {
            if case .integer(let grace) = body["gracePeriodSeconds"] ?? .null { gracePeriodSeconds = grace }
            propagationPolicy = body["propagationPolicy"]?.stringValue
            preconditions.uid = body["preconditions"]?["uid"]?.stringValue
            preconditions.resourceVersion = body["preconditions"]?["resourceVersion"]?.stringValue
            dryRun = body["dryRun"]?.arrayValue?.contains("All") == true
        }
        if let text = query["gracePeriodSeconds"], !text.isEmpty {
            guard let grace = Int64(text) else { throw APIError.badRequest("gracePeriodSeconds must be an integer, not \"\(text)\"") }
            gracePeriodSeconds = grace
        }
        if let policy = query["propagationPolicy"], !policy.isEmpty { propagationPolicy = policy }
        if query["dryRun"] == "All" { dryRun = true }
        if let policy = propagationPolicy, !Self.policies.contains(policy) {
            throw APIError.invalid(kind: "DeleteOptions", group: "meta.k8s.io", name: "", causes: [
                .init(reason: "FieldValueNotSupported", message: "Unsupported value: \"\(policy)\": supported values: \"Foreground\", \"Background\", \"Orphan\"",
                      field: "propagationPolicy"),
            ])
        }
        if let grace = gracePeriodSeconds, grace < 0 { gracePeriodSeconds = 1 }
    }
}

extension APIHandler {
    /// Kubernetes' delete: an object with finalizers, a Namespace, or a pod on a node with a grace
    /// period is marked (`deletionTimestamp`, `deletionGracePeriodSeconds`; a namespace
    /// Terminating) and answered 202; the rest goes at once (200). A marked object goes when its
    /// last finalizer is removed (``finishDeletion``) or a pod's kubelet deletes it with grace 0.
    func delete(_ resource: ResourceType, namespace: String?, name: String, _ options: DeleteOptions) async throws(APIError) -> APIResponse {
        if resource.group.isEmpty && resource.kind == "Namespace" && ["default", "kube-system", "kube-public"].contains(name) {
            throw APIError(code: 403, reason: "Forbidden", message: "namespaces \"\(name)\" is forbidden: this namespace may not be deleted",
                           details: .init(name: name, kind: "namespaces"))
        }
        for _ in 0..<16 {
            let current = try await storage.get(resource, namespace: namespace, name: name)
            let version = current.metadata("resourceVersion")?.stringValue
            if let uid = options.preconditions.uid, current.metadata("uid")?.stringValue != uid {
                throw .conflict(resource, name: name, why: "Precondition failed: UID in precondition: \(uid), UID in object meta: \(current.metadata("uid")?.stringValue ?? "")")
            }
            if let wanted = options.preconditions.resourceVersion, wanted != version {
                throw .conflict(resource, name: name, why: "Precondition failed: ResourceVersion in precondition: \(wanted), ResourceVersion in object meta: \(version ?? "")")
            }
            let grace = Self.gracePeriod(current, resource, options)
            let waitsForFinalizers = Self.hasFinalizers(current, resource)
            if grace == 0 && !waitsForFinalizers {
                if options.dryRun { return .object(status: 200, current) }
                do {
                    return .object(status: 200, try await storage.delete(resource, namespace: namespace, name: name,
                                                                         preconditions: .init(resourceVersion: version)))
                } catch where error.reason == "Conflict" && options.preconditions.resourceVersion == nil {
                    continue
                }
            }
            var marked = current
            let already = Self.isDeleting(current)
            if already {
                // Only a shorter grace period changes a deletion under way.
                guard case .integer(let pending) = current.metadata("deletionGracePeriodSeconds") ?? .null, grace < pending else {
                    return .object(status: 202, current)
                }
            }
            marked.setMetadata("deletionTimestamp", .string(Timestamp(Date().addingTimeInterval(TimeInterval(grace))).text))
            marked.setMetadata("deletionGracePeriodSeconds", .integer(grace))
            if resource.group.isEmpty && resource.kind == "Namespace", case .object(var fields) = marked {
                fields["status"] = .object(["phase": "Terminating"])
                marked = .object(fields)
            }
            if options.dryRun { return .object(status: 202, marked) }
            do {
                let stored = try await storage.update(resource, namespace: namespace, name: name, object: marked, resourceVersion: version.flatMap { Int64($0) })
                return .object(status: 202, stored)
            } catch where error.reason == "Conflict" && options.preconditions.resourceVersion == nil {
                continue
            }
        }
        throw .conflict(resource, name: name, why: "too many concurrent changes; try again")
    }

    /// A pod bound to a node waits its grace period (the kubelet stops it, then deletes it with
    /// grace 0); one never scheduled, or finished, goes at once; other kinds have no grace.
    static func gracePeriod(_ object: JSONValue, _ resource: ResourceType, _ options: DeleteOptions) -> Int64 {
        guard resource.group.isEmpty && resource.kind == "Pod" else { return 0 }
        let bound = !(object["spec"]?["nodeName"]?.stringValue ?? "").isEmpty
        let finished = ["Succeeded", "Failed"].contains(object["status"]?["phase"]?.stringValue ?? "")
        if !bound || finished { return 0 }
        if let grace = options.gracePeriodSeconds { return grace }
        if case .integer(let grace) = object["spec"]?["terminationGracePeriodSeconds"] ?? .null { return max(grace, 1) }
        return 30
    }

    static func isDeleting(_ object: JSONValue) -> Bool {
        if let timestamp = object.metadata("deletionTimestamp"), timestamp != .null { return true }
        return false
    }

    /// `metadata.finalizers`, and a Namespace's `spec.finalizers` (its content is removed first).
    static func hasFinalizers(_ object: JSONValue, _ resource: ResourceType) -> Bool {
        if !(object.metadata("finalizers")?.arrayValue ?? []).isEmpty { return true }
        if resource.group.isEmpty && resource.kind == "Namespace" { return !(object["spec"]?["finalizers"]?.arrayValue ?? []).isEmpty }
        return false
    }

    /// After a write: an object being deleted whose last finalizer went, and whose grace period
    /// is over (0), is deleted now; otherwise `stored` as it is.
    func finishDeletion(_ resource: ResourceType, namespace: String?, _ stored: JSONValue) async throws(APIError) -> JSONValue {
        guard Self.isDeleting(stored), !Self.hasFinalizers(stored, resource), stored.metadata("deletionGracePeriodSeconds") == .integer(0) || resource.kind != "Pod",
              let name = stored.metadata("name")?.stringValue else { return stored }
        do {
            return try await storage.delete(resource, namespace: namespace, name: name, preconditions: .init(resourceVersion: stored.metadata("resourceVersion")?.stringValue))
        } catch where error.reason == "Conflict" || error.reason == "NotFound" {
            return stored
        }
    }

    /// DELETE on a collection: each object matching the selectors deleted as above; the answer is
    /// the list of what was deleted or marked.
    func deleteCollection(_ resource: ResourceType, namespace: String?, _ request: APIRequest, options: DeleteOptions) async throws(APIError) -> APIResponse {
        let filter = try Self.selectorFilter(resource, request.query)
        let page = try await storage.list(resource, namespace: namespace, filter: filter)
        var items: [JSONValue] = []
        for item in page.items {
            guard let name = item.metadata("name")?.stringValue else { continue }
            do {
                if case .object(_, let object, _) = try await delete(resource, namespace: resource.namespaced ? item.metadata("namespace")?.stringValue : nil, name: name, options) {
                    items.append(object)
                }
            } catch where error.reason == "NotFound" {
                continue
            }
        }
        return .object(status: 200, .object([
            "apiVersion": .string(resource.apiVersion), "kind": .string("\(resource.kind)List"),
            "metadata": .object(["resourceVersion": .string(String(page.resourceVersion))]), "items": .array(items),
        ]))
    }

    /// NamespaceLifecycle: objects are made only in a namespace that exists and is not being deleted.
    func checkNamespaceOpen(_ namespace: String) async throws(APIError) {
        guard let namespaces = resources.first(where: { $0.group.isEmpty && $0.name == "namespaces" }) else { return }
        let found: JSONValue
        do {
            found = try await storage.get(namespaces, namespace: nil, name: namespace, consistent: false)
        } catch where error.reason == "NotFound" {
            // A namespace made a moment ago may not be on this member yet: ask the leader.
            found = try await storage.get(namespaces, namespace: nil, name: namespace, consistent: true)
        }
        if Self.isDeleting(found) {
            throw APIError(code: 403, reason: "Forbidden", message: "unable to create new content in namespace \(namespace) because it is being terminated",
                           details: .init(name: namespace, kind: "namespaces"))
        }
    }
}

/// Kubernetes' namespace controller, in the API server until the controllers come: a Namespace
/// being deleted has its content deleted (grace 0), then its `kubernetes` finalizer removed,
/// then goes. Every API server may run it; the deletes and the finalizer's removal are
/// idempotent and conditional on the version they read.
public struct NamespaceFinalizer: Sendable {
    public static let finalizer = "kubernetes"
    let handler: APIHandler

    public init(handler: APIHandler) { self.handler = handler }

    public func run(every interval: Duration = .seconds(1)) async {
        while !Task.isCancelled {
            try? await sweep()
            try? await Task.sleep(for: interval)
        }
    }

    /// One pass over the namespaces being deleted.
    public func sweep() async throws(APIError) {
        guard let namespaces = handler.resources.first(where: { $0.group.isEmpty && $0.name == "namespaces" }) else { return }
        let options = try DeleteOptions(body: nil, query: ["gracePeriodSeconds": "0"])
        for namespace in try await handler.storage.list(namespaces, namespace: nil).items where APIHandler.isDeleting(namespace) {
            guard let name = namespace.metadata("name")?.stringValue else { continue }
            var remaining = 0
            for resource in handler.resources where resource.namespaced {
                for item in try await handler.storage.list(resource, namespace: name).items {
                    remaining += 1
                    if let itemName = item.metadata("name")?.stringValue, !APIHandler.isDeleting(item) || resource.kind == "Pod" {
                        _ = try? await handler.delete(resource, namespace: name, name: itemName, options)
                    }
                }
            }
            guard remaining == 0 else { continue }
            let finalized = try await handler.storage.guaranteedUpdate(namespaces, namespace: nil, name: name) { current throws(APIError) in
                guard case .object(var fields) = current, case .object(var spec) = current["spec"] ?? .object([:]) else { return current }
                spec["finalizers"] = .array((spec["finalizers"]?.arrayValue ?? []).filter { $0 != .string(Self.finalizer) })
                fields["spec"] = .object(spec)
                return .object(fields)
            }
            _ = try await handler.finishDeletion(namespaces, namespace: nil, finalized)
        }
    }
}
