import Foundation
import Resources

/// Server-side printing (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`): objects as a
/// `meta.k8s.io/v1` Table with the columns kube-apiserver's printers give each kind, so that
/// `kubectl get` (and `raftkube get`) print what they print against Kubernetes. Columns of
/// priority 1 are what `-o wide` adds.
public enum Tables {
    public struct Column: Sendable {
        public var name: String
        public var type: String
        public var format: String = ""
        public var priority: Int = 0
        public var description: String = ""
        let cell: @Sendable (JSONValue, Date) -> JSONValue

        init(_ name: String, _ type: String = "string", format: String = "", priority: Int = 0, description: String = "",
             _ cell: @escaping @Sendable (JSONValue, Date) -> JSONValue) {
            self.name = name
            self.type = type
            self.format = format
            self.priority = priority
            self.description = description
            self.cell = cell
        }
    }

    /// What the client asked to get with each row (`includeObject`): the object's metadata
    /// (the default), the whole object, or nothing.
    public enum Include: String, Sendable {
        case metadata = "Metadata", object = "Object", none = "None"
    }

    /// The Table version an `Accept` header asks for (`v1` or `v1beta1`), nil when it asks for none.
    public static func requestedVersion(accept: String?) -> String? {
        guard let accept else { return nil }
        for clause in accept.split(separator: ",") {
            let parameters = clause.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard parameters.contains("as=Table"), parameters.contains("g=meta.k8s.io") else { continue }
            if parameters.contains("v=v1") { return "v1" }
            if parameters.contains("v=v1beta1") { return "v1beta1" }
        }
        return nil
    }

    /// A Table of `objects` of `resource`; `withColumns` false leaves out the column
    /// definitions (every watch event after the first).
    public static func table(_ objects: [JSONValue], resource: ResourceType, version: String = "v1", include: Include = .metadata,
                             listMetadata: JSONValue = .object([:]), withColumns: Bool = true, now: Date = Date()) -> JSONValue {
        let columns = self.columns(resource.kind)
        var fields: [String: JSONValue] = [
            "kind": .string("Table"), "apiVersion": .string("meta.k8s.io/\(version)"), "metadata": listMetadata,
            "rows": .array(objects.map { object in
                var row: [String: JSONValue] = ["cells": .array(columns.map { $0.cell(object, now) })]
                switch include {
                case .object: row["object"] = APIHandler.withKind(object, resource)
                case .metadata:
                    row["object"] = .object(["kind": .string("PartialObjectMetadata"), "apiVersion": .string("meta.k8s.io/v1"),
                                             "metadata": object["metadata"] ?? .object([:])])
                case .none: break
                }
                return .object(row)
            }),
        ]
        if withColumns {
            fields["columnDefinitions"] = .array(columns.map {
                .object(["name": .string($0.name), "type": .string($0.type), "format": .string($0.format),
                         "description": .string($0.description), "priority": .integer(Int64($0.priority))])
            })
        }
        return .object(fields)
    }

    // MARK: The columns of each kind (kube-apiserver's printers)

    static let name = Column("Name", format: "name", description: "Name must be unique within a namespace.") { object, _ in
        object.metadata("name") ?? .string("")
    }
    static let age = Column("Age", description: "CreationTimestamp is a timestamp representing the server time when this object was created.") { object, now in
        .string(age(object, now: now))
    }

