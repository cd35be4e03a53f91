import Foundation
@testable import KubeCLI
@testable import KubeClient
import Resources
import Testing
import YAMLValue

@Suite("The client commands' pure parts: the catalog, tables, printing, manifests, describe")
struct CLITests {
    static func json(_ text: String) -> JSONValue { try! JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) }

    static let catalog = ResourceCatalog(entries:
        ResourceCatalog.entries(json(#"{"resources":[{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","shortNames":["po"],"categories":["all"]},{"name":"pods/status","namespaced":true,"kind":"Pod"},{"name":"events","singularName":"event","namespaced":true,"kind":"Event","shortNames":["ev"]},{"name":"namespaces","singularName":"namespace","namespaced":false,"kind":"Namespace","shortNames":["ns"]}]}"#), group: "", version: "v1")
        + ResourceCatalog.entries(json(#"{"resources":[{"name":"deployments","singularName":"deployment","namespaced":true,"kind":"Deployment","shortNames":["deploy"],"categories":["all"]}]}"#), group: "apps", version: "v1")
        + ResourceCatalog.entries(json(#"{"resources":[{"name":"events","singularName":"event","namespaced":true,"kind":"Event","shortNames":["ev"]}]}"#), group: "events.k8s.io", version: "v1"))

    @Test("Names resolve as kubectl resolves them: plural, singular, short, kind, plural.group, plural.version.group; core first; categories expand")
    func resolving() throws {
        for word in ["pods", "pod", "po", "Pod", "PODS", "pods.core"] { #expect(try Self.catalog.resolve(word).ref.plural == "pods", "\(word)") }
        #expect(try Self.catalog.resolve("deploy").ref.group == "apps")
        #expect(try Self.catalog.resolve("deployments.apps").ref.kind == "Deployment")
        #expect(try Self.catalog.resolve("deployments.v1.apps").ref.version == "v1")
        #expect(try Self.catalog.resolve("events").ref.group == "", "core events before events.k8s.io")
        #expect(try Self.catalog.resolve("events.events.k8s.io").ref.group == "events.k8s.io")
        #expect(try Self.catalog.expand("all").map(\.ref.plural) == ["pods", "deployments"])
        #expect(Self.catalog.entries.allSatisfy { !$0.ref.plural.contains("/") }, "subresources are not resources to get")
        #expect(throws: CLIError("the server doesn't have a resource type \"bogus\"")) { try Self.catalog.resolve("bogus") }
        #expect(try Self.catalog.entry(apiVersion: "apps/v1", kind: "Deployment").ref.plural == "deployments")
        #expect(throws: CLIError.self) { try Self.catalog.entry(apiVersion: "apps/v1beta1", kind: "Deployment") }
        #expect(throws: CLIError.self) { try Self.catalog.entry(apiVersion: "v1", kind: "Frobnicator") }
        #expect(ResourceRef.deployments.typeName == "deployment.apps" && ResourceRef.pods.typeName == "pod")
        #expect(ResourceRef.pods.path(namespace: "a b", name: "web", subresource: "status") == "/api/v1/namespaces/a%20b/pods/web/status")
        #expect(ResourceRef.clusterRoles.path(namespace: "ignored") == "/apis/rbac.authorization.k8s.io/v1/clusterroles")
    }

    static let table = json(#"""
        {"kind":"Table","columnDefinitions":[{"name":"Name","format":"name","priority":0},{"name":"Ready","priority":0},{"name":"IP","priority":1}],
         "rows":[{"cells":["web-1","1/1","10.0.0.1"],"object":{"metadata":{"namespace":"apps"}}},{"cells":["db",null,7],"object":{"metadata":{"namespace":"default"}}}]}
        """#)

    @Test("Tables print as kubectl's: upper-case headers, padded columns, wide adds priority-1 columns, NAMESPACE across namespaces, kind/name for several kinds")
    func tables() {
        let columns = Self.table["columnDefinitions"]!.arrayValue!
        #expect(TablePrinter.align(TablePrinter().rows(Self.table, columns: columns)) == "NAME    READY\nweb-1   1/1\ndb      <none>\n")
        #expect(TablePrinter.align(TablePrinter(wide: true).rows(Self.table, columns: columns)) == "NAME    READY    IP\nweb-1   1/1      10.0.0.1\ndb      <none>   7\n")
        #expect(TablePrinter.align(TablePrinter(withNamespace: true, kindPrefix: "pod", headers: false).rows(Self.table, columns: columns))
            == "apps      pod/web-1   1/1\ndefault   pod/db      <none>\n")
    }

    @Test("JSON prints with four-space indents and escapes; YAML quotes strings that would read back as another type")
    func printing() throws {
        let value = Self.json(#"{"b":[1,{"c":"x\"y"}],"a":{},"e":[],"url":"a/b"}"#)
        #expect(ObjectPrinter.json(value) == "{\n    \"a\": {},\n    \"b\": [\n        1,\n        {\n            \"c\": \"x\\\"y\"\n        }\n    ],\n    \"e\": [],\n    \"url\": \"a/b\"\n}\n")
        #expect(try JSONDecoder().decode(JSONValue.self, from: Data(ObjectPrinter.json(value).utf8)) == value)
        let yaml = ObjectPrinter.yaml(Self.json(#"{"rv":"42","yes":"yes","on":"on","t":"2026-12-04T00:00:00Z","n":"null","plain":"web","int":3,"bool":true,"multi":"a\nb\n","empty":""}"#))
        for line in ["rv: \"42\"", "yes: \"yes\"", "on: \"on\"", "t: \"2026-12-04T00:00:00Z\"", "n: \"null\"", "plain: web", "int: 3", "bool: true", "empty: \"\""] {
            #expect(yaml.contains(line), "\(line) in \(yaml)")
        }
        // Every value reads back as it was.
        let round = try #require(try YAMLBody.decodeAll(yaml).first)
        #expect(round["rv"] == "42" && round["yes"] == "yes" && round["multi"] == "a\nb\n" && round["int"] == .integer(3) && round["empty"] == "")
    }

    @Test("Manifests: several documents, empty ones skipped, List items, JSON; refusals name the file and document")
    func manifests() throws {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}\n"
        let objects = try Manifests.parse(Data(text.utf8), source: "f.yaml")
        #expect(objects.map { $0.value["metadata"]?["name"]?.stringValue } == ["a", "b", "c"])
        #expect(try Manifests.parse(Data(#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}"#.utf8), source: "p.json").count == 1)
        func refusal(_ text: String) -> String {
            do { _ = try Manifests.parse(Data(text.utf8), source: "bad.yaml"); return "" } catch { return "\(error)" }
        }
        #expect(refusal("kind: Pod\nmetadata: {name: x}\n").contains("apiVersion not set"))
        #expect(refusal("apiVersion: v1\nmetadata: {name: x}\n").contains("kind not set"))
        #expect(refusal("apiVersion: v1\nkind: Pod\n---\n- a\n").contains("document 2") )
        #expect(refusal("apiVersion: v1\nkind: [unclosed\n").contains("error parsing bad.yaml"))
        #expect(refusal("a: &a [*a, *a]\n").contains("error parsing"))
        #expect(throws: CLIError.self) { try Manifests.load(["/no/such/file.yaml"]) }
        #expect(throws: CLIError.self) { try Manifests.load([]) }
        let stdin = try Manifests.load(["-"], stdin: { Data("apiVersion: v1\nkind: Namespace\nmetadata: {name: s}\n".utf8) })
        #expect(stdin.first?.source == "stdin")
    }

    @Test("describe: metadata, the spec as a tree with the user's keys kept, events sorted with ages; kubectl's age format")
    func describing() {
        let now = Date(timeIntervalSince1970: 1_000_000)
        let pod = Self.json(#"{"kind":"Pod","metadata":{"name":"web","namespace":"apps","labels":{"app":"web"}},"spec":{"nodeSelector":{"disk":"ssd"},"containers":[{"name":"c","image":"nginx"}]}}"#)
        let events = [Self.json(#"{"type":"Normal","reason":"Pulled","message":"done","lastTimestamp":"1970-01-12T13:46:10Z","source":{"component":"kubelet"}}"#),
                      Self.json(#"{"type":"Warning","reason":"Failed","message":"early","lastTimestamp":"1970-01-12T13:40:00Z"}"#)]
        let text = Describer.describe(pod, kind: "Pod", events: events, now: now)
        for line in ["Name:         web", "Namespace:    apps", "Labels:       app=web", "Annotations:  <none>", "  NodeSelector:  disk=ssd", "    c:", "      Image:  nginx"] {
            #expect(text.contains(line), "\(line) in\n\(text)")
        }
        let eventLines = text.split(separator: "\n").drop { !$0.hasPrefix("Events:") }.map(String.init)
        #expect(eventLines.count == 5 && eventLines[3].contains("Failed") && eventLines[4].contains("Pulled") && eventLines[4].contains("kubelet"))
        #expect(eventLines[4].contains("30s") && eventLines[3].contains("6m40s"))
        #expect(Describer.describe(pod, kind: "Pod", events: [], now: now).hasSuffix("Events:  <none>\n"))
        let seconds: [Int] = [45, 200, 1_200, 19_800, 108_000, 273_600, 1_728_000, 69_120_000]
        let ages = seconds.map { Describer.age(TimeInterval($0)) }
        #expect(ages == ["45s", "3m20s", "20m", "5h30m", "30h", "3d4h", "20d", "2y70d"])
    }

    @Test("Watch streams split into lines across chunks; blank lines skipped; a line past the limit refused")
    func jsonLines() throws {
        var lines = JSONLines()
        #expect(try lines.append(Array("{\"a\":".utf8)).isEmpty)
        #expect(try lines.append(Array("1}\n\n{\"b\":2}\n{\"c\"".utf8)) == [Array("{\"a\":1}".utf8), Array("{\"b\":2}".utf8)])
        #expect(try lines.append(Array(":3}\n".utf8)) == [Array("{\"c\":3}".utf8)])
        #expect(throws: KubeError.self) { try lines.append([UInt8](repeating: 0x20, count: JSONLines.lineBytesMax + 1)) }
    }

    @Test("Errors from the server keep its Status: code, reason, message, the fields at fault")
    func errors() {
        let body = Array(#"{"kind":"Status","status":"Failure","reason":"Invalid","code":422,"message":"Pod \"x\" is invalid","details":{"causes":[{"field":"spec.containers"}]}}"#.utf8)
        let error = KubeError(status: 422, body: body)
        #expect(error.reason == "Invalid" && error.fields == ["spec.containers"] && "\(error)" == "Error from server (Invalid): Pod \"x\" is invalid")
        #expect(KubeError(status: 502, body: Array("bad gateway".utf8)).message == "bad gateway")
        #expect(KubeError(status: 410, body: []).isExpired)
        #expect(KubeClient.queryString([("labelSelector", "app in (a,b)"), ("x", "a&b=c")]) == "?labelSelector=app%20in%20%28a%2Cb%29&x=a%26b%3Dc")
    }
}
