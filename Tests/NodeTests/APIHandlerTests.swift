import APIServer
import Foundation
import KVStore
import Resources
import Store
import Testing

/// The REST semantics (``APIHandler``) on a real in-process member: what kubectl's requests get
/// back, without HTTP in between.
@Suite("REST requests on the store")
struct APIHandlerTests {
    static func json(_ text: String) -> [UInt8] { Array(text.utf8) }
    static let admin = UserInfo(name: "admin", groups: [UserInfo.mastersGroup])

    static func object(_ response: APIResponse) -> (status: Int, body: JSONValue)? {
        if case .object(let status, let body, _) = response { return (status, body) }
        return nil
    }

    static let pod = #"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#

    @Test("create, get, list with selectors, update on the read version, delete; Status for every refusal")
    func crud() async throws {
        try await EmbeddedStoreTests.withNode { node in
            let api = APIHandler(storage: ObjectStorage(store: node.store))
            try await BootstrapObjects.ensure(api.storage)
            let created = try #require(Self.object(await api.handle(APIRequest(method: "POST", path: "/api/v1/namespaces/default/pods", body: Self.json(Self.pod)), as: Self.admin)))
            #expect(created.status == 201)
            #expect(created.body.metadata("namespace") == .string("default") && created.body.metadata("uid") != nil)
            let version = try #require(created.body.metadata("resourceVersion")?.stringValue)

            let got = try #require(Self.object(await api.handle(APIRequest(method: "GET", path: "/api/v1/namespaces/default/pods/web"), as: Self.admin)))
            #expect(got.status == 200 && got.body == created.body)
            let again = try #require(Self.object(await api.handle(APIRequest(method: "POST", path: "/api/v1/namespaces/default/pods", body: Self.json(Self.pod)), as: Self.admin)))
            #expect(again.status == 409 && again.body["reason"] == .string("AlreadyExists") && again.body["kind"] == .string("Status"))

            let list = try #require(Self.object(await api.handle(APIRequest(method: "GET", path: "/api/v1/pods", query: ["labelSelector": "app=web"]), as: Self.admin)))
            #expect(list.body["kind"] == .string("PodList"))
            guard case .array(let items) = list.body["items"] else { Issue.record("no items"); return }
            #expect(items.count == 1 && items.first?["kind"] == .string("Pod"))
            let none = try #require(Self.object(await api.handle(APIRequest(method: "GET", path: "/api/v1/namespaces/default/pods", query: ["labelSelector": "app=db"]), as: Self.admin)))
            #expect(none.body["items"] == .array([]))
            let badSelector = try #require(Self.object(await api.handle(APIRequest(method: "GET", path: "/api/v1/pods", query: ["labelSelector": "app in x"]), as: Self.admin)))
            #expect(badSelector.status == 400)
            let byNode = try #require(Self.object(await api.handle(APIRequest(method: "GET", path: "/api/v1/pods", query: ["fieldSelector": "spec.nodeName=n1"]), as: Self.admin)))
            #expect(byNode.body["items"] == .array([]))

            var changed = created.body
            changed.setMetadata("labels", .object(["app": .string("web"), "v": .string("2")]))
            let body = Array(try JSONEncoder().encode(changed))
            let updated = try #require(Self.object(await api.handle(APIRequest(method: "PUT", path: "/api/v1/namespaces/default/pods/web", body: body), as: Self.admin)))
            #expect(updated.status == 200 && updated.body.metadata("resourceVersion")?.stringValue != version)
            let stale = try #require(Self.object(await api.handle(APIRequest(method: "PUT", path: "/api/v1/namespaces/default/pods/web", body: body), as: Self.admin)))
            #expect(stale.status == 409 && stale.body["reason"] == .string("Conflict"))

            let deleted = try #require(Self.object(await api.handle(APIRequest(method: "DELETE", path: "/api/v1/namespaces/default/pods/web"), as: Self.admin)))
            #expect(deleted.status == 200 && deleted.body.metadata("name") == .string("web"))
            let gone = try #require(Self.object(await api.handle(APIRequest(method: "GET", path: "/api/v1/namespaces/default/pods/web"), as: Self.admin)))
            #expect(gone.status == 404 && gone.body["message"] == .string(#"pods "web" not found"#) && gone.body["details"]?["kind"] == .string("pods"))
        }
    }