    static func columns(_ kind: String) -> [Column] {
        switch kind {
        case "Pod": return podColumns
        case "Deployment":
            return [name,
                    Column("Ready") { object, _ in .string("\(int(object, "status", "readyReplicas"))/\(int(object, "spec", "replicas", default: 1))") },
                    Column("Up-to-date", "integer") { object, _ in .integer(int(object, "status", "updatedReplicas")) },
                    Column("Available", "integer") { object, _ in .integer(int(object, "status", "availableReplicas")) },
                    age] + workloadWide
        case "ReplicaSet":
            return [name,
                    Column("Desired", "integer") { object, _ in .integer(int(object, "spec", "replicas", default: 1)) },
                    Column("Current", "integer") { object, _ in .integer(int(object, "status", "replicas")) },
                    Column("Ready", "integer") { object, _ in .integer(int(object, "status", "readyReplicas")) },
                    age] + workloadWide
        case "StatefulSet":
            return [name, Column("Ready") { object, _ in .string("\(int(object, "status", "readyReplicas"))/\(int(object, "spec", "replicas", default: 1))") },
                    age] + workloadWide
        case "DaemonSet":
            return [name,
                    Column("Desired", "integer") { object, _ in .integer(int(object, "status", "desiredNumberScheduled")) },
                    Column("Current", "integer") { object, _ in .integer(int(object, "status", "currentNumberScheduled")) },
                    Column("Ready", "integer") { object, _ in .integer(int(object, "status", "numberReady")) },
                    Column("Up-to-date", "integer") { object, _ in .integer(int(object, "status", "updatedNumberScheduled")) },
                    Column("Available", "integer") { object, _ in .integer(int(object, "status", "numberAvailable")) },
                    Column("Node Selector") { object, _ in .string(pairs(object["spec"]?["template"]?["spec"]?["nodeSelector"])) },
                    age] + workloadWide
        case "Job":
            return [name,
                    Column("Status") { object, _ in .string(jobStatus(object)) },
                    Column("Completions") { object, _ in .string("\(int(object, "status", "succeeded"))/\(int(object, "spec", "completions", default: 1))") },
                    Column("Duration") { object, now in .string(jobDuration(object, now: now)) },
                    age] + workloadWide
        case "Service":
            return [name,
                    Column("Type") { object, _ in object["spec"]?["type"] ?? .string("ClusterIP") },
                    Column("Cluster-IP") { object, _ in object["spec"]?["clusterIP"] ?? .string("<none>") },
                    Column("External-IP") { object, _ in .string(externalIPs(object)) },
                    Column("Port(s)") { object, _ in .string(servicePorts(object)) },
                    age,
                    Column("Selector", priority: 1) { object, _ in .string(pairs(object["spec"]?["selector"], empty: "<none>")) }]
        case "Node":
            return [name,
                    Column("Status") { object, _ in .string(nodeStatus(object)) },
                    Column("Roles") { object, _ in .string(nodeRoles(object)) },
                    age,
                    Column("Version") { object, _ in object["status"]?["nodeInfo"]?["kubeletVersion"] ?? .string("") },
                    Column("Internal-IP", priority: 1) { object, _ in .string(nodeAddress(object, "InternalIP")) },
                    Column("External-IP", priority: 1) { object, _ in .string(nodeAddress(object, "ExternalIP")) },
                    Column("OS-Image", priority: 1) { object, _ in object["status"]?["nodeInfo"]?["osImage"] ?? .string("<unknown>") },
                    Column("Kernel-Version", priority: 1) { object, _ in object["status"]?["nodeInfo"]?["kernelVersion"] ?? .string("<unknown>") },
                    Column("Container-Runtime", priority: 1) { object, _ in object["status"]?["nodeInfo"]?["containerRuntimeVersion"] ?? .string("<unknown>") }]
        case "Namespace":
            return [name, Column("Status") { object, _ in object["status"]?["phase"] ?? .string("Active") }, age]
        case "ConfigMap":
            return [name, Column("Data", "integer") { object, _ in .integer(Int64((object["data"]?.objectValue?.count ?? 0) + (object["binaryData"]?.objectValue?.count ?? 0))) }, age]
        case "Secret":
            return [name, Column("Type") { object, _ in object["type"] ?? .string("Opaque") },
                    Column("Data", "integer") { object, _ in .integer(Int64(object["data"]?.objectValue?.count ?? 0)) }, age]
        case "ServiceAccount":
            return [name, Column("Secrets", "integer") { object, _ in .integer(Int64(object["secrets"]?.arrayValue?.count ?? 0)) }, age]
        case "Endpoints":
            return [name, Column("Endpoints") { object, _ in .string(endpoints(object)) }, age]
        case "Lease":
            return [name, Column("Holder") { object, _ in object["spec"]?["holderIdentity"] ?? .string("") }, age]
        case "Event":
            return [Column("Last Seen") { object, now in .string(since(object["lastTimestamp"]?.stringValue ?? object["eventTime"]?.stringValue, now: now)) },
                    Column("Type") { object, _ in object["type"] ?? .string("") },
                    Column("Reason") { object, _ in object["reason"] ?? .string("") },
                    Column("Object") { object, _ in
                        .string("\((object["involvedObject"]?["kind"]?.stringValue ?? "").lowercased())/\(object["involvedObject"]?["name"]?.stringValue ?? "")")
                    },
                    Column("Message") { object, _ in .string((object["message"]?.stringValue ?? "").trimmingCharacters(in: .whitespacesAndNewlines)) }]
        case "RoleBinding", "ClusterRoleBinding":
            return [name, Column("Role") { object, _ in .string("\(object["roleRef"]?["kind"]?.stringValue ?? "")/\(object["roleRef"]?["name"]?.stringValue ?? "")") }, age]
        default:
            return [name, Column("Created At", "date") { object, _ in object.metadata("creationTimestamp") ?? .string("") }]
        }
    }

