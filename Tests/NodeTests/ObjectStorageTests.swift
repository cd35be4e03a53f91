import APIServer
import KVStore
import Node
import Resources
import Store
import Testing

/// Kubernetes objects on the store (``ObjectStorage``), on a real in-process member.
@Suite("Kubernetes objects in the store")
struct ObjectStorageTests {
    static let pods = ResourceType(group: "", version: "v1", name: "pods", singularName: "pod", kind: "Pod", namespaced: true, shortNames: ["po"])
    static let deployments = ResourceType(group: "apps", version: "v1", name: "deployments", singularName: "deployment", kind: "Deployment", namespaced: true)

    static func pod(_ name: String, namespace: String = "default", uid: String = "u-1") -> JSONValue {
        .object(["apiVersion": .string("v1"), "kind": .string("Pod"),
                 "metadata": .object(["name": .string(name), "namespace": .string(namespace), "uid": .string(uid)]),
                 "spec": .object(["containers": .array([.object(["name": .string("c"), "image": .string("busybox")])])])])
    }

    static func error(_ body: () async throws -> Void) async -> APIError? {
        do {
            try await body()
            return nil
        } catch let error as APIError {
            return error
        } catch {
            return APIError.internalError("not an APIError: \(error)")
        }
    }

    static func version(_ object: JSONValue) -> Int64 { Int64(object.metadata("resourceVersion")?.stringValue ?? "") ?? -1 }

    @Test("create, get, update on the read version, conflicts and not-found in Kubernetes' words")
    func singleObjects() async throws {
        try await EmbeddedStoreTests.withNode { node in
            let storage = ObjectStorage(store: node.store)
            let created = try await storage.create(Self.pods, namespace: "default", name: "web", object: Self.pod("web"))
            let firstVersion = Self.version(created)
            #expect(firstVersion > 0)
            let read = try await storage.get(Self.pods, namespace: "default", name: "web")
            #expect(read == created)
            let again = await Self.error { _ = try await storage.create(Self.pods, namespace: "default", name: "web", object: Self.pod("web")) }
            #expect(again?.code == 409 && again?.reason == "AlreadyExists" && again?.message == #"pods "web" already exists"#)

            var changed = read
            changed.setMetadata("labels", .object(["app": .string("web")]))
            let updated = try await storage.update(Self.pods, namespace: "default", name: "web", object: changed, resourceVersion: firstVersion)
            #expect(Self.version(updated) > firstVersion)
            let stale = await Self.error { _ = try await storage.update(Self.pods, namespace: "default", name: "web", object: changed, resourceVersion: firstVersion) }
            #expect(stale?.code == 409 && stale?.reason == "Conflict")
            #expect(stale?.message == #"Operation cannot be fulfilled on pods "web": the object has been modified; please apply your changes to the latest version and try again"#)
            #expect(try await storage.get(Self.pods, namespace: "default", name: "web").metadata("labels")?["app"] == .string("web"))

            let missing = await Self.error { _ = try await storage.update(Self.pods, namespace: "default", name: "nope", object: Self.pod("nope"), resourceVersion: 5) }
            #expect(missing?.code == 404 && missing?.message == #"pods "nope" not found"#)
            let grouped = await Self.error { _ = try await storage.get(Self.deployments, namespace: "default", name: "x") }
            #expect(grouped?.message == #"deployments.apps "x" not found"#)
            // The stored value carries no resourceVersion: it is the key's revision.
            let raw = try #require(try await node.store.get(Self.pods.key(namespace: "default", name: "web")))
            #expect(!String(decoding: raw.value, as: UTF8.self).contains("resourceVersion"))
        }
    }

    @Test("delete with preconditions; the answer is the object at the deletion's revision")
    func deletes() async throws {
        try await EmbeddedStoreTests.withNode { node in
            let storage = ObjectStorage(store: node.store)
            let created = try await storage.create(Self.pods, namespace: "default", name: "web", object: Self.pod("web", uid: "u-7"))
            let wrongUID = await Self.error {
                _ = try await storage.delete(Self.pods, namespace: "default", name: "web", preconditions: .init(uid: "other"))
            }
            #expect(wrongUID?.code == 409 && wrongUID?.message.contains("Precondition failed: UID in precondition: other, UID in object meta: u-7") == true)
            let wrongVersion = await Self.error {
                _ = try await storage.delete(Self.pods, namespace: "default", name: "web", preconditions: .init(resourceVersion: "1"))
            }
            #expect(wrongVersion?.code == 409)
            let deleted = try await storage.delete(Self.pods, namespace: "default", name: "web",
                                                   preconditions: .init(uid: "u-7", resourceVersion: String(Self.version(created))))
            #expect(Self.version(deleted) > Self.version(created))
            #expect(deleted.metadata("name") == .string("web"))
            let gone = await Self.error { _ = try await storage.get(Self.pods, namespace: "default", name: "web") }
            #expect(gone?.code == 404)
            let twice = await Self.error { _ = try await storage.delete(Self.pods, namespace: "default", name: "web") }
            #expect(twice?.code == 404)
        }
    }

