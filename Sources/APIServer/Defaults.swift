import Resources

/// Kubernetes' defaulting (k8s.io/kubernetes/pkg/apis/*/v1/defaults.go) for the served kinds: the
/// fields a user leaves out and every client then reads as set (a pod's restartPolicy, dnsPolicy,
/// grace period, each container's imagePullPolicy from its tag; a Deployment's 25%/25% rolling
/// update; a Service's type and target ports; ...). Applied to every object written (create,
/// update, patch), as kube-apiserver defaults every object it decodes; only absent or null
/// fields are filled.
public enum Defaults {
    public static func apply(_ object: JSONValue, _ resource: ResourceType) -> JSONValue {
        guard case .object(var fields) = object else { return object }
        switch (resource.group, resource.kind) {
        case ("", "Pod"):
            edit(&fields, "spec", podSpec)
        case ("", "PodTemplate"), ("", "ReplicationController"):
            break
        case ("apps", "Deployment"):
            edit(&fields, "spec") { spec in
                fill(&spec, "replicas", .integer(1))
                fill(&spec, "revisionHistoryLimit", .integer(10))
                fill(&spec, "progressDeadlineSeconds", .integer(600))
                rollingStrategy(&spec, "strategy", [("maxUnavailable", "25%"), ("maxSurge", "25%")])
                podTemplate(&spec)
            }
        case ("apps", "ReplicaSet"):
            edit(&fields, "spec") { spec in
                fill(&spec, "replicas", .integer(1))
                podTemplate(&spec)
            }
        case ("apps", "StatefulSet"):
            edit(&fields, "spec") { spec in
                fill(&spec, "replicas", .integer(1))
                fill(&spec, "podManagementPolicy", "OrderedReady")
                fill(&spec, "revisionHistoryLimit", .integer(10))
                rollingStrategy(&spec, "updateStrategy", [("partition", .integer(0))])
                edit(&spec, "persistentVolumeClaimRetentionPolicy") { policy in
                    fill(&policy, "whenDeleted", "Retain")
                    fill(&policy, "whenScaled", "Retain")
                }
                podTemplate(&spec)
            }
        case ("apps", "DaemonSet"):
            edit(&fields, "spec") { spec in
                fill(&spec, "revisionHistoryLimit", .integer(10))
                rollingStrategy(&spec, "updateStrategy", [("maxUnavailable", .integer(1)), ("maxSurge", .integer(0))])
                podTemplate(&spec)
            }
        case ("batch", "Job"):
            edit(&fields, "spec") { spec in
                if isAbsent(spec["completions"]) && isAbsent(spec["parallelism"]) { spec["completions"] = .integer(1) }
                fill(&spec, "parallelism", .integer(1))
                fill(&spec, "backoffLimit", .integer(6))
                fill(&spec, "completionMode", "NonIndexed")
                fill(&spec, "suspend", false)
                if isAbsent(spec["podFailurePolicy"]) { fill(&spec, "podReplacementPolicy", "TerminatingOrFailed") }
                fill(&spec, "manualSelector", false)
                podTemplate(&spec)
            }
        case ("", "Service"):
            edit(&fields, "spec") { spec in
                fill(&spec, "type", "ClusterIP")
                fill(&spec, "sessionAffinity", "None")
                if spec["type"] != "ExternalName" { fill(&spec, "internalTrafficPolicy", "Cluster") }
                if spec["type"] == "NodePort" || spec["type"] == "LoadBalancer" { fill(&spec, "externalTrafficPolicy", "Cluster") }
                if spec["type"] == "LoadBalancer" { fill(&spec, "allocateLoadBalancerNodePorts", true) }
                editEach(&spec, "ports") { port in
                    fill(&port, "protocol", "TCP")
                    if let number = port["port"], isAbsent(port["targetPort"]) { port["targetPort"] = number }
                }
            }
        case ("", "Namespace"):
            if let name = object.metadata("name")?.stringValue {
                edit(&fields, "metadata") { metadata in
                    edit(&metadata, "labels") { $0["kubernetes.io/metadata.name"] = .string(name) }
                }
            }
        case ("", "Secret"):
            fill(&fields, "type", "Opaque")
        case ("", "Endpoints"):
            editEach(&fields, "subsets") { subset in editEach(&subset, "ports") { fill(&$0, "protocol", "TCP") } }
        case ("discovery.k8s.io", "EndpointSlice"):
            editEach(&fields, "ports") { port in
                fill(&port, "protocol", "TCP")
                fill(&port, "name", "")
            }
        case ("rbac.authorization.k8s.io", "RoleBinding"), ("rbac.authorization.k8s.io", "ClusterRoleBinding"):
            editEach(&fields, "subjects") { subject in
                if subject["kind"] == "User" || subject["kind"] == "Group" { fill(&subject, "apiGroup", "rbac.authorization.k8s.io") }
            }
        default:
            break
        }
        return .object(fields)
    }