    static let workloadWide: [Column] = [
        Column("Containers", priority: 1) { object, _ in .string(containers(object).compactMap { $0["name"]?.stringValue }.joined(separator: ",")) },
        Column("Images", priority: 1) { object, _ in .string(containers(object).compactMap { $0["image"]?.stringValue }.joined(separator: ",")) },
        Column("Selector", priority: 1) { object, _ in .string(selector(object["spec"]?["selector"])) },
    ]

    static let podColumns: [Column] = [
        name,
        Column("Ready", description: "The aggregate readiness state of this pod for accepting traffic.") { object, _ in
            let statuses = object["status"]?["containerStatuses"]?.arrayValue ?? []
            let total = object["spec"]?["containers"]?.arrayValue?.count ?? 0
            return .string("\(statuses.filter { $0["ready"] == .bool(true) }.count)/\(total)")
        },
        Column("Status", description: "The aggregate status of the containers in this pod.") { object, _ in .string(podStatus(object)) },
        Column("Restarts", description: "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.") { object, now in
            let statuses = object["status"]?["containerStatuses"]?.arrayValue ?? []
            let restarts = statuses.reduce(Int64(0)) { $0 + ($1["restartCount"]?.integerValue ?? 0) }
            let last = statuses.compactMap { $0["lastState"]?["terminated"]?["finishedAt"]?.stringValue }.max()
            return .string(restarts > 0 && last != nil ? "\(restarts) (\(since(last, now: now)) ago)" : "\(restarts)")
        },
        age,
        Column("IP", priority: 1, description: "IP address allocated to the pod.") { object, _ in object["status"]?["podIP"] ?? .string("<none>") },
        Column("Node", priority: 1, description: "Name of the Node the pod is assigned to.") { object, _ in object["spec"]?["nodeName"] ?? .string("<none>") },
        Column("Nominated Node", priority: 1) { object, _ in object["status"]?["nominatedNodeName"] ?? .string("<none>") },
        Column("Readiness Gates", priority: 1) { object, _ in
            let gates = object["spec"]?["readinessGates"]?.arrayValue ?? []
            guard !gates.isEmpty else { return .string("<none>") }
            let conditions = object["status"]?["conditions"]?.arrayValue ?? []
            let ready = gates.filter { gate in conditions.contains { $0["type"] == gate["conditionType"] && $0["status"] == .string("True") } }.count
            return .string("\(ready)/\(gates.count)")
        },
    ]

    // MARK: Cells

