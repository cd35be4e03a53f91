import Foundation
import Resources
import Store
import YAMLValue

/// One request to the API, as the HTTP shell hands it over.
public struct APIRequest: Sendable {
    public var method: String
    /// The path without the query.
    public var path: String
    public var query: [String: String]
    public var body: [UInt8]
    /// The body's media type (`Content-Type`), without parameters; nil when not given.
    public var contentType: String?
    /// The `Accept` header as sent (a Table is answered when it asks for one).
    public var accept: String?

    public init(method: String, path: String, query: [String: String] = [:], body: [UInt8] = [], contentType: String? = nil, accept: String? = nil) {
        self.method = method
        self.path = path
        self.query = query
        self.body = body
        self.contentType = contentType
        self.accept = accept
    }

    /// The Table this request asks for, if any: its version and what each row carries.
    var table: (version: String, include: Tables.Include)? {
        guard let version = Tables.requestedVersion(accept: accept) else { return nil }
        return (version, Tables.Include(rawValue: query["includeObject"] ?? "") ?? .metadata)
    }
}

/// What the HTTP shell sends back: a JSON document with its status code, or a watch to stream.
public enum APIResponse: Sendable {
    /// `warnings` go out as `Warning` headers (299, Kubernetes' form).
    case object(status: Int, JSONValue, warnings: [String] = [])
    /// Plain text (`/healthz`'s "ok").
    case text(status: Int, String)
    /// A watch: the `initial` events first, then the watch's, each encoded by `encoder`.
    case watch(ObjectWatch, initial: [ObjectEvent], encoder: WatchEncoder)

    public static func error(_ error: APIError) -> APIResponse { .object(status: error.code, error.status) }
}

/// The REST semantics of the API server on its storage, without HTTP: routes a request by its
/// `RequestInfo` to discovery or to the resource's verb, and answers in Kubernetes' shapes
/// (the object; `PodList` with `metadata.resourceVersion` and `continue`; a `Status` for every
/// error). Request bodies are limited in bytes by the shell before they get here.
public struct APIHandler: Sendable {
    public let storage: ObjectStorage
    public var resources: [ResourceType]
    public var serverAddress: String
    public var authorizer: any Authorizer
    let openAPI: OpenAPI

    /// Kubernetes' limit on a request body (3 MiB); the shell refuses larger ones with 413.
    public static let bodyBytesMax = 3 << 20

    public init(storage: ObjectStorage, resources: [ResourceType] = ServedResources.all, serverAddress: String = "127.0.0.1:6443",
                authorizer: any Authorizer = MastersAuthorizer()) {
        self.storage = storage
        self.resources = resources
        self.serverAddress = serverAddress
        self.authorizer = authorizer
        openAPI = OpenAPI(resources: resources)
    }

    /// Answers `request` from `user` (nil: no credentials, which may read only /version and the
    /// health checks: 401 otherwise); a user the authorizer refuses gets 403.
    public func handle(_ request: APIRequest, as user: UserInfo?) async -> APIResponse {
        do {
            return try await route(request, as: user)
        } catch {
            return .error(error)
        }
    }