    /// What a new object gets once it has its uid: a Job's generated selector and the labels
    /// its pods carry (`batch.kubernetes.io/controller-uid`, `job-name`), unless it selects by
    /// hand; a Namespace its `kubernetes` finalizer.
    public static func onCreate(_ object: JSONValue, _ resource: ResourceType) -> JSONValue {
        if resource.group.isEmpty && resource.kind == "Namespace", case .object(var fields) = object {
            // Every namespace holds the `kubernetes` finalizer: its content goes before it does.
            edit(&fields, "spec") { $0["finalizers"] = .array([.string(NamespaceFinalizer.finalizer)]) }
            return .object(fields)
        }
        guard resource.group == "batch", resource.kind == "Job", case .object(var fields) = object,
              object["spec"]?["manualSelector"] != true, let uid = object.metadata("uid")?.stringValue,
              let name = object.metadata("name")?.stringValue else { return object }
        edit(&fields, "spec") { spec in
            spec["selector"] = .object(["matchLabels": .object(["batch.kubernetes.io/controller-uid": .string(uid)])])
            edit(&spec, "template") { template in
                edit(&template, "metadata") { metadata in
                    edit(&metadata, "labels") { labels in
                        for key in ["batch.kubernetes.io/controller-uid", "controller-uid"] { labels[key] = .string(uid) }
                        for key in ["batch.kubernetes.io/job-name", "job-name"] { labels[key] = .string(name) }
                    }
                }
            }
        }
        return .object(fields)
    }

    /// A workload's update strategy: RollingUpdate unless given, and then its rolling defaults.
    static func rollingStrategy(_ spec: inout [String: JSONValue], _ key: String, _ rollingDefaults: [(String, JSONValue)]) {
        edit(&spec, key) { strategy in
            fill(&strategy, "type", "RollingUpdate")
            guard strategy["type"] == "RollingUpdate" else { return }
            edit(&strategy, "rollingUpdate") { rolling in
                for (field, value) in rollingDefaults { fill(&rolling, field, value) }
            }
        }
    }

    /// A workload's `template.spec`.
    static func podTemplate(_ spec: inout [String: JSONValue]) {
        edit(&spec, "template") { template in edit(&template, "spec", podSpec) }
    }

    static func podSpec(_ spec: inout [String: JSONValue]) {
        fill(&spec, "restartPolicy", "Always")
        fill(&spec, "dnsPolicy", "ClusterFirst")
        fill(&spec, "terminationGracePeriodSeconds", .integer(30))
        fill(&spec, "securityContext", .object([:]))
        fill(&spec, "schedulerName", "default-scheduler")
        fill(&spec, "enableServiceLinks", true)
        for key in ["containers", "initContainers", "ephemeralContainers"] { editEach(&spec, key, container) }
        editEach(&spec, "volumes") { volume in
            for source in ["configMap", "secret", "downwardAPI", "projected"] where volume[source] != nil {
                edit(&volume, source) { fill(&$0, "defaultMode", .integer(420)) }
            }
        }
    }

    static func container(_ container: inout [String: JSONValue]) {
        fill(&container, "terminationMessagePath", "/dev/termination-log")
        fill(&container, "terminationMessagePolicy", "File")
        if let image = container["image"]?.stringValue { fill(&container, "imagePullPolicy", .string(pullPolicy(image))) }
        edit(&container, "resources") { resources in
            // A limit without a request asks for what it limits.
            if case .object(let limits) = resources["limits"] ?? .null {
                edit(&resources, "requests") { requests in
                    for (name, limit) in limits where isAbsent(requests[name]) { requests[name] = limit }
                }
            }
        }
        editEach(&container, "ports") { fill(&$0, "protocol", "TCP") }
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] where container[probe] != nil && container[probe] != .null {
            edit(&container, probe) { probe in
                fill(&probe, "timeoutSeconds", .integer(1))
                fill(&probe, "periodSeconds", .integer(10))
                fill(&probe, "successThreshold", .integer(1))
                fill(&probe, "failureThreshold", .integer(3))
                if probe["httpGet"] != nil { edit(&probe, "httpGet") { fill(&$0, "scheme", "HTTP"); fill(&$0, "path", "/") } }
            }
        }
    }

    /// Always for `:latest` or no tag (the image may change under the same name), else IfNotPresent.
    public static func pullPolicy(_ image: String) -> String {
        if image.contains("@") { return "IfNotPresent" }
        let lastComponent = image.split(separator: "/").last.map(String.init) ?? image
        guard let colon = lastComponent.lastIndex(of: ":") else { return "Always" }
        return lastComponent[lastComponent.index(after: colon)...] == "latest" ? "Always" : "IfNotPresent"
    }

    static func isAbsent(_ value: JSONValue?) -> Bool { value == nil || value == .null }

    static func fill(_ object: inout [String: JSONValue], _ key: String, _ value: JSONValue) {
        if isAbsent(object[key]) { object[key] = value }
    }

    /// Edits the object at `key` (made empty when absent); a value of another type is left alone
    /// (validation reports it).
    static func edit(_ object: inout [String: JSONValue], _ key: String, _ body: (inout [String: JSONValue]) -> Void) {
        var inner: [String: JSONValue]
        switch object[key] {
        case .object(let value)?: inner = value
        case nil, .null?: inner = [:]
        default: return
        }
        body(&inner)
        object[key] = .object(inner)
    }

    /// Edits each object of the array at `key`.
    static func editEach(_ object: inout [String: JSONValue], _ key: String, _ body: (inout [String: JSONValue]) -> Void) {
        guard case .array(let items)? = object[key] else { return }
        object[key] = .array(items.map { item in
            guard case .object(var fields) = item else { return item }
            body(&fields)
            return .object(fields)
        })
    }
}
