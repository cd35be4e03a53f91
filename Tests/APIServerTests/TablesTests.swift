import APIServer
import Foundation
import Resources
import Testing

@Suite("Tables as kube-apiserver prints them")
struct TablesTests {
    static let now = ISO8601DateFormatter().date(from: "2026-12-03T12:00:00Z")!

    static func decode(_ text: String) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    static func cells(_ table: JSONValue) -> [[JSONValue]] {
        (table["rows"]?.arrayValue ?? []).map { $0["cells"]?.arrayValue ?? [] }
    }

    static func columnNames(_ table: JSONValue) -> [String] {
        (table["columnDefinitions"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }
    }

    @Test("Kubernetes' HumanDuration")
    func durations() {
        let cases: [(TimeInterval, String)] = [(0, "0s"), (45, "45s"), (119, "119s"), (200, "3m20s"), (240, "4m"), (15 * 60, "15m"),
                                               (5.5 * 3600, "5h30m"), (20 * 3600, "20h"), (76 * 3600, "3d4h"), (40 * 86_400, "40d"),
                                               (800 * 86_400, "2y70d"), (10 * 365 * 86_400, "10y"), (-5, "<invalid>")]
        for (interval, text) in cases { #expect(Tables.humanDuration(interval) == text, "\(interval)") }
    }

    @Test("Accept headers: v1 over v1beta1, none without as=Table;g=meta.k8s.io")
    func accept() {
        #expect(Tables.requestedVersion(accept: "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json") == "v1")
        #expect(Tables.requestedVersion(accept: "application/json;as=Table;v=v1beta1;g=meta.k8s.io") == "v1beta1")
        #expect(Tables.requestedVersion(accept: "application/json") == nil)
        #expect(Tables.requestedVersion(accept: "application/json;as=Table;v=v1;g=other.io") == nil)
        #expect(Tables.requestedVersion(accept: nil) == nil)
    }

    @Test("pods: ready counts, a waiting reason over the phase, restarts with when, Terminating; wide columns; the row's object is metadata only")
    func pods() throws {
        let pod = try Self.decode("""
            {"metadata":{"name":"web","creationTimestamp":"2026-12-03T11:55:00Z","labels":{"a":"b"}},
             "spec":{"containers":[{"name":"a"},{"name":"b"}],"nodeName":"n1"},
             "status":{"phase":"Running","podIP":"10.244.1.5","containerStatuses":[
               {"name":"a","ready":true,"restartCount":2,"lastState":{"terminated":{"finishedAt":"2026-12-03T11:59:00Z"}},"state":{"running":{}}},
               {"name":"b","ready":false,"restartCount":1,"state":{"waiting":{"reason":"CrashLoopBackOff"}}}]}}
            """)
        let pods = try #require(ServedResources.find(group: "", version: "v1", name: "pods"))
        let table = Tables.table([pod], resource: pods, now: Self.now)
        #expect(table["kind"] == .string("Table") && table["apiVersion"] == .string("meta.k8s.io/v1"))
        #expect(Self.columnNames(table) == ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"])
        #expect(Self.cells(table) == [[.string("web"), .string("1/2"), .string("CrashLoopBackOff"), .string("3 (60s ago)"), .string("5m"),
                                       .string("10.244.1.5"), .string("n1"), .string("<none>"), .string("<none>")]])
        let row = try #require(table["rows"]?.arrayValue?.first)
        #expect(row["object"]?["kind"] == .string("PartialObjectMetadata") && row["object"]?["metadata"]?["labels"]?["a"] == .string("b"))
        #expect(Tables.table([pod], resource: pods, include: .none)["rows"]?.arrayValue?.first?["object"] == nil)
        #expect(Tables.table([pod], resource: pods, include: .object)["rows"]?.arrayValue?.first?["object"]?["kind"] == .string("Pod"))
        var deleted = pod
        deleted.setMetadata("deletionTimestamp", .string("2026-12-03T11:59:30Z"))
        #expect(Self.cells(Tables.table([deleted], resource: pods, now: Self.now)).first?[2] == .string("Terminating"))
        #expect(Tables.table([pod], resource: pods, withColumns: false)["columnDefinitions"] == nil)
    }

    @Test("deployments, services, nodes and a kind without a printer")
    func otherKinds() throws {
        let deployment = try Self.decode("""
            {"metadata":{"name":"web","creationTimestamp":"2026-12-01T12:00:00Z"},"spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}},
             "template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.27"}]}}},"status":{"readyReplicas":2,"updatedReplicas":3,"availableReplicas":2}}
            """)
        let deployments = try #require(ServedResources.find(group: "apps", version: "v1", name: "deployments"))
        let table = Tables.table([deployment], resource: deployments, now: Self.now)
        #expect(Self.columnNames(table) == ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"])
        #expect(Self.cells(table) == [[.string("web"), .string("2/3"), .integer(3), .integer(2), .string("2d"), .string("nginx"), .string("nginx:1.27"), .string("app=web")]])

        let service = try Self.decode("""
            {"metadata":{"name":"web","creationTimestamp":"2026-12-03T11:00:00Z"},"spec":{"type":"NodePort","clusterIP":"10.96.0.10",
             "ports":[{"port":80,"nodePort":30080,"protocol":"TCP"},{"port":53,"protocol":"UDP"}],"selector":{"app":"web"}}}
            """)
        let services = try #require(ServedResources.find(group: "", version: "v1", name: "services"))
        #expect(Self.cells(Tables.table([service], resource: services, now: Self.now)).first
            == [.string("web"), .string("NodePort"), .string("10.96.0.10"), .string("<none>"), .string("80:30080/TCP,53/UDP"), .string("60m"), .string("app=web")])

        let node = try Self.decode("""
            {"metadata":{"name":"vm1","creationTimestamp":"2026-12-03T11:58:00Z","labels":{"node-role.kubernetes.io/control-plane":""}},
             "spec":{"unschedulable":true},"status":{"conditions":[{"type":"Ready","status":"True"}],"nodeInfo":{"kubeletVersion":"v1.33.0-raftkube"},
             "addresses":[{"type":"InternalIP","address":"10.77.0.11"}]}}
            """)
        let nodes = try #require(ServedResources.find(group: "", version: "v1", name: "nodes"))
        #expect(Self.cells(Tables.table([node], resource: nodes, now: Self.now)).first?.prefix(6)
            == [.string("vm1"), .string("Ready,SchedulingDisabled"), .string("control-plane"), .string("2m"), .string("v1.33.0-raftkube"), .string("10.77.0.11")])

        let role = try Self.decode(#"{"metadata":{"name":"reader","creationTimestamp":"2026-12-03T11:00:00Z"}}"#)
        let roles = try #require(ServedResources.find(group: "rbac.authorization.k8s.io", version: "v1", name: "roles"))
        let roleTable = Tables.table([role], resource: roles, now: Self.now)
        #expect(Self.columnNames(roleTable) == ["Name", "Created At"])
        #expect(Self.cells(roleTable) == [[.string("reader"), .string("2026-12-03T11:00:00Z")]])
    }
}