    /// The pod's status as kubectl shows it: the phase, or a reason (a container's waiting or
    /// terminated reason), `Terminating` once deleted.
    static func podStatus(_ pod: JSONValue) -> String {
        var reason = pod["status"]?["reason"]?.stringValue ?? pod["status"]?["phase"]?.stringValue ?? "Pending"
        for status in pod["status"]?["containerStatuses"]?.arrayValue ?? [] {
            if let waiting = status["state"]?["waiting"]?["reason"]?.stringValue, !waiting.isEmpty {
                reason = waiting
            } else if let terminated = status["state"]?["terminated"]?["reason"]?.stringValue, !terminated.isEmpty {
                reason = terminated
            }
        }
        if pod.metadata("deletionTimestamp") != nil { reason = pod["status"]?["reason"]?.stringValue == "NodeLost" ? "Unknown" : "Terminating" }
        return reason
    }

    static func jobStatus(_ job: JSONValue) -> String {
        let conditions = job["status"]?["conditions"]?.arrayValue ?? []
        func has(_ type: String) -> Bool { conditions.contains { $0["type"] == .string(type) && $0["status"] == .string("True") } }
        if has("Complete") { return "Complete" }
        if has("Failed") { return "Failed" }
        if job.metadata("deletionTimestamp") != nil { return "Terminating" }
        if has("Suspended") { return "Suspended" }
        return "Running"
    }

    static func jobDuration(_ job: JSONValue, now: Date) -> String {
        guard let start = job["status"]?["startTime"]?.stringValue.flatMap(date) else { return "" }
        let end = job["status"]?["completionTime"]?.stringValue.flatMap(date) ?? now
        return humanDuration(end.timeIntervalSince(start))
    }

    static func containers(_ object: JSONValue) -> [JSONValue] {
        object["spec"]?["template"]?["spec"]?["containers"]?.arrayValue ?? []
    }

    static func selector(_ value: JSONValue?) -> String {
        guard let value else { return "<none>" }
        var parts: [String] = []
        if let labels = value["matchLabels"]?.objectValue {
            parts += labels.keys.sorted().map { "\($0)=\(labels[$0]?.stringValue ?? "")" }
        }
        for expression in value["matchExpressions"]?.arrayValue ?? [] {
            let key = expression["key"]?.stringValue ?? ""
            let values = (expression["values"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ",")
            switch expression["operator"]?.stringValue {
            case "In": parts.append("\(key) in (\(values))")
            case "NotIn": parts.append("\(key) notin (\(values))")
            case "Exists": parts.append(key)
            case "DoesNotExist": parts.append("!\(key)")
            default: break
            }
        }
        return parts.isEmpty ? "<none>" : parts.joined(separator: ",")
    }

    static func pairs(_ value: JSONValue?, empty: String = "<none>") -> String {
        guard let map = value?.objectValue, !map.isEmpty else { return empty }
        return map.keys.sorted().map { "\($0)=\(map[$0]?.stringValue ?? "")" }.joined(separator: ",")
    }

    static func externalIPs(_ service: JSONValue) -> String {
        var addresses = (service["spec"]?["externalIPs"]?.arrayValue ?? []).compactMap(\.stringValue)
        let type = service["spec"]?["type"]?.stringValue ?? "ClusterIP"
        if type == "LoadBalancer" {
            addresses += (service["status"]?["loadBalancer"]?["ingress"]?.arrayValue ?? []).compactMap { $0["ip"]?.stringValue ?? $0["hostname"]?.stringValue }
            if addresses.isEmpty { return "<pending>" }
        }
        if type == "ExternalName" { return service["spec"]?["externalName"]?.stringValue ?? "<none>" }
        return addresses.isEmpty ? "<none>" : addresses.joined(separator: ",")
    }

    static func servicePorts(_ service: JSONValue) -> String {
        let ports = service["spec"]?["ports"]?.arrayValue ?? []
        guard !ports.isEmpty else { return "<none>" }
        return ports.map { port in
            let number = port["port"]?.integerValue ?? 0
            let proto = port["protocol"]?.stringValue ?? "TCP"
            if let node = port["nodePort"]?.integerValue, node > 0 { return "\(number):\(node)/\(proto)" }
            return "\(number)/\(proto)"
        }.joined(separator: ",")
    }

    static func nodeStatus(_ node: JSONValue) -> String {
        let ready = (node["status"]?["conditions"]?.arrayValue ?? []).first { $0["type"] == .string("Ready") }
        var status = ready?["status"] == .string("True") ? "Ready" : (ready == nil ? "Unknown" : "NotReady")
        if ready?["status"] == .string("Unknown") { status = "Unknown" }
        if node["spec"]?["unschedulable"] == .bool(true) { status += ",SchedulingDisabled" }
        return status
    }

    static func nodeRoles(_ node: JSONValue) -> String {
        let labels = node.metadata("labels")?.objectValue ?? [:]
        var roles = labels.keys.compactMap { key -> String? in
            key.hasPrefix("node-role.kubernetes.io/") ? String(key.dropFirst("node-role.kubernetes.io/".count)) : nil
        }
        if let role = labels["kubernetes.io/role"]?.stringValue { roles.append(role) }
        roles = roles.filter { !$0.isEmpty }
        return roles.isEmpty ? "<none>" : Array(Set(roles)).sorted().joined(separator: ",")
    }

    static func nodeAddress(_ node: JSONValue, _ type: String) -> String {
        (node["status"]?["addresses"]?.arrayValue ?? []).first { $0["type"] == .string(type) }?["address"]?.stringValue ?? "<none>"
    }

    static func endpoints(_ object: JSONValue) -> String {
        var list: [String] = []
        for subset in object["subsets"]?.arrayValue ?? [] {
            let ports = (subset["ports"]?.arrayValue ?? []).compactMap(\.["port"]?.integerValue)
            for address in subset["addresses"]?.arrayValue ?? [] {
                let ip = address["ip"]?.stringValue ?? ""
                list += ports.isEmpty ? [ip] : ports.map { "\(ip):\($0)" }
            }
        }
        guard !list.isEmpty else { return "<none>" }
        return list.count > 3 ? list.prefix(3).joined(separator: ",") + " + \(list.count - 3) more..." : list.joined(separator: ",")
    }

    // MARK: Times

    static func int(_ object: JSONValue, _ first: String, _ second: String, default value: Int64 = 0) -> Int64 {
        object[first]?[second]?.integerValue ?? value
    }

    static func date(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)
    }

