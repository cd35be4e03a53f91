@testable import APIServer
import Foundation
import Resources
import Testing

@Suite("Server-side apply: field sets, merge, conflicts")
struct ServerSideApplyTests {
    static func json(_ text: String) -> JSONValue { try! JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) }
    static let definition = OpenAPI.definitionName(group: "apps", version: "v1", kind: "Deployment")
    static let now = "2026-12-04T00:00:00Z"

    static func deployment(replicas: Int, image: String, labels: String = #"{"app":"web"}"#) -> JSONValue {
        json(#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":"# + labels + #"},"spec":{"replicas":"# + "\(replicas)" +
             #","selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":""# + image + #""}]}}}}"#)
    }

    @Test("The field set names fields, keyed list items by their keys, and atomic lists as one field; FieldsV1 round-trips")
    func fieldSets() throws {
        let schema = OpenAPI.definitions[try #require(Self.definition)]
        let set = ServerSideApply.fieldSet(Self.deployment(replicas: 2, image: "nginx"), schema: schema)
        #expect(set.contains(["f:spec", "f:replicas"]))
        #expect(set.contains(["f:spec", "f:template", "f:spec", "f:containers", #"k:{"name":"web"}"#, "."]))
        #expect(set.contains(["f:spec", "f:template", "f:spec", "f:containers", #"k:{"name":"web"}"#, "f:image"]))
        #expect(set.contains(["f:metadata", "f:labels", "f:app"]))
        #expect(ServerSideApply.paths(ServerSideApply.fieldsV1(set)) == set)
        let args = ServerSideApply.fieldSet(Self.json(#"{"spec":{"template":{"spec":{"containers":[{"name":"c","args":["a","b"]}]}}}}"#), schema: schema)
        #expect(args.contains(["f:spec", "f:template", "f:spec", "f:containers", #"k:{"name":"c"}"#, "f:args"]), "args is an atomic list: one field")
    }

    @Test("Apply sets what it names, drops what it no longer names, conflicts with another manager's fields unless forced")
    func applyAndConflicts() throws {
        let first = try ServerSideApply.apply(Self.deployment(replicas: 2, image: "nginx:1", labels: #"{"app":"web","tier":"f"}"#), to: nil,
                                              manager: "alice", force: false, definition: Self.definition, now: Self.now)
        #expect(first.metadata("managedFields")?.arrayValue?.first?["manager"] == "alice")
        // alice drops the tier label: it goes (no one else owns it).
        let second = try ServerSideApply.apply(Self.deployment(replicas: 3, image: "nginx:1"), to: first, manager: "alice", force: false,
                                               definition: Self.definition, now: Self.now)
        #expect(second.metadata("labels") == .object(["app": "web"]) && second["spec"]?["replicas"] == .integer(3))
        // bob applies a different replicas: a conflict naming alice and the field.
        let bobs = Self.json(#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"replicas":5}}"#)
        do {
            _ = try ServerSideApply.apply(bobs, to: second, manager: "bob", force: false, definition: Self.definition, now: Self.now)
            Issue.record("no conflict")
        } catch {
            #expect(error.code == 409 && error.message == #"Apply failed with 1 conflict: conflict with "alice": .spec.replicas"#, "\(error.message)")
        }
        // The same value is no conflict: both own it.
        let agreeing = try ServerSideApply.apply(Self.json(#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"replicas":3}}"#),
                                                 to: second, manager: "bob", force: false, definition: Self.definition, now: Self.now)
        #expect(agreeing.metadata("managedFields")?.arrayValue?.count == 2)
        // Forced: bob takes the field over; alice no longer owns it.
        let forced = try ServerSideApply.apply(bobs, to: second, manager: "bob", force: true, definition: Self.definition, now: Self.now)
        #expect(forced["spec"]?["replicas"] == .integer(5))
        let alice = try #require(forced.metadata("managedFields")?.arrayValue?.first { $0["manager"] == "alice" })
        #expect(!ServerSideApply.paths(alice["fieldsV1"]).contains(["f:spec", "f:replicas"]))
        // A container merged by name: bob's sidecar joins alice's container.
        let sidecar = Self.json(#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox"}]}}}}"#)
        let merged = try ServerSideApply.apply(sidecar, to: forced, manager: "bob", force: false, definition: Self.definition, now: Self.now)
        #expect(merged["spec"]?["template"]?["spec"]?["containers"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["web", "side"])
        // bob no longer names replicas, which only he owned (he took it from alice): it goes.
        #expect(merged["spec"]?["replicas"] == nil)
    }

    @Test("Ports without protocol are the stored ports with TCP (no duplicate items); applying the same again changes nothing, not even the time")
    func reapplyIsANoOp() throws {
        let withPort = Self.json(#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx","ports":[{"containerPort":80}]}]}}}}"#)
        var stored = try ServerSideApply.apply(withPort, to: nil, manager: "raftkube", force: false, definition: Self.definition, now: Self.now)
        // As the server stores it: the port's protocol defaulted.
        guard case .object(var port)? = stored["spec"]?["template"]?["spec"]?["containers"]?.arrayValue?.first?["ports"]?.arrayValue?.first else {
            Issue.record("no port")
            return
        }
        port["protocol"] = "TCP"
        stored = Self.json(String(decoding: stored.jsonBytes, as: UTF8.self).replacingOccurrences(of: #"{"containerPort":80}"#, with: String(decoding: JSONValue.object(port).jsonBytes, as: UTF8.self)))
        let again = try ServerSideApply.apply(withPort, to: stored, manager: "raftkube", force: false, definition: Self.definition, now: "2026-12-05T00:00:00Z")
        #expect(again["spec"]?["template"]?["spec"]?["containers"]?.arrayValue?.first?["ports"]?.arrayValue?.count == 1)
        #expect(again == stored, "the same intent again is a no-op: the object (managedFields' time too) is unchanged")
        // Key segments compare as canonical text, however a dictionary orders them.
        #expect(ServerSideApply.itemKey(Self.json(#"{"protocol":"UDP","containerPort":53}"#), ["containerPort", "protocol"]) == #"k:{"containerPort":53,"protocol":"UDP"}"#)
        #expect(ServerSideApply.canonicalSegment(#"k:{"protocol":"TCP","containerPort":80}"#) == #"k:{"containerPort":80,"protocol":"TCP"}"#)
    }
}
