import Resources

/// What a new object's status is, whatever the client sent (Kubernetes' PrepareForCreate of each
/// kind with a status subresource): a Pod is Pending with its QoS class; a Namespace Active; a
/// Service's load balancer empty; workloads' status empty until their controllers report. A
/// Node keeps what its kubelet sends.
public enum StatusOnCreate {
    public static func reset(_ object: JSONValue, _ resource: ResourceType) -> JSONValue {
        guard resource.subresources.contains("status"), case .object(var fields) = object else { return object }
        switch (resource.group, resource.kind) {
        case ("", "Node"): return object
        case ("", "Pod"): fields["status"] = .object(["phase": "Pending", "qosClass": .string(qosClass(object["spec"]))])
        case ("", "Namespace"): fields["status"] = .object(["phase": "Active"])
        case ("", "Service"): fields["status"] = .object(["loadBalancer": .object([:])])
        default: fields["status"] = .object([:])
        }
        return .object(fields)
    }

    /// Kubernetes' QoS class of a pod spec: BestEffort when no container asks for or limits CPU
    /// or memory; Guaranteed when every container limits both and asks for what it limits
    /// (requests default to limits); Burstable otherwise.
    public static func qosClass(_ spec: JSONValue?) -> String {
        let containers = (spec?["containers"]?.arrayValue ?? []) + (spec?["initContainers"]?.arrayValue ?? [])
        var anySet = false
        var guaranteed = !containers.isEmpty
        for container in containers {
            let requests = container["resources"]?["requests"]?.objectValue ?? [:]
            let limits = container["resources"]?["limits"]?.objectValue ?? [:]
            for name in ["cpu", "memory"] {
                let limit = limits[name]?.stringValue.flatMap { isZero($0) ? nil : $0 }
                let request = requests[name]?.stringValue.flatMap { isZero($0) ? nil : $0 } ?? limit
                if limit != nil || request != nil { anySet = true }
                if limit == nil || request != limit { guaranteed = false }
            }
        }
        if !anySet { return "BestEffort" }
        return guaranteed ? "Guaranteed" : "Burstable"
    }

    static func isZero(_ quantity: String) -> Bool {
        quantity.allSatisfy { $0 == "0" || $0 == "." || $0.isLetter } && quantity.contains("0")
    }
}
