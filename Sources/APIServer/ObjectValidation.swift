import Foundation
import Resources

/// Kubernetes' validation of the served kinds beyond their schema (k8s.io/kubernetes/pkg/apis/*
/// /validation), for what users get wrong: pods' containers (names, images, ports, policies),
/// workloads' selectors against their templates, services' ports and types, config keys and
/// sizes, bindings' role references; and on update the fields Kubernetes keeps immutable (most of
/// a pod's spec, selectors, a Service's clusterIP, immutable ConfigMaps and Secrets, a binding's
/// roleRef). Every problem is a cause of one 422 `Invalid`, with Kubernetes' field paths and words.
public enum ObjectValidation {
    public typealias Cause = APIError.Cause

    /// Checks `object` (defaulted) as a create (`existing` nil) or an update of `existing`.
    public static func check(_ object: JSONValue, existing: JSONValue?, _ resource: ResourceType) throws(APIError) {
        var causes = problems(object, resource)
        if let existing { causes += immutableProblems(object, existing: existing, resource) }
        guard !causes.isEmpty else { return }
        throw APIError.invalid(kind: resource.kind, group: resource.group, name: object.metadata("name")?.stringValue ?? "", causes: causes)
    }

    static func problems(_ object: JSONValue, _ resource: ResourceType) -> [Cause] {
        switch (resource.group, resource.kind) {
        case ("", "Pod"):
            return podSpec(object["spec"], path: "spec")
        case ("apps", "Deployment"), ("apps", "ReplicaSet"), ("apps", "StatefulSet"), ("apps", "DaemonSet"):
            var causes = workloadSelector(object, kind: resource.kind.lowercased())
            if let replicas = object["spec"]?["replicas"] { causes += nonNegative(replicas, "spec.replicas") }
            causes += podSpec(object["spec"]?["template"]?["spec"], path: "spec.template.spec")
            if let policy = object["spec"]?["template"]?["spec"]?["restartPolicy"]?.stringValue, policy != "Always" {
                causes.append(unsupported(policy, ["Always"], "spec.template.spec.restartPolicy"))
            }
            return causes
        case ("batch", "Job"):
            var causes = workloadSelector(object, kind: "job")
            for key in ["parallelism", "completions", "backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"] {
                if let value = object["spec"]?[key] { causes += nonNegative(value, "spec.\(key)") }
            }
            causes += podSpec(object["spec"]?["template"]?["spec"], path: "spec.template.spec")
            let policy = object["spec"]?["template"]?["spec"]?["restartPolicy"]?.stringValue ?? ""
            if policy != "OnFailure" && policy != "Never" {
                causes.append(Cause(reason: "FieldValueRequired", message: "Required value: valid values: \"OnFailure\", \"Never\"", field: "spec.template.spec.restartPolicy"))
            }
            return causes
        case ("", "Service"):
            return service(object["spec"])
        case ("", "ConfigMap"), ("", "Secret"):
            return configData(object)
        case ("rbac.authorization.k8s.io", "RoleBinding"), ("rbac.authorization.k8s.io", "ClusterRoleBinding"):
            return roleBinding(object, clusterScoped: resource.kind == "ClusterRoleBinding")
        default:
            return []
        }
    }

    // MARK: Pods

    static let restartPolicies = ["Always", "OnFailure", "Never"]
    static let dnsPolicies = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
    static let pullPolicies = ["Always", "IfNotPresent", "Never"]
    static let protocols = ["TCP", "UDP", "SCTP"]

