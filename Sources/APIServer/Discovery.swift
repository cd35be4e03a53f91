import Resources

/// The discovery documents kubectl and client-go read before anything else (the legacy forms,
/// which every client falls back to): `/api` (APIVersions), `/apis` (APIGroupList), and
/// `/api/v1`, `/apis/GROUP/VERSION` (APIResourceList, subresources as `pods/status`).
public enum Discovery {
    public static func apiVersions(serverAddress: String) -> JSONValue {
        .object([
            "kind": .string("APIVersions"), "versions": .array([.string("v1")]),
            "serverAddressByClientCIDRs": .array([.object(["clientCIDR": .string("0.0.0.0/0"), "serverAddress": .string(serverAddress)])]),
        ])
    }

    public static func groupList(_ resources: [ResourceType] = ServedResources.all) -> JSONValue {
        var groups: [String: [String]] = [:]
        var order: [String] = []
        for resource in resources where !resource.group.isEmpty {
            if groups[resource.group] == nil { order.append(resource.group) }
            if !(groups[resource.group]?.contains(resource.version) ?? false) { groups[resource.group, default: []].append(resource.version) }
        }
        return .object([
            "kind": .string("APIGroupList"), "apiVersion": .string("v1"),
            "groups": .array(order.map { group(named: $0, versions: groups[$0]!) }),
        ])
    }

    /// `/apis/GROUP`: one group and its versions, or nil if not served.
    public static func group(_ name: String, _ resources: [ResourceType] = ServedResources.all) -> JSONValue? {
        var versions: [String] = []
        for resource in resources where resource.group == name && !versions.contains(resource.version) { versions.append(resource.version) }
        guard !versions.isEmpty else { return nil }
        guard case .object(var object) = group(named: name, versions: versions) else { return nil }
        object["kind"] = .string("APIGroup")
        object["apiVersion"] = .string("v1")
        return .object(object)
    }

    static func group(named name: String, versions: [String]) -> JSONValue {
        let entries = versions.map { JSONValue.object(["groupVersion": .string("\(name)/\($0)"), "version": .string($0)]) }
        return .object(["name": .string(name), "versions": .array(entries), "preferredVersion": entries[0]])
    }

    /// `/api/v1` or `/apis/GROUP/VERSION`, or nil when nothing is served there.
    public static func resourceList(group: String, version: String, _ resources: [ResourceType] = ServedResources.all) -> JSONValue? {
        let served = resources.filter { $0.group == group && $0.version == version }
        guard !served.isEmpty else { return nil }
        var entries: [JSONValue] = []
        for resource in served {
            var entry: [String: JSONValue] = [
                "name": .string(resource.name), "singularName": .string(resource.singularName), "namespaced": .bool(resource.namespaced),
                "kind": .string(resource.kind), "verbs": .array(resource.verbs.map(JSONValue.string)),
            ]
            if !resource.shortNames.isEmpty { entry["shortNames"] = .array(resource.shortNames.map(JSONValue.string)) }
            if !resource.categories.isEmpty { entry["categories"] = .array(resource.categories.map(JSONValue.string)) }
            entries.append(.object(entry))
            for subresource in resource.subresources {
                let (kind, verbs, subGroup, subVersion) = subresourceShape(resource, subresource)
                var sub: [String: JSONValue] = [
                    "name": .string("\(resource.name)/\(subresource)"), "singularName": .string(""), "namespaced": .bool(resource.namespaced),
                    "kind": .string(kind), "verbs": .array(verbs.map(JSONValue.string)),
                ]
                if let subGroup { sub["group"] = .string(subGroup) }
                if let subVersion { sub["version"] = .string(subVersion) }
                entries.append(.object(sub))
            }
        }
        return .object([
            "kind": .string("APIResourceList"), "apiVersion": .string("v1"),
            "groupVersion": .string(group.isEmpty ? version : "\(group)/\(version)"), "resources": .array(entries),
        ])
    }

    /// What each subresource is, as kube-apiserver lists it.
    static func subresourceShape(_ resource: ResourceType, _ subresource: String) -> (kind: String, verbs: [String], group: String?, version: String?) {
        switch subresource {
        case "status": (resource.kind, ["get", "patch", "update"], nil, nil)
        case "scale": ("Scale", ["get", "patch", "update"], "autoscaling", "v1")
        case "binding": ("Binding", ["create"], nil, nil)
        case "eviction": ("Eviction", ["create"], "policy", "v1")
        case "finalize": ("Namespace", ["update"], nil, nil)
        default: (resource.kind, ["get"], nil, nil)
        }
    }

    /// `/version`: what kubectl's `version` prints and the dispatcher at /usr/bin/kubectl reads
    /// to pick its kubectl.
    /// The Kubernetes version whose API is served.
    public static let gitVersion = "v1.33.0-raftkube"

    public static func version(gitVersion: String = Discovery.gitVersion, gitCommit: String = "") -> JSONValue {
        .object([
            "major": .string("1"), "minor": .string("33"), "gitVersion": .string(gitVersion), "gitCommit": .string(gitCommit),
            "gitTreeState": .string("clean"), "buildDate": .string("2026-12-03T00:00:00Z"), "goVersion": .string("swift6.3"),
            "compiler": .string("swiftc"), "platform": .string("linux/amd64"),
        ])
    }
}