    @Test("bad requests: unknown resource, bad JSON, another kind, no name, too large, wrong method")
    func refusals() async throws {
        try await EmbeddedStoreTests.withNode { node in
            let api = APIHandler(storage: ObjectStorage(store: node.store))
            try await BootstrapObjects.ensure(api.storage)
            func status(_ request: APIRequest) async -> (Int, String?) {
                guard let answer = Self.object(await api.handle(request, as: Self.admin)) else { return (-1, nil) }
                return (answer.status, answer.body["reason"]?.stringValue)
            }
            #expect(await status(APIRequest(method: "GET", path: "/api/v1/namespaces/default/widgets")) == (404, "NotFound"))
            #expect(await status(APIRequest(method: "GET", path: "/apis/apps/v9/deployments")) == (404, "NotFound"))
            #expect(await status(APIRequest(method: "POST", path: "/api/v1/namespaces/default/pods", body: Self.json("{not json"))) == (400, "BadRequest"))
            #expect(await status(APIRequest(method: "POST", path: "/api/v1/namespaces/default/pods", body: [])) == (400, "BadRequest"))
            #expect(await status(APIRequest(method: "POST", path: "/api/v1/namespaces/default/pods",
                                            body: Self.json(#"{"kind":"Service","apiVersion":"v1","metadata":{"name":"s"}}"#))) == (400, "BadRequest"))
            #expect(await status(APIRequest(method: "POST", path: "/api/v1/namespaces/default/pods", body: Self.json(#"{"kind":"Pod","apiVersion":"v1"}"#))) == (422, "Invalid"))
            #expect(await status(APIRequest(method: "POST", path: "/api/v1/namespaces/default/configmaps",
                                            body: [UInt8](repeating: UInt8(ascii: " "), count: (3 << 20) + 1))) == (413, "RequestEntityTooLarge"))
            #expect(await status(APIRequest(method: "PUT", path: "/api/v1/namespaces/default/pods", body: Self.json(Self.pod))) == (405, "MethodNotAllowed"))
            #expect(await status(APIRequest(method: "POST", path: "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews/x", body: Self.json("{}"))) == (405, "MethodNotAllowed"))
            #expect(await status(APIRequest(method: "GET", path: "/api/v1/namespaces/default/pods", query: ["limit": "-1"])) == (400, "BadRequest"))
            // The server still serves after all of that.
            #expect(await status(APIRequest(method: "GET", path: "/api/v1/namespaces/default/pods")).0 == 200)
        }
    }

    @Test("discovery and health")
    func discovery() async throws {
        try await EmbeddedStoreTests.withNode { node in
            let api = APIHandler(storage: ObjectStorage(store: node.store))
            try await BootstrapObjects.ensure(api.storage)
            #expect(Self.object(await api.handle(APIRequest(method: "GET", path: "/api"), as: Self.admin))?.body["kind"] == .string("APIVersions"))
            #expect(Self.object(await api.handle(APIRequest(method: "GET", path: "/apis"), as: Self.admin))?.body["kind"] == .string("APIGroupList"))
            #expect(Self.object(await api.handle(APIRequest(method: "GET", path: "/apis/apps/v1"), as: Self.admin))?.body["groupVersion"] == .string("apps/v1"))
            #expect(Self.object(await api.handle(APIRequest(method: "GET", path: "/version"), as: Self.admin))?.body["major"] == .string("1"))
            guard case .text(200, "ok") = await api.handle(APIRequest(method: "GET", path: "/healthz"), as: Self.admin) else {
                Issue.record("healthz is not a plain ok")
                return
            }
            #expect(Self.object(await api.handle(APIRequest(method: "GET", path: "/nope"), as: Self.admin))?.status == 404)
        }
    }

    @Test("watch without a version: the current objects ADDED, then the changes")
    func watch() async throws {
        try await EmbeddedStoreTests.withNode { node in
            let api = APIHandler(storage: ObjectStorage(store: node.store))
            try await BootstrapObjects.ensure(api.storage)
            _ = await api.handle(APIRequest(method: "POST", path: "/api/v1/namespaces/default/pods", body: Self.json(Self.pod)), as: Self.admin)
            guard case .watch(let watch, let initial, _) = await api.handle(APIRequest(method: "GET", path: "/api/v1/namespaces/default/pods", query: ["watch": "1"]), as: Self.admin) else {
                Issue.record("not a watch")
                return
            }
            #expect(initial.count == 1 && initial.first?.type == "ADDED")
            _ = await api.handle(APIRequest(method: "DELETE", path: "/api/v1/namespaces/default/pods/web"), as: Self.admin)
            var iterator = watch.makeAsyncIterator()
            let next = try await iterator.next()
            #expect(next?.type == "DELETED")
            watch.cancel()
            let bad = await api.handle(APIRequest(method: "GET", path: "/api/v1/pods", query: ["watch": "true", "resourceVersion": "abc"]), as: Self.admin)
            #expect(Self.object(bad)?.status == 400)
        }
    }

    @Test("events expire: each is written on a store lease of an hour and a minute, shared by the events of a minute and kept on update")
    func eventsExpire() async throws {
        try await EmbeddedStoreTests.withNode { node in
            let api = APIHandler(storage: ObjectStorage(store: node.store))
            try await BootstrapObjects.ensure(api.storage)
            func event(_ name: String, _ message: String) -> [UInt8] {
                Self.json(#"{"apiVersion":"v1","kind":"Event","metadata":{"name":""# + name + #""},"involvedObject":{"kind":"Pod","name":"p"},"reason":"Test","message":""# + message + #""}"#)
            }
            func lease(_ name: String) async throws -> Int64 {
                try #require(try await node.store.range(RangeRequest(key: Array("/registry/events/default/\(name)".utf8))).kvs.first).lease
            }
            #expect(Self.object(await api.handle(APIRequest(method: "POST", path: "/api/v1/namespaces/default/events", body: event("e1", "one")), as: Self.admin))?.status == 201)
            #expect(Self.object(await api.handle(APIRequest(method: "POST", path: "/api/v1/namespaces/default/events", body: event("e2", "two")), as: Self.admin))?.status == 201)
            let first = try await lease("e1")
            #expect(first != 0)
            #expect(try await lease("e2") == first)
            let life = try #require(try await node.store.leaseTimeToLive(id: first, keys: true))
            #expect(life.grantedTTL == 3660 && life.ttl > 3600 && life.keys.count == 2)
            let updated = await api.handle(APIRequest(method: "PUT", path: "/api/v1/namespaces/default/events/e1", body: event("e1", "again")), as: Self.admin)
            #expect(Self.object(updated)?.status == 200)
            #expect(try await lease("e1") == first)
            // Other kinds have no lease.
            _ = await api.handle(APIRequest(method: "POST", path: "/api/v1/namespaces/default/configmaps", body: Self.json(#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}"#)), as: Self.admin)
            #expect(try #require(try await node.store.range(RangeRequest(key: Array("/registry/configmaps/default/c".utf8))).kvs.first).lease == 0)
        }
    }
}