    func route(_ request: APIRequest, as user: UserInfo?) async throws(APIError) -> APIResponse {
        let watch = QueryString.isTrue(request.query["watch"])
        guard let info = RequestInfo(method: request.method, path: request.path, watch: watch) else {
            if user == nil { throw APIError.unauthorized }
            throw APIError.noSuchResource
        }
        if let user {
            guard authorizer.allows(user, info) else { throw APIError.forbidden(user, info) }
        } else if !info.isAnonymousAllowed {
            throw APIError.unauthorized
        }
        guard info.isResourceRequest else { return try discovery(request, info) }
        if let type = request.contentType, !request.body.isEmpty, ["create", "update", "delete"].contains(info.verb), !Self.readableMediaTypes.contains(type) {
            throw APIError.unsupportedMediaType(type)
        }
        guard let resource = resources.first(where: { $0.group == info.group && $0.version == info.version && $0.name == info.resource }) else {
            throw APIError.noSuchResource
        }
        if resource.namespaced && info.namespace == nil && !["list", "watch"].contains(info.verb) {
            throw APIError.noSuchResource
        }
        let namespace = resource.namespaced ? info.namespace : nil
        if let user, let node = NodeAuthorizer.nodeName(of: user) {
            try await admitNode(node, info, resource, namespace: namespace, request)
        }
        if let subresource = info.subresource {
            guard resource.subresources.contains(subresource), let name = info.name else { throw APIError.noSuchResource }
            return try await self.subresource(subresource, resource, namespace: namespace, objectName: name, verb: info.verb, request, user: user)
        }
        // A name for get, update, patch and delete; none for create (POST to a name is a subresource's).
        let named = info.name != nil
        guard resource.verbs.contains(info.verb), named == ["get", "update", "patch", "delete"].contains(info.verb) || ["watch"].contains(info.verb) else {
            throw APIError.methodNotAllowed
        }
        switch info.verb {
        case "get":
            let consistent = request.query["resourceVersion"] != "0"
            let object = try await storage.get(resource, namespace: namespace, name: info.name!, consistent: consistent)
            if let table = request.table {
                return .object(status: 200, Tables.table([object], resource: resource, version: table.version, include: table.include,
                                                         listMetadata: .object(["resourceVersion": object.metadata("resourceVersion") ?? .string("")])))
            }
            return .object(status: 200, object)
        case "list":
            let list = try await list(resource, namespace: namespace, request.query)
            if let table = request.table {
                return .object(status: 200, Tables.table(list["items"]?.arrayValue ?? [], resource: resource, version: table.version, include: table.include,
                                                         listMetadata: list["metadata"] ?? .object([:])))
            }
            return .object(status: 200, list)
        case "watch":
            return try await watchResource(resource, namespace: namespace, name: info.name, request.query, table: request.table)
        case "create" where resource.kind == "SelfSubjectAccessReview" || resource.kind == "SelfSubjectRulesReview":
            // A review's status is the answer: what the client sends there is ignored.
            var question = try Self.decodeBody(request.body, contentType: request.contentType)
            if case .object(var fields) = question { fields["status"] = nil; question = .object(fields) }
            let (body, warnings) = try Self.validated(question, resource, request.query)
            guard let user else { throw APIError.unauthorized }
            let answer = resource.kind == "SelfSubjectAccessReview" ? try AccessReview.review(body, user: user, authorizer: authorizer)
                : try AccessReview.rules(body, user: user, authorizer: authorizer)
            return .object(status: 201, answer, warnings: warnings)
        case "create":
            let (body, warnings) = try Self.validated(try Self.decodeBody(request.body, contentType: request.contentType), resource, request.query)
            return .object(status: 201, try await create(body, resource, namespace: namespace, dryRun: request.query["dryRun"] == "All", user: user), warnings: warnings)
        case "update":
            let (body, warnings) = try Self.validated(try Self.decodeBody(request.body, contentType: request.contentType), resource, request.query)
            let name = info.name!
            let version = body.metadata("resourceVersion")?.stringValue.flatMap { Int64($0) }
            let existing = try await storage.get(resource, namespace: namespace, name: name)
            let stored = try await retryingAllocation(body, existing: existing) { () throws(APIError) in
                let prepared = try prepared(body, existing: existing, resource, namespace: namespace, view: .main(resource), user: user,
                                            takenPorts: try await takenPorts(resource))
                if request.query["dryRun"] == "All" { return prepared }
                return try await storage.update(resource, namespace: namespace, name: name, object: prepared, resourceVersion: version)
            }
            if request.query["dryRun"] == "All" { return .object(status: 200, stored, warnings: warnings) }
            return .object(status: 200, try await finishDeletion(resource, namespace: namespace, stored), warnings: warnings)
        case "patch" where request.contentType == ServerSideApply.mediaType:
            return try await apply(resource, namespace: namespace, name: info.name!, request, user: user)
        case "patch":
            let (patched, warnings) = try await patch(resource, namespace: namespace, name: info.name!, request, user: user)
            return .object(status: 200, patched, warnings: warnings)
        case "delete":
            return try await delete(resource, namespace: namespace, name: info.name!, try Self.deleteOptions(request))
        case "deletecollection":
            return try await deleteCollection(resource, namespace: namespace, request, options: try Self.deleteOptions(request))
        default:
            throw APIError.methodNotAllowed
        }
    }

    static func deleteOptions(_ request: APIRequest) throws(APIError) -> DeleteOptions {
        let body = request.body.isEmpty ? nil : try decodeBody(request.body, contentType: request.contentType)
        return try DeleteOptions(body: body, query: request.query)
    }

