import Resources

/// Cluster IPs from the service CIDR (10.96.0.0/12) and node ports (30000-32767) for Services,
/// free of conflicts across API servers: each allocated address and port is a key in the store
/// (`/registry/raftkube/serviceips/IP`, `/registry/raftkube/servicenodeports/PORT`) written in the
/// same txn as the Service, on "the key does not exist", and deleted with it. Two servers
/// choosing the same address make one txn fail; that one chooses again.
public enum ServiceAllocation {
    public static let ipPrefix = "/registry/raftkube/serviceips/"
    public static let portPrefix = "/registry/raftkube/servicenodeports/"
    /// 10.96.0.0/12, as kube-apiserver's default `--service-cluster-ip-range`.
    public static let network: UInt32 = 0x0A60_0000
    public static let prefixLength: UInt32 = 12
    public static let nodePorts = 30000...32767
    /// The `kubernetes` Service's address, the range's first.
    public static let kubernetesServiceIP = "10.96.0.1"
    static let rangeText = "10.96.0.0/12"

    static var size: UInt32 { 1 << (32 - prefixLength) }

    /// core/v1 services, whose writes go through the allocation keys.
    static let servicesType = ServedResources.find(group: "", version: "v1", name: "services")!

    /// The store keys `object` (a Service) holds: its cluster IPs and node ports.
    public static func keys(_ object: JSONValue?, _ resource: ResourceType) -> Set<[UInt8]> {
        guard resource.group.isEmpty, resource.kind == "Service", let spec = object?["spec"] else { return [] }
        var keys = Set<[UInt8]>()
        for ip in (spec["clusterIPs"]?.arrayValue ?? []) + [spec["clusterIP"] ?? .null] {
            if let text = ip.stringValue, parse(text) != nil { keys.insert(Array((ipPrefix + text).utf8)) }
        }
        for port in spec["ports"]?.arrayValue ?? [] {
            if case .integer(let number) = port["nodePort"] ?? .null, number > 0 { keys.insert(Array((portPrefix + String(number)).utf8)) }
        }
        if case .integer(let number) = spec["healthCheckNodePort"] ?? .null, number > 0 { keys.insert(Array((portPrefix + String(number)).utf8)) }
        return keys
    }

    /// The keys a write from `old` to `new` claims and releases.
    public static func claims(_ resource: ResourceType, old: JSONValue?, new: JSONValue?) -> (claim: [[UInt8]], release: [[UInt8]]) {
        let before = keys(old, resource), after = keys(new, resource)
        return (after.subtracting(before).sorted { $0.lexicographicallyPrecedes($1) }, before.subtracting(after).sorted { $0.lexicographicallyPrecedes($1) })
    }