    @Test("lists page with limit and continue, all pages at one revision; bad and foreign tokens refused")
    func pagedLists() async throws {
        try await EmbeddedStoreTests.withNode { node in
            let storage = ObjectStorage(store: node.store)
            for name in ["a", "b", "c", "d", "e"] { _ = try await storage.create(Self.pods, namespace: "one", name: name, object: Self.pod(name, namespace: "one")) }
            for name in ["x", "y"] { _ = try await storage.create(Self.pods, namespace: "two", name: name, object: Self.pod(name, namespace: "two")) }
            let first = try await storage.list(Self.pods, namespace: "one", limit: 2)
            #expect(first.items.compactMap { $0.metadata("name")?.stringValue } == ["a", "b"])
            #expect(first.remainingItemCount == 3)
            let token = try #require(first.continueToken)
            // Written after the first page: not in the rest of this list.
            _ = try await storage.create(Self.pods, namespace: "one", name: "bb", object: Self.pod("bb", namespace: "one"))
            _ = try await storage.delete(Self.pods, namespace: "one", name: "d")
            let second = try await storage.list(Self.pods, namespace: "one", limit: 2, continueToken: token)
            #expect(second.items.compactMap { $0.metadata("name")?.stringValue } == ["c", "d"])
            #expect(second.resourceVersion == first.resourceVersion)
            #expect(second.continueToken != nil)
            let third = try await storage.list(Self.pods, namespace: "one", limit: 2, continueToken: second.continueToken)
            #expect(third.items.compactMap { $0.metadata("name")?.stringValue } == ["e"])
            #expect(third.continueToken == nil)

            let all = try await storage.list(Self.pods, namespace: nil)
            #expect(all.items.compactMap { $0.metadata("name")?.stringValue } == ["a", "b", "bb", "c", "e", "x", "y"])
            let filtered = try await storage.list(Self.pods, namespace: nil, limit: 2) { $0.metadata("namespace") == .string("two") }
            #expect(filtered.items.compactMap { $0.metadata("name")?.stringValue } == ["x", "y"])

            let foreign = await Self.error { _ = try await storage.list(Self.pods, namespace: "two", limit: 1, continueToken: token) }
            #expect(foreign?.code == 400)
            for garbage in ["", "not-base64!", "eyJ2IjoiMSJ9", String(repeating: "A", count: 10_000)] {
                let refused = await Self.error { _ = try await storage.list(Self.pods, namespace: "one", limit: 1, continueToken: garbage) }
                #expect(refused?.code == 400, "\(garbage.prefix(20))")
            }
            // A token whose revision is compacted away: 410, list again.
            _ = try await node.store.compact(revision: all.resourceVersion, physical: false)
            let expired = await Self.error { _ = try await storage.list(Self.pods, namespace: "one", limit: 2, continueToken: token) }
            #expect(expired?.code == 410 && expired?.reason == "Expired")
        }
    }

    @Test("watch: ADDED, MODIFIED, DELETED after a resourceVersion, one namespace; 410 once compacted")
    func watches() async throws {
        try await EmbeddedStoreTests.withNode { node in
            let storage = ObjectStorage(store: node.store)
            let before = try await storage.create(Self.pods, namespace: "one", name: "old", object: Self.pod("old", namespace: "one"))
            let watch = try await storage.watch(Self.pods, namespace: "one", after: Self.version(before))
            let created = try await storage.create(Self.pods, namespace: "one", name: "web", object: Self.pod("web", namespace: "one"))
            _ = try await storage.create(Self.pods, namespace: "two", name: "elsewhere", object: Self.pod("elsewhere", namespace: "two"))
            var changed = created
            changed.setMetadata("labels", .object(["v": .string("2")]))
            let updated = try await storage.update(Self.pods, namespace: "one", name: "web", object: changed, resourceVersion: Self.version(created))
            let deleted = try await storage.delete(Self.pods, namespace: "one", name: "web")
            var events: [ObjectEvent] = []
            for try await event in watch {
                events.append(event)
                if events.count == 3 { break }
            }
            #expect(events == [.added(created), .modified(updated), .deleted(deleted)])

            _ = try await node.store.compact(revision: Self.version(deleted), physical: false)
            let late = try await storage.watch(Self.pods, namespace: "one", after: Self.version(before))
            let ended = await Self.error { for try await _ in late {} }
            #expect(ended?.code == 410 && ended?.reason == "Expired")
        }
    }

    @Test("guaranteed updates from 20 writers at once: none lost")
    func guaranteedUpdates() async throws {
        try await EmbeddedStoreTests.withNode { node in
            let storage = ObjectStorage(store: node.store)
            _ = try await storage.create(Self.pods, namespace: "default", name: "counter", object: Self.pod("counter"))
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        _ = try await storage.guaranteedUpdate(Self.pods, namespace: "default", name: "counter", attempts: 100) { current in
                            var next = current
                            let count = Int(current.metadata("annotations")?["count"]?.stringValue ?? "0") ?? 0
                            next.setMetadata("annotations", .object(["count": .string(String(count + 1))]))
                            return next
                        }
                    }
                }
                try await group.waitForAll()
            }
            let final = try await storage.get(Self.pods, namespace: "default", name: "counter")
            #expect(final.metadata("annotations")?["count"] == .string("20"))
        }
    }
}