    /// NodeRestriction for a kubelet's write: the body it creates, or the pod it acts on.
    func admitNode(_ node: String, _ info: RequestInfo, _ resource: ResourceType, namespace: String?, _ request: APIRequest) async throws(APIError) {
        guard ["create", "update", "patch", "delete"].contains(info.verb) else { return }
        var body: JSONValue?
        var existing: JSONValue?
        if info.verb == "create" && info.subresource == nil && !request.body.isEmpty {
            body = try Self.decodeBody(request.body, contentType: request.contentType)
        }
        if resource.group.isEmpty && resource.name == "pods", let name = info.name {
            existing = try? await storage.get(resource, namespace: namespace, name: name)
        }
        try NodeRestriction.check(node: node, info, body: body, existing: existing)
    }

    /// A create: defaults, metadata, the server's status, validation, the namespace open, no
    /// escalation, a Service's addresses; stored unless a dry run.
    func create(_ body: JSONValue, _ resource: ResourceType, namespace: String?, dryRun: Bool, user: UserInfo?) async throws(APIError) -> JSONValue {
        let made = try ObjectMetaRules.prepareForCreate(Defaults.apply(body, resource), .init(resource: resource, namespace: namespace))
        let prepared = Defaults.onCreate(StatusOnCreate.reset(made, resource), resource)
        try ObjectValidation.check(prepared, existing: nil, resource)
        if let namespace { try await checkNamespaceOpen(namespace) }
        if let user { try RBACEscalation.check(prepared, resource: resource, namespace: namespace, user: user, authorizer: authorizer) }
        let name = prepared.metadata("name")?.stringValue ?? ""
        if resource == ServiceAllocation.servicesType {
            return try await retryingAllocation(prepared, existing: nil) { () throws(APIError) in
                let assigned = try ServiceAllocation.assign(prepared, existing: nil, takenPorts: try await storage.takenNodePorts())
                if dryRun { return assigned }
                return try await storage.create(resource, namespace: namespace, name: name, object: assigned)
            }
        }
        if dryRun { return prepared }
        return try await storage.create(resource, namespace: namespace, name: name, object: prepared)
    }

    /// Server-side apply: the object as `fieldManager` wants its fields, made when missing (201).
    func apply(_ resource: ResourceType, namespace: String?, name: String, _ request: APIRequest, user: UserInfo?) async throws(APIError) -> APIResponse {
        guard let manager = request.query["fieldManager"], !manager.isEmpty else {
            throw APIError.invalid(kind: "PatchOptions", group: "meta.k8s.io", name: "", causes: [
                .init(reason: "FieldValueRequired", message: "Required value: is required for apply patch", field: "fieldManager"),
            ])
        }
        guard request.body.count <= Self.bodyBytesMax else { throw APIError.tooLarge }
        let decoded: JSONValue
        do {
            decoded = try YAMLBody.decode(request.body)
        } catch {
            throw APIError.badRequest("the body of the apply patch does not parse as YAML: \(error.description)")
        }
        let (body, warnings) = try Self.validated(decoded, resource, request.query, partial: true)
        try ObjectMetaRules.checkKind(body, resource)
        if let given = body.metadata("name")?.stringValue, given != name {
            throw APIError.badRequest("the name of the object (\(given)) does not match the name on the URL (\(name))")
        }
        let force = QueryString.isTrue(request.query["force"])
        let dryRun = request.query["dryRun"] == "All"
        let definition = OpenAPI.definitionName(group: resource.group, version: resource.version, kind: resource.kind)
        let now = Timestamp(Date()).text
        for _ in 0..<4 {
            do {
                let existing = try await storage.get(resource, namespace: namespace, name: name)
                let taken = try await takenPorts(resource)
                let transform = { (current: JSONValue) throws(APIError) -> JSONValue in
                    let applied = try ServerSideApply.apply(body, to: current, manager: manager, force: force, definition: definition, now: now)
                    return try prepared(applied, existing: current, resource, namespace: namespace, view: .main(resource), user: user, takenPorts: taken)
                }
                if dryRun { return .object(status: 200, try transform(existing), warnings: warnings) }
                let stored = try await storage.guaranteedUpdate(resource, namespace: namespace, name: name, transform)
                return .object(status: 200, try await finishDeletion(resource, namespace: namespace, stored), warnings: warnings)
            } catch where error.reason == "NotFound" && error.details?.name == name {
                var fresh = try ServerSideApply.apply(body, to: nil, manager: manager, force: force, definition: definition, now: now)
                fresh.setMetadata("name", .string(name))
                // A new object needs what its schema requires, as a create does.
                fresh = try Self.validated(fresh, resource, ["fieldValidation": "Ignore"]).0
                do {
                    return .object(status: 201, try await create(fresh, resource, namespace: namespace, dryRun: dryRun, user: user), warnings: warnings)
                } catch where error.reason == "AlreadyExists" {
                    continue
                }
            }
        }
        throw APIError.conflict(resource, name: name, why: "too many concurrent changes; try again")
    }

