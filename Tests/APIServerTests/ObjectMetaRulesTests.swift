import APIServer
import Foundation
import Resources
import Testing

@Suite("Object metadata on create and update")
struct ObjectMetaRulesTests {
    static let pods = ResourceType(group: "", version: "v1", name: "pods", singularName: "pod", kind: "Pod", namespaced: true)
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func context(_ namespace: String? = "default") -> ObjectMetaRules.Context {
        ObjectMetaRules.Context(resource: pods, namespace: namespace, now: now, uid: "11111111-2222-3333-4444-555555555555", suffix: "x7k2q")
    }

    static func body(_ metadata: [String: JSONValue], kind: String = "Pod", apiVersion: String = "v1") -> JSONValue {
        .object(["apiVersion": .string(apiVersion), "kind": .string(kind), "metadata": .object(metadata), "spec": .object(["containers": .array([])])])
    }

    static func refusal(_ body: () throws -> JSONValue) -> APIError? {
        do {
            _ = try body()
            return nil
        } catch let error as APIError {
            return error
        } catch {
            return APIError.internalError("\(error)")
        }
    }

    @Test("create: the server's fields filled in, the client's server-owned ones dropped")
    func create() throws {
        let created = try ObjectMetaRules.prepareForCreate(Self.body(["generateName": .string("web-"), "resourceVersion": .string("12"),
                                                                      "selfLink": .string("/x")]), Self.context())
        #expect(created.metadata("name") == .string("web-x7k2q"))
        #expect(created.metadata("namespace") == .string("default"))
        #expect(created.metadata("uid") == .string("11111111-2222-3333-4444-555555555555"))
        #expect(created.metadata("creationTimestamp") == .string("2027-01-15T08:00:00Z"))
        #expect(created.metadata("generation") == .integer(1))
        #expect(created.metadata("resourceVersion") == nil && created.metadata("selfLink") == nil)
        let long = try ObjectMetaRules.prepareForCreate(Self.body(["generateName": .string(String(repeating: "a", count: 70))]), Self.context())
        #expect(long.metadata("name")?.stringValue?.count == 63)
        let noMetadata = try ObjectMetaRules.prepareForCreate(.object(["spec": .object([:]), "metadata": .object(["name": .string("p")])]), Self.context())
        #expect(noMetadata.metadata("name") == .string("p"))
    }

    @Test("create refusals: other kind, version or namespace (400); missing or bad name, labels, annotations (422 with causes)")
    func createRefusals() {
        let kind = Self.refusal { try ObjectMetaRules.prepareForCreate(Self.body(["name": .string("a")], kind: "Service"), Self.context()) }
        #expect(kind?.code == 400 && kind?.message == "the kind in the data (Service) does not match the expected kind (Pod)")
        let version = Self.refusal { try ObjectMetaRules.prepareForCreate(Self.body(["name": .string("a")], apiVersion: "apps/v1"), Self.context()) }
        #expect(version?.message == "the API version in the data (apps/v1) does not match the expected API version (v1)")
        let namespace = Self.refusal { try ObjectMetaRules.prepareForCreate(Self.body(["name": .string("a"), "namespace": .string("other")]), Self.context()) }
        #expect(namespace?.code == 400 && namespace?.message == "the namespace of the provided object does not match the namespace sent on the request")
        let notObject = Self.refusal { try ObjectMetaRules.prepareForCreate(.array([]), Self.context()) }
        #expect(notObject?.code == 400)
        let badMetadata = Self.refusal { try ObjectMetaRules.prepareForCreate(.object(["metadata": .string("x")]), Self.context()) }
        #expect(badMetadata?.code == 400)

        let unnamed = Self.refusal { try ObjectMetaRules.prepareForCreate(Self.body([:]), Self.context()) }
        #expect(unnamed?.code == 422 && unnamed?.reason == "Invalid")
        #expect(unnamed?.message == #"Pod "" is invalid: metadata.name: Required value: name or generateName is required"#)
        #expect(unnamed?.details?.causes.first?.field == "metadata.name" && unnamed?.details?.causes.first?.reason == "FieldValueRequired")
        let badName = Self.refusal { try ObjectMetaRules.prepareForCreate(Self.body(["name": .string("Web_1")]), Self.context()) }
        #expect(badName?.code == 422 && badName?.details?.causes.first?.reason == "FieldValueInvalid")
        #expect(badName?.message.hasPrefix(#"Pod "Web_1" is invalid: metadata.name: Invalid value: "Web_1": a lowercase RFC 1123 subdomain"#) == true)
        let labels = Self.refusal {
            try ObjectMetaRules.prepareForCreate(Self.body(["name": .string("a"), "labels": .object(["ok": .string("fine"), "bad key!": .string("v"), "n": .integer(1)])]), Self.context())
        }
        #expect(labels?.details?.causes.map(\.field).sorted() == ["metadata.labels", "metadata.labels.n"])
        let annotations = Self.refusal {
            try ObjectMetaRules.prepareForCreate(Self.body(["name": .string("a"), "annotations": .object(["big": .string(String(repeating: "x", count: 300_000))])]), Self.context())
        }
        #expect(annotations?.details?.causes.first?.reason == "FieldValueTooLong")
    }

    @Test("update: uid and creation time kept, generation moves with the spec only, the name is the URL's")
    func update() throws {
        let existing = try ObjectMetaRules.prepareForCreate(Self.body(["name": .string("web")]), Self.context())
        var relabelled = existing
        relabelled.setMetadata("labels", .object(["a": .string("b")]))
        relabelled.setMetadata("uid", .string("forged"))
        let sameSpec = try ObjectMetaRules.prepareForUpdate(relabelled, existing: existing, Self.context())
        #expect(sameSpec.metadata("uid") == existing.metadata("uid"))
        #expect(sameSpec.metadata("generation") == .integer(1))
        guard case .object(var changed) = relabelled else { return }
        changed["spec"] = .object(["containers": .array([.object(["name": .string("c")])])])
        let newSpec = try ObjectMetaRules.prepareForUpdate(.object(changed), existing: existing, Self.context())
        #expect(newSpec.metadata("generation") == .integer(2))
        var renamed = existing
        renamed.setMetadata("name", .string("other"))
        #expect(Self.refusal { try ObjectMetaRules.prepareForUpdate(renamed, existing: existing, Self.context()) }?.code == 400)
    }
}