    static func age(_ object: JSONValue, now: Date) -> String {
        since(object.metadata("creationTimestamp")?.stringValue, now: now)
    }

    /// `<unknown>` without a time, else how long ago it was.
    static func since(_ text: String?, now: Date) -> String {
        guard let text, let date = date(text) else { return "<unknown>" }
        return humanDuration(now.timeIntervalSince(date))
    }

    /// Kubernetes' `duration.HumanDuration`: 45s, 3m20s, 15m, 5h30m, 20h, 3d4h, 40d, 2y30d, 9y.
    public static func humanDuration(_ interval: TimeInterval) -> String {
        let seconds = Int(interval.rounded(.down))
        if seconds < -1 { return "<invalid>" }
        if seconds < 0 { return "0s" }
        if seconds < 60 * 2 { return "\(seconds)s" }
        let minutes = seconds / 60
        if minutes < 10 { return seconds % 60 == 0 ? "\(minutes)m" : "\(minutes)m\(seconds % 60)s" }
        if minutes < 60 * 3 { return "\(minutes)m" }
        let hours = minutes / 60
        if hours < 8 { return minutes % 60 == 0 ? "\(hours)h" : "\(hours)h\(minutes % 60)m" }
        if hours < 48 { return "\(hours)h" }
        if hours < 24 * 8 { return hours % 24 == 0 ? "\(hours / 24)d" : "\(hours / 24)d\(hours % 24)h" }
        if hours < 24 * 365 * 2 { return "\(hours / 24)d" }
        let years = hours / 24 / 365
        if years < 8 { let days = (hours / 24) % 365; return days == 0 ? "\(years)y" : "\(years)y\(days)d" }
        return "\(years)y"
    }
}