    static func podSpec(_ spec: JSONValue?, path: String) -> [Cause] {
        var causes: [Cause] = []
        let containers = spec?["containers"]?.arrayValue ?? []
        if containers.isEmpty { causes.append(required("\(path).containers")) }
        var volumeNames = Set<String>()
        for (index, volume) in (spec?["volumes"]?.arrayValue ?? []).enumerated() {
            let name = volume["name"]?.stringValue ?? ""
            let field = "\(path).volumes[\(index)].name"
            if name.isEmpty { causes.append(required(field)) } else {
                causes += NameRules.dnsLabelProblems(name).map { invalid(.string(name), $0, field) }
                if !volumeNames.insert(name).inserted { causes.append(duplicate(name, field)) }
            }
        }
        var names = Set<String>()
        for (key, list) in [("initContainers", spec?["initContainers"]?.arrayValue ?? []), ("containers", containers)] {
            for (index, container) in list.enumerated() {
                let at = "\(path).\(key)[\(index)]"
                let name = container["name"]?.stringValue ?? ""
                if name.isEmpty { causes.append(required("\(at).name")) } else {
                    causes += NameRules.dnsLabelProblems(name).map { invalid(.string(name), $0, "\(at).name") }
                    if !names.insert(name).inserted { causes.append(duplicate(name, "\(at).name")) }
                }
                if (container["image"]?.stringValue ?? "").trimmingCharacters(in: .whitespaces).isEmpty { causes.append(required("\(at).image")) }
                if let policy = container["imagePullPolicy"]?.stringValue, !pullPolicies.contains(policy) {
                    causes.append(unsupported(policy, pullPolicies, "\(at).imagePullPolicy"))
                }
                for (portIndex, port) in (container["ports"]?.arrayValue ?? []).enumerated() {
                    let portPath = "\(at).ports[\(portIndex)]"
                    causes += portNumber(port["containerPort"], "\(portPath).containerPort", required: true)
                    if let host = port["hostPort"], host != .integer(0) { causes += portNumber(host, "\(portPath).hostPort", required: false) }
                    if let proto = port["protocol"]?.stringValue, !protocols.contains(proto) { causes.append(unsupported(proto, protocols, "\(portPath).protocol")) }
                }
                for (mountIndex, mount) in (container["volumeMounts"]?.arrayValue ?? []).enumerated() {
                    let name = mount["name"]?.stringValue ?? ""
                    if !volumeNames.contains(name) {
                        causes.append(Cause(reason: "FieldValueNotFound", message: "Not found: \"\(name)\"", field: "\(at).volumeMounts[\(mountIndex)].name"))
                    }
                    if (mount["mountPath"]?.stringValue ?? "").isEmpty { causes.append(required("\(at).volumeMounts[\(mountIndex)].mountPath")) }
                }
            }
        }
        if let policy = spec?["restartPolicy"]?.stringValue, !restartPolicies.contains(policy) {
            causes.append(unsupported(policy, restartPolicies, "\(path).restartPolicy"))
        }
        if let policy = spec?["dnsPolicy"]?.stringValue, !dnsPolicies.contains(policy) {
            causes.append(unsupported(policy, dnsPolicies, "\(path).dnsPolicy"))
        }
        if let grace = spec?["terminationGracePeriodSeconds"] { causes += nonNegative(grace, "\(path).terminationGracePeriodSeconds") }
        if let deadline = spec?["activeDeadlineSeconds"], case .integer(let value) = deadline, value <= 0 {
            causes.append(invalid(deadline, "must be between 1 and 2147483647, inclusive", "\(path).activeDeadlineSeconds"))
        }
        if let node = spec?["nodeName"]?.stringValue, !node.isEmpty {
            causes += NameRules.dnsSubdomainProblems(node).map { invalid(.string(node), $0, "\(path).nodeName") }
        }
        return causes
    }

    /// A workload's selector: present, not empty, matching its template's labels.
    static func workloadSelector(_ object: JSONValue, kind: String) -> [Cause] {
        guard let selectorJSON = object["spec"]?["selector"], selectorJSON != .null else { return [required("spec.selector")] }
        let empty = (selectorJSON["matchLabels"]?.objectValue ?? [:]).isEmpty && (selectorJSON["matchExpressions"]?.arrayValue ?? []).isEmpty
        if empty { return [invalid(selectorJSON, "empty selector is invalid for \(kind)", "spec.selector")] }
        let selector: LabelSelector
        do {
            let decoded = try JSONDecoder().decode(MetaV1.LabelSelector.self, from: Data(selectorJSON.jsonBytes))
            selector = try LabelSelector(decoded)
        } catch {
            return [invalid(selectorJSON, "\((error as? APIError)?.message ?? "not a label selector")", "spec.selector")]
        }
        let labels = object["spec"]?["template"]?["metadata"]?["labels"] ?? .object([:])
        var map: [String: String] = [:]
        for (key, value) in labels.objectValue ?? [:] { map[key] = value.stringValue }
        guard selector.matches(map) else {
            return [invalid(labels, "`selector` does not match template `labels`", "spec.template.metadata.labels")]
        }
        return []
    }

    // MARK: Services