    /// The media types request bodies may come in (patches have their own).
    static let readableMediaTypes: Set<String> = ["application/json", YAMLBody.mediaType, KubernetesProtobuf.mediaType, "*/*"]

    /// A PATCH: the patch applied to the object as stored, the result checked as an update and
    /// written on the version it was made from (again from the new version after a conflict); a
    /// `metadata.resourceVersion` in the patch must be the stored one (409 otherwise).
    func patch(_ resource: ResourceType, namespace: String?, name: String, _ request: APIRequest, user: UserInfo?,
               view: ObjectView? = nil) async throws(APIError) -> (JSONValue, [String]) {
        let view = view ?? .main(resource)
        guard let type = request.contentType, let kind = Patches.Kind(rawValue: type) else {
            throw APIError(code: 415, reason: "UnsupportedMediaType",
                           message: "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (not \(request.contentType ?? "none"))")
        }
        guard request.body.count <= Self.bodyBytesMax else { throw APIError.tooLarge }
        let bodyType = view.bodyType
        let taken = try await takenPorts(resource)
        let definition = OpenAPI.definitionName(group: bodyType.group, version: bodyType.version, kind: bodyType.kind)
        let body = request.body
        let query = request.query
        var warnings: [String] = []
        let transform = { (current: JSONValue) throws(APIError) -> JSONValue in
            let seen = try view.project(current)
            let (patched, found) = try Self.validated(try Patches.apply(kind, patch: body, to: seen, definition: definition), bodyType, query)
            warnings = found
            if let wanted = patched.metadata("resourceVersion")?.stringValue, wanted != current.metadata("resourceVersion")?.stringValue {
                throw APIError.conflict(resource, name: name)
            }
            return try prepared(patched, existing: current, resource, namespace: namespace, view: view, user: user, takenPorts: taken)
        }
        if request.query["dryRun"] == "All" {
            let result = try transform(try await storage.get(resource, namespace: namespace, name: name))
            return (try view.project(result), warnings)
        }
        let result = try await finishDeletion(resource, namespace: namespace, try await storage.guaranteedUpdate(resource, namespace: namespace, name: name, transform))
        return (try view.project(result), warnings)
    }

    /// `object` checked against its schema under the request's `fieldValidation` (Warn when
    /// not given): without undeclared fields, and the warnings for them.
    static func validated(_ object: JSONValue, _ resource: ResourceType, _ query: [String: String], partial: Bool = false) throws(APIError) -> (JSONValue, [String]) {
        let given = query["fieldValidation"] ?? ""
        guard let directive = given.isEmpty ? .warn : FieldValidation.Directive(rawValue: given) else {
            throw APIError.badRequest("fieldValidation must be one of Strict, Warn or Ignore, not \"\(given)\"")
        }
        let (pruned, warnings) = try FieldValidation.validate(object, resource: resource, directive: directive, partial: partial)
        return (pruned, warnings)
    }

    static func decodeBody(_ body: [UInt8], contentType: String?) throws(APIError) -> JSONValue {
        guard !body.isEmpty else { throw APIError.badRequest("the request has no body: it needs the object as JSON") }
        guard body.count <= bodyBytesMax else { throw APIError.tooLarge }
        if contentType == YAMLBody.mediaType {
            do {
                return try YAMLBody.decode(body)
            } catch {
                throw APIError.badRequest("the body of the request does not parse as YAML: \(error.description)")
            }
        }
        if contentType == KubernetesProtobuf.mediaType {
            do {
                return try KubernetesProtobuf.decode(body)
            } catch {
                throw APIError.badRequest("the body of the request does not decode as \(KubernetesProtobuf.mediaType): \(error.message)")
            }
        }
        do {
            return try JSONDecoder().decode(JSONValue.self, from: Data(body))
        } catch {
            throw APIError.badRequest("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (it does not parse as JSON: \(error))")
        }
    }

    /// The label and field selectors of `query` as one test of an object; nil when there are none.
    static func selectorFilter(_ resource: ResourceType, _ query: [String: String]) throws(APIError) -> (@Sendable (JSONValue) -> Bool)? {
        let labels = try LabelSelector(parsing: query["labelSelector"] ?? "")
        let fields = try FieldSelector(parsing: query["fieldSelector"] ?? "", kind: resource.kind)
        if labels.requirements.isEmpty && fields.requirements.isEmpty { return nil }
        return { labels.matches(object: $0) && fields.matches(object: $0) }
    }

