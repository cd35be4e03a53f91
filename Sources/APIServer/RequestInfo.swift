/// What a request to the API asks for, read from its method, path and query as
/// k8s.io/apiserver's RequestInfoFactory reads them: the verb, the group and version, the
/// namespace, the resource, the name, the subresource. Non-resource paths (`/version`,
/// `/healthz`, `/api`, `/apis/apps`) are `isResourceRequest == false` with their path.
public struct RequestInfo: Sendable, Equatable {
    public var isResourceRequest: Bool
    public var path: String
    /// get, list, watch, create, update, patch, delete, deletecollection (resource requests);
    /// the lowercased HTTP method for the others.
    public var verb: String
    /// "" for the core group.
    public var group: String = ""
    public var version: String = ""
    public var namespace: String?
    public var resource: String = ""
    public var name: String?
    public var subresource: String?

    /// Reads `method` (GET, POST, ...), `path` (without the query) and whether the query asks
    /// to watch; nil when the path is a resource path that does not parse (e.g. too many parts).
    public init?(method: String, path: String, watch: Bool) {
        self.path = path
        let parts = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        var rest: ArraySlice<String>
        if parts.count >= 2, parts[0] == "api" {
            version = parts[1]
            rest = parts.dropFirst(2)
        } else if parts.count >= 3, parts[0] == "apis" {
            group = parts[1]
            version = parts[2]
            rest = parts.dropFirst(3)
        } else {
            isResourceRequest = false
            verb = method.lowercased()
            return
        }
        guard !rest.isEmpty else {
            // `/api/v1`, `/apis/apps/v1`: discovery.
            isResourceRequest = false
            verb = method.lowercased()
            return
        }
        isResourceRequest = true
        // `namespaces/NS/RESOURCE/...`, but `namespaces` and `namespaces/NAME[/status|finalize]` are
        // the Namespace resource itself (cluster-scoped).
        if rest.first == "namespaces", rest.count >= 3, !["status", "finalize"].contains(rest[rest.startIndex + 2]) {
            namespace = rest[rest.startIndex + 1]
            rest = rest.dropFirst(2)
        }
        let items = Array(rest)
        switch items.count {
        case 1: resource = items[0]
        case 2: (resource, name) = (items[0], items[1])
        case 3: (resource, name, subresource) = (items[0], items[1], items[2])
        default: return nil
        }
        switch method.uppercased() {
        // A GET with ?watch=1 is a watch, of a collection or (by name) of one object.
        case "GET", "HEAD": verb = watch ? "watch" : (name == nil ? "list" : "get")
        case "POST": verb = "create"
        case "PUT": verb = "update"
        case "PATCH": verb = "patch"
        case "DELETE": verb = name == nil ? "deletecollection" : "delete"
        default: verb = method.lowercased()
        }
        for segment in [namespace, name, subresource].compactMap({ $0 }) where segment.isEmpty { return nil }
    }

    /// `v1` or `apps/v1`.
    public var apiVersion: String { group.isEmpty ? version : "\(group)/\(version)" }
}

extension RequestInfo {
    /// A resource request named by its attributes (what an access review asks about).
    public init(verb: String, group: String, version: String, resource: String, subresource: String?, namespace: String?, name: String?) {
        isResourceRequest = true
        path = ""
        self.verb = verb
        self.group = group
        self.version = version
        self.resource = resource
        self.subresource = subresource
        self.namespace = namespace
        self.name = name
    }

    /// A request for a path that names no resource.
    public init(verb: String, nonResourcePath: String) {
        isResourceRequest = false
        path = nonResourcePath
        self.verb = verb
    }
}