    static let serviceTypes = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]

    static func service(_ spec: JSONValue?) -> [Cause] {
        var causes: [Cause] = []
        let type = spec?["type"]?.stringValue ?? "ClusterIP"
        if !serviceTypes.contains(type) { causes.append(unsupported(type, serviceTypes, "spec.type")) }
        let ports = spec?["ports"]?.arrayValue ?? []
        let headless = spec?["clusterIP"] == "None"
        if type == "ExternalName" {
            if (spec?["externalName"]?.stringValue ?? "").isEmpty { causes.append(required("spec.externalName")) }
        } else if ports.isEmpty && !headless {
            causes.append(required("spec.ports"))
        }
        var names = Set<String>()
        for (index, port) in ports.enumerated() {
            let at = "spec.ports[\(index)]"
            let name = port["name"]?.stringValue ?? ""
            if ports.count > 1 && name.isEmpty { causes.append(required("\(at).name")) }
            if !name.isEmpty {
                causes += NameRules.dnsLabelProblems(name).map { invalid(.string(name), $0, "\(at).name") }
                if !names.insert(name).inserted { causes.append(duplicate(name, "\(at).name")) }
            }
            causes += portNumber(port["port"], "\(at).port", required: true)
            if let proto = port["protocol"]?.stringValue, !protocols.contains(proto) { causes.append(unsupported(proto, protocols, "\(at).protocol")) }
            if case .integer = port["targetPort"] ?? .null { causes += portNumber(port["targetPort"], "\(at).targetPort", required: false) }
            if let node = port["nodePort"], node != .integer(0) {
                if type == "ClusterIP" || type == "ExternalName" {
                    causes.append(Cause(reason: "FieldValueForbidden", message: "Forbidden: may not be used when `type` is '\(type)'", field: "\(at).nodePort"))
                } else {
                    causes += portNumber(node, "\(at).nodePort", required: false)
                }
            }
        }
        if let affinity = spec?["sessionAffinity"]?.stringValue, !["None", "ClientIP"].contains(affinity) {
            causes.append(unsupported(affinity, ["ClientIP", "None"], "spec.sessionAffinity"))
        }
        return causes
    }

    // MARK: Config

    /// ConfigMap and Secret keys (`[-._a-zA-Z0-9]+`) and their total size (1 MiB).
    static func configData(_ object: JSONValue) -> [Cause] {
        var causes: [Cause] = []
        var total = 0
        for field in ["data", "binaryData", "stringData"] {
            for (key, value) in object[field]?.objectValue ?? [:] {
                let valid = !key.isEmpty && key.utf8.count <= 253 && key != "." && key != ".." && !key.hasPrefix("..")
                    && key.utf8.allSatisfy { NameRules.isLowerAlphanumeric($0) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) || [UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: ".")].contains($0) }
                if !valid {
                    causes.append(invalid(.string(key), "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')", "\(field)[\(key)]"))
                }
                total += value.stringValue?.utf8.count ?? 0
            }
        }
        if total > 1 << 20 {
            causes.append(Cause(reason: "FieldValueTooLong", message: "Too long: must have at most 1048576 bytes", field: object["kind"] == "Secret" ? "data" : ""))
        }
        return causes
    }

    // MARK: RBAC

    static func roleBinding(_ object: JSONValue, clusterScoped: Bool) -> [Cause] {
        var causes: [Cause] = []
        let kinds = clusterScoped ? ["ClusterRole"] : ["Role", "ClusterRole"]
        let kind = object["roleRef"]?["kind"]?.stringValue ?? ""
        if !kinds.contains(kind) { causes.append(unsupported(kind, kinds, "roleRef.kind")) }
        if (object["roleRef"]?["name"]?.stringValue ?? "").isEmpty { causes.append(required("roleRef.name")) }
        if let group = object["roleRef"]?["apiGroup"]?.stringValue, group != "rbac.authorization.k8s.io" {
            causes.append(unsupported(group, ["rbac.authorization.k8s.io"], "roleRef.apiGroup"))
        }
        for (index, subject) in (object["subjects"]?.arrayValue ?? []).enumerated() {
            let subjectKind = subject["kind"]?.stringValue ?? ""
            if !["User", "Group", "ServiceAccount"].contains(subjectKind) {
                causes.append(unsupported(subjectKind, ["ServiceAccount", "User", "Group"], "subjects[\(index)].kind"))
            }
            if (subject["name"]?.stringValue ?? "").isEmpty { causes.append(required("subjects[\(index)].name")) }
            if subjectKind == "ServiceAccount" && clusterScoped && (subject["namespace"]?.stringValue ?? "").isEmpty {
                causes.append(required("subjects[\(index)].namespace"))
            }
        }
        return causes
    }

    // MARK: Immutable fields

    static let immutable = "field is immutable"

    static func immutableProblems(_ object: JSONValue, existing: JSONValue, _ resource: ResourceType) -> [Cause] {
        var causes: [Cause] = []
        switch (resource.group, resource.kind) {
        case ("", "Pod"):
            if mutablePodFieldsCleared(object["spec"], like: existing["spec"]) != existing["spec"] {
                causes.append(Cause(reason: "FieldValueForbidden",
                                    message: "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                                    field: "spec"))
            }
        case ("apps", "Deployment"), ("apps", "ReplicaSet"), ("apps", "DaemonSet"), ("apps", "StatefulSet"), ("batch", "Job"):
            if let old = existing["spec"]?["selector"], object["spec"]?["selector"] != old {
                causes.append(invalid(object["spec"]?["selector"] ?? .null, immutable, "spec.selector"))
            }
            if resource.kind == "Job" {
                if object["spec"]?["template"] != existing["spec"]?["template"] { causes.append(invalid(object["spec"]?["template"] ?? .null, immutable, "spec.template")) }
                if object["spec"]?["completions"] != existing["spec"]?["completions"] { causes.append(invalid(object["spec"]?["completions"] ?? .null, immutable, "spec.completions")) }
            }
        case ("", "Service"):
            if let old = existing["spec"]?["clusterIP"]?.stringValue, !old.isEmpty, let new = object["spec"]?["clusterIP"], new != .string(old),
               object["spec"]?["type"] != "ExternalName" {
                causes.append(invalid(new, "may not change once set", "spec.clusterIPs[0]"))
            }
        case ("", "ConfigMap"), ("", "Secret"):
            if existing["immutable"] == true {
                if object["immutable"] != true { causes.append(Cause(reason: "FieldValueForbidden", message: "Forbidden: field is immutable when `immutable` is set", field: "immutable")) }
                for field in ["data", "binaryData"] where object[field] != existing[field] {
                    causes.append(Cause(reason: "FieldValueForbidden", message: "Forbidden: field is immutable when `immutable` is set", field: field))
                }
            }
            if resource.kind == "Secret", let old = existing["type"], object["type"] != old {
                causes.append(invalid(object["type"] ?? .null, immutable, "type"))
            }
        case ("rbac.authorization.k8s.io", "RoleBinding"), ("rbac.authorization.k8s.io", "ClusterRoleBinding"):
            if object["roleRef"] != existing["roleRef"] { causes.append(invalid(object["roleRef"] ?? .null, "cannot change roleRef", "roleRef")) }
        default:
            break
        }
        return causes
    }

    /// A pod spec with what an update may change (images, activeDeadlineSeconds, added
    /// tolerations) taken from `old`, so that what remains must equal `old`.
    static func mutablePodFieldsCleared(_ new: JSONValue?, like old: JSONValue?) -> JSONValue? {
        guard case .object(var spec)? = new, let old else { return new }
        for key in ["containers", "initContainers"] {
            guard case .array(var containers)? = spec[key], let oldContainers = old[key]?.arrayValue, containers.count == oldContainers.count else { continue }
            for index in containers.indices {
                if case .object(var container) = containers[index] {
                    container["image"] = oldContainers[index]["image"]
                    containers[index] = .object(container)
                }
            }
            spec[key] = .array(containers)
        }
        spec["activeDeadlineSeconds"] = old["activeDeadlineSeconds"]
        if let oldTolerations = old["tolerations"]?.arrayValue ?? (old["tolerations"] == nil ? [] : nil),
           let newTolerations = spec["tolerations"]?.arrayValue, newTolerations.starts(with: oldTolerations) {
            spec["tolerations"] = old["tolerations"]
        }
        return .object(spec)
    }

    // MARK: Causes in Kubernetes' words

    static func required(_ field: String) -> Cause { Cause(reason: "FieldValueRequired", message: "Required value", field: field) }

    static func duplicate(_ value: String, _ field: String) -> Cause { Cause(reason: "FieldValueDuplicate", message: "Duplicate value: \"\(value)\"", field: field) }

    static func invalid(_ value: JSONValue, _ detail: String, _ field: String) -> Cause {
        Cause(reason: "FieldValueInvalid", message: "Invalid value: \(value): \(detail)", field: field)
    }

    static func unsupported(_ value: String, _ allowed: [String], _ field: String) -> Cause {
        Cause(reason: "FieldValueNotSupported", message: "Unsupported value: \"\(value)\": supported values: \(allowed.map { "\"\($0)\"" }.joined(separator: ", "))", field: field)
    }

    static func nonNegative(_ value: JSONValue, _ field: String) -> [Cause] {
        guard case .integer(let number) = value, number < 0 else { return [] }
        return [invalid(value, "must be greater than or equal to 0", field)]
    }

    static func portNumber(_ value: JSONValue?, _ field: String, required isRequired: Bool) -> [Cause] {
        guard let value, value != .null else { return isRequired ? [required(field)] : [] }
        guard case .integer(let number) = value, (1...65535).contains(number) else {
            return [invalid(value, "must be between 1 and 65535, inclusive", field)]
        }
        return []
    }
}
