import APIServer
import Foundation
import Resources
import Testing

@Suite("Service cluster IPs and node ports")
struct ServiceAllocationTests {
    static func service(_ spec: String) -> JSONValue {
        try! JSONDecoder().decode(JSONValue.self, from: Data((#"{"metadata":{"name":"s"},"spec":"# + spec + "}").utf8))
    }

    @Test("A chosen address is inside 10.96.0.0/12 and never .0, .1 or the broadcast; a kept one stays; claims follow old and new")
    func addresses() throws {
        let services = ServedResources.find(group: "", version: "v1", name: "services")!
        for draw: UInt32 in [0, 1, 2, UInt32.max, 1_048_572, 1_048_573] {
            let assigned = try ServiceAllocation.assign(Self.service(#"{"ports":[{"port":80}]}"#), existing: nil, takenPorts: [], random: { draw })
            let ip = try #require(assigned["spec"]?["clusterIP"]?.stringValue)
            let octets = ip.split(separator: ".").compactMap { UInt32($0) }
            let value = octets.reduce(0) { $0 << 8 | $1 }
            #expect(value >= 0x0A60_0002 && value <= 0x0A6F_FFFE, "\(draw) -> \(ip)")
            #expect(assigned["spec"]?["clusterIPs"] == .array([.string(ip)]) && assigned["spec"]?["ipFamilyPolicy"] == "SingleStack")
        }
        let existing = Self.service(#"{"clusterIP":"10.96.5.5","ports":[{"port":80}]}"#)
        let kept = try ServiceAllocation.assign(Self.service(#"{"ports":[{"port":80}]}"#), existing: existing, takenPorts: [])
        #expect(kept["spec"]?["clusterIP"] == "10.96.5.5")
        #expect(throws: APIError.self) { try ServiceAllocation.assign(Self.service(#"{"clusterIP":"10.112.0.1"}"#), existing: nil, takenPorts: []) }
        #expect(throws: APIError.self) { try ServiceAllocation.assign(Self.service(#"{"clusterIP":"10.96.0.300"}"#), existing: nil, takenPorts: []) }
        let headless = try ServiceAllocation.assign(Self.service(#"{"clusterIP":"None"}"#), existing: nil, takenPorts: [])
        #expect(headless["spec"]?["clusterIPs"] == .array(["None"]) && ServiceAllocation.keys(headless, services).isEmpty)
        let claims = ServiceAllocation.claims(services, old: existing, new: Self.service(#"{"clusterIP":"10.96.5.5","type":"NodePort","ports":[{"port":80,"nodePort":30001}]}"#))
        #expect(claims.claim == [Array("/registry/raftkube/servicenodeports/30001".utf8)] && claims.release.isEmpty)
        #expect(ServiceAllocation.claims(services, old: existing, new: nil).release == [Array("/registry/raftkube/serviceips/10.96.5.5".utf8)])
    }

    @Test("Node ports: the next free after a random start, a client's checked, kept across updates, none for ClusterIP, a full range refused")
    func nodePorts() throws {
        let spec = #"{"type":"NodePort","ports":[{"port":80},{"port":443,"protocol":"TCP"}]}"#
        let assigned = try ServiceAllocation.assign(Self.service(spec), existing: nil, takenPorts: [30000, 30001], random: { 0 })
        #expect(assigned["spec"]?["ports"]?.arrayValue?.compactMap { $0["nodePort"]?.integerValue } == [30002, 30003])
        let kept = try ServiceAllocation.assign(Self.service(spec), existing: assigned, takenPorts: [30000, 30001, 30002, 30003], random: { 7 })
        #expect(kept["spec"]?["ports"]?.arrayValue?.first?["nodePort"] == .integer(30002))
        #expect(throws: APIError.self) { try ServiceAllocation.assign(Self.service(#"{"type":"NodePort","ports":[{"port":80,"nodePort":30000}]}"#), existing: nil, takenPorts: [30000]) }
        #expect(throws: APIError.self) { try ServiceAllocation.assign(Self.service(#"{"type":"NodePort","ports":[{"port":80,"nodePort":80}]}"#), existing: nil, takenPorts: []) }
        let all = Set((30000...32767).map(Int64.init))
        #expect(throws: APIError.self) { try ServiceAllocation.assign(Self.service(spec), existing: nil, takenPorts: all) }
        let clusterIP = ServiceAllocation.dropTypeDependentFields(Self.service(#"{"type":"ClusterIP","externalTrafficPolicy":"Cluster","ports":[{"port":80,"nodePort":30002}]}"#),
                                                                    existing: Self.service(#"{"type":"NodePort","externalTrafficPolicy":"Cluster","ports":[{"port":80,"nodePort":30002}]}"#))
        #expect(clusterIP["spec"]?["ports"]?.arrayValue?.first?["nodePort"] == nil && clusterIP["spec"]?["externalTrafficPolicy"] == nil)
    }
}