    static func parse(_ text: String) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard let octet = UInt8(part), String(octet) == part else { return nil }
            value = value << 8 | UInt32(octet)
        }
        return value
    }

    static func format(_ value: UInt32) -> String {
        "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)"
    }

    static func inRange(_ value: UInt32) -> Bool { value & ~(size - 1) == network }

    /// Whether the Service asked for its address or node ports itself (then a taken one is an
    /// error to report, not a reason to choose again).
    public static func chosenByClient(_ object: JSONValue, existing: JSONValue?) -> Bool {
        let spec = object["spec"]
        if let ip = spec?["clusterIP"]?.stringValue, !ip.isEmpty, ip != "None", ip != existing?["spec"]?["clusterIP"]?.stringValue { return true }
        let oldPorts = Set((existing?["spec"]?["ports"]?.arrayValue ?? []).compactMap { $0["nodePort"]?.integerValue })
        return (spec?["ports"]?.arrayValue ?? []).contains { port in
            guard let number = port["nodePort"]?.integerValue, number > 0 else { return false }
            return !oldPorts.contains(number)
        }
    }

    /// The Service with its cluster IP (kept from `existing`, the client's checked, or a random
    /// free one) and node ports (kept, checked, or the lowest free after a random start) filled
    /// in; `takenPorts` are the node ports other Services hold.
    public static func assign(_ object: JSONValue, existing: JSONValue?, takenPorts: Set<Int64>,
                              random: () -> UInt32 = { UInt32.random(in: 0..<UInt32.max) }) throws(APIError) -> JSONValue {
        guard case .object(var fields) = object, case .object(var spec) = object["spec"] ?? .object([:]) else { return object }
        let name = object.metadata("name")?.stringValue ?? ""
        func invalid(_ field: String, _ value: JSONValue, _ detail: String) -> APIError {
            .invalid(kind: "Service", group: "", name: name, causes: [.init(reason: "FieldValueInvalid", message: "Invalid value: \(value): \(detail)", field: field)])
        }
        let type = spec["type"]?.stringValue ?? "ClusterIP"
        if type == "ExternalName" {
            for key in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] { spec[key] = nil }
        } else {
            var ip = spec["clusterIP"]?.stringValue ?? spec["clusterIPs"]?.arrayValue?.first?.stringValue ?? ""
            if ip.isEmpty, let kept = existing?["spec"]?["clusterIP"]?.stringValue, !kept.isEmpty { ip = kept }
            if ip.isEmpty {
                // Never the network address, the broadcast address or the kubernetes Service's.
                ip = format(network | (2 + random() % (size - 3)))
            } else if ip != "None" {
                guard let value = parse(ip) else { throw invalid("spec.clusterIPs[0]", .string(ip), "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)") }
                guard inRange(value) else {
                    throw invalid("spec.clusterIPs", .array([.string(ip)]), "failed to allocate IP \(ip): the provided IP (\(ip)) is not in the valid range. The range of valid IPs is \(rangeText)")
                }
            }
            spec["clusterIP"] = .string(ip)
            spec["clusterIPs"] = .array([.string(ip)])
            if spec["ipFamilies"] == nil || spec["ipFamilies"] == .null { spec["ipFamilies"] = .array(["IPv4"]) }
            if spec["ipFamilyPolicy"] == nil || spec["ipFamilyPolicy"] == .null { spec["ipFamilyPolicy"] = "SingleStack" }
        }
        let wantsNodePorts = type == "NodePort" || type == "LoadBalancer"
        var used = takenPorts
        let oldPorts = existing?["spec"]?["ports"]?.arrayValue ?? []
        for port in oldPorts { if let number = port["nodePort"]?.integerValue { used.remove(number) } }
        if case .array(var ports) = spec["ports"] ?? .null {
            for index in ports.indices {
                guard case .object(var port) = ports[index] else { continue }
                if !wantsNodePorts {
                    port["nodePort"] = nil
                } else {
                    var number = port["nodePort"]?.integerValue ?? 0
                    if number == 0, let kept = oldPorts.first(where: { $0["port"] == port["port"] && $0["protocol"] == port["protocol"] })?["nodePort"]?.integerValue {
                        number = kept
                    }
                    if number == 0 {
                        let count = Int64(nodePorts.count)
                        let start = Int64(random() % UInt32(count))
                        guard let free = (0..<count).lazy.map({ Int64(nodePorts.lowerBound) + (start + $0) % count }).first(where: { !used.contains($0) }) else {
                            throw invalid("spec.ports[\(index)].nodePort", .integer(0), "failed to allocate a node port: the range \(nodePorts.lowerBound)-\(nodePorts.upperBound) is full")
                        }
                        number = free
                    } else if !nodePorts.contains(Int(number)) {
                        throw invalid("spec.ports[\(index)].nodePort", .integer(number),
                                      "provided port is not in the valid range. The range of valid ports is \(nodePorts.lowerBound)-\(nodePorts.upperBound)")
                    } else if used.contains(number) {
                        throw invalid("spec.ports[\(index)].nodePort", .integer(number), "provided port is already allocated")
                    }
                    used.insert(number)
                    port["nodePort"] = .integer(number)
                }
                ports[index] = .object(port)
            }
            spec["ports"] = .array(ports)
        }
        fields["spec"] = .object(spec)
        return .object(fields)
    }

    /// Kubernetes' dropTypeDependentFields: a Service whose type changes loses the node ports,
    /// traffic policy and address its old type had (unless the client set new ones), so that
    /// `{"spec":{"type":"ClusterIP"}}` alone turns a NodePort Service into a ClusterIP one.
    public static func dropTypeDependentFields(_ object: JSONValue, existing: JSONValue) -> JSONValue {
        guard case .object(var fields) = object, case .object(var spec) = object["spec"] ?? .null else { return object }
        let oldSpec = existing["spec"]
        let type = spec["type"]?.stringValue ?? "ClusterIP", oldType = oldSpec?["type"]?.stringValue ?? "ClusterIP"
        guard type != oldType else { return object }
        let needsNodePorts = type == "NodePort" || type == "LoadBalancer"
        if !needsNodePorts {
            let oldPorts = Set((oldSpec?["ports"]?.arrayValue ?? []).compactMap { $0["nodePort"]?.integerValue })
            if case .array(var ports) = spec["ports"] ?? .null {
                for index in ports.indices {
                    if case .object(var port) = ports[index], let number = port["nodePort"]?.integerValue, oldPorts.contains(number) || number == 0 {
                        port["nodePort"] = nil
                        ports[index] = .object(port)
                    }
                }
                spec["ports"] = .array(ports)
            }
            if spec["externalTrafficPolicy"] == oldSpec?["externalTrafficPolicy"] { spec["externalTrafficPolicy"] = nil }
            if spec["healthCheckNodePort"] == oldSpec?["healthCheckNodePort"] { spec["healthCheckNodePort"] = nil }
        }
        if type != "LoadBalancer" && spec["allocateLoadBalancerNodePorts"] == oldSpec?["allocateLoadBalancerNodePorts"] { spec["allocateLoadBalancerNodePorts"] = nil }
        if type == "ExternalName" {
            for key in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy"] where spec[key] == oldSpec?[key] { spec[key] = nil }
        }
        fields["spec"] = .object(spec)
        return .object(fields)
    }

    /// The answer when an address or port chosen was taken by another Service meanwhile.
    static func taken(_ object: JSONValue) -> APIError {
        let ip = object["spec"]?["clusterIP"] ?? .null
        return .invalid(kind: "Service", group: "", name: object.metadata("name")?.stringValue ?? "", causes: [
            .init(reason: "FieldValueInvalid", message: "Invalid value: \(ip): failed to allocate: the provided IP or node port is already allocated", field: "spec.clusterIPs"),
        ])
    }
}

extension APIError {
    /// A txn that lost an allocated key to another writer: choose again.
    static let allocationTaken = APIError(code: 409, reason: "Conflict", message: "an address or port chosen for the object was taken meanwhile; try again")
}