    func list(_ resource: ResourceType, namespace: String?, _ query: [String: String]) async throws(APIError) -> JSONValue {
        let filter = try Self.selectorFilter(resource, query)
        guard let limit = Int64(query["limit"] ?? "0"), limit >= 0 else { throw APIError.badRequest("limit must be a non-negative integer") }
        let continueToken = query["continue"].flatMap { $0.isEmpty ? nil : $0 }
        let page = try await storage.list(resource, namespace: namespace, limit: limit, continueToken: continueToken,
                                          consistent: query["resourceVersion"] != "0", filter: filter)
        var metadata: [String: JSONValue] = ["resourceVersion": .string(String(page.resourceVersion))]
        if let token = page.continueToken { metadata["continue"] = .string(token) }
        if let remaining = page.remainingItemCount { metadata["remainingItemCount"] = .integer(remaining) }
        return .object([
            "kind": .string("\(resource.kind)List"), "apiVersion": .string(resource.apiVersion),
            "metadata": .object(metadata), "items": .array(page.items.map { Self.withKind($0, resource) }),
        ])
    }

    /// Items of a list carry their kind and apiVersion, as Kubernetes stores and serves them.
    static func withKind(_ object: JSONValue, _ resource: ResourceType) -> JSONValue {
        guard case .object(var fields) = object else { return object }
        fields["kind"] = .string(resource.kind)
        fields["apiVersion"] = .string(resource.apiVersion)
        return .object(fields)
    }

    /// A watch from `resourceVersion` (changes after it), or, without one (or "0"), Kubernetes'
    /// "get state and start at most recent": ADDED for every current object, then the changes.
    func watchResource(_ resource: ResourceType, namespace: String?, name: String?, _ query: [String: String],
                       table: (version: String, include: Tables.Include)?) async throws(APIError) -> APIResponse {
        let given = query["resourceVersion"] ?? ""
        let selected = try Self.selectorFilter(resource, query)
        // A watch of one object by name is a watch of the collection with metadata.name set.
        var filter = selected
        if let name {
            filter = { @Sendable object in object.metadata("name")?.stringValue == name && (selected?(object) ?? true) }
        }
        var initial: [ObjectEvent] = []
        var from: Int64
        if given.isEmpty || given == "0" {
            let page = try await storage.list(resource, namespace: namespace, filter: filter)
            initial = page.items.map { .added(Self.withKind($0, resource)) }
            from = page.resourceVersion
        } else {
            guard let version = Int64(given), version > 0 else { throw APIError.badRequest("resourceVersion \"\(given)\" is not a resource version") }
            from = version
        }
        let progress = QueryString.isTrue(query["allowWatchBookmarks"])
        let watch = try await storage.watch(resource, namespace: namespace, after: from, progressNotify: progress, filter: filter)
        return .watch(watch, initial: initial, encoder: WatchEncoder(resource: resource, table: table))
    }

    func discovery(_ request: APIRequest, _ info: RequestInfo) throws(APIError) -> APIResponse {
        guard request.method == "GET" || request.method == "HEAD" else {
            throw APIError.methodNotAllowed
        }
        let parts = request.path.split(separator: "/").map(String.init)
        switch parts {
        case ["version"]: return .object(status: 200, Discovery.version())
        case ["healthz"], ["livez"], ["readyz"]: return .text(status: 200, "ok")
        case ["api"]: return .object(status: 200, Discovery.apiVersions(serverAddress: serverAddress))
        case ["apis"]: return .object(status: 200, Discovery.groupList(resources))
        case ["openapi", "v3"]: return .object(status: 200, openAPI.root())
        case _ where parts.count >= 3 && parts[0] == "openapi" && parts[1] == "v3":
            if let document = openAPI.document(parts.dropFirst(2).joined(separator: "/")) { return .object(status: 200, document) }
        case _ where parts.count == 2 && parts[0] == "api":
            if let list = Discovery.resourceList(group: "", version: parts[1], resources) { return .object(status: 200, list) }
        case _ where parts.count == 2 && parts[0] == "apis":
            if let group = Discovery.group(parts[1], resources) { return .object(status: 200, group) }
        case _ where parts.count == 3 && parts[0] == "apis":
            if let list = Discovery.resourceList(group: parts[1], version: parts[2], resources) { return .object(status: 200, list) }
        default: break
        }
        throw APIError.noSuchResource
    }
}
