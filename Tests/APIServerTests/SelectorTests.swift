import APIServer
import Resources
import Testing

@Suite("Label selectors and names, as Kubernetes parses and checks them")
struct SelectorTests {
    static func parse(_ text: String) throws -> LabelSelector { try LabelSelector(parsing: text) }

    static func refusal(_ text: String) -> APIError? {
        do {
            _ = try LabelSelector(parsing: text)
            return nil
        } catch {
            return error
        }
    }

    @Test("equality, inequality, sets, existence")
    func matching() throws {
        let selector = try Self.parse("app=web,tier!=db")
        #expect(selector.matches(["app": "web", "tier": "fe"]))
        #expect(selector.matches(["app": "web"]))
        #expect(!selector.matches(["app": "web", "tier": "db"]))
        #expect(!selector.matches(["tier": "fe"]))
        #expect(try Self.parse("app==web") == Self.parse("app=web"))
        let sets = try Self.parse("env in (prod, staging),  zone notin (a,b)")
        #expect(sets.matches(["env": "staging"]))
        #expect(sets.matches(["env": "prod", "zone": "c"]))
        #expect(!sets.matches(["env": "prod", "zone": "a"]))
        #expect(!sets.matches(["env": "dev"]))
        #expect(try Self.parse("!canary").matches(["app": "x"]))
        #expect(try !Self.parse("!canary").matches(["canary": ""]))
        #expect(try Self.parse("release").matches(["release": "1"]))
        #expect(try !Self.parse("release").matches([:]))
        #expect(try Self.parse("").matches(["anything": "x"]))
        #expect(try Self.parse("  ") == LabelSelector.everything)
        #expect(try Self.parse("app=").matches(["app": ""]))
        // As Kubernetes' parser: "()" is the set of the empty value.
        #expect(try Self.parse("app notin ()").matches(["app": "x"]))
        #expect(try !Self.parse("app in ()").matches(["app": "x"]))
        #expect(try Self.parse("example.com/app=x").matches(["example.com/app": "x"]))
    }

    @Test("objects' labels")
    func objects() throws {
        let object = JSONValue.object(["metadata": .object(["labels": .object(["app": .string("web")])])])
        #expect(try Self.parse("app=web").matches(object: object))
        #expect(try !Self.parse("app=db").matches(object: object))
        #expect(try Self.parse("!app").matches(object: .object([:])) == true)
    }

    @Test("malformed selectors get a 400 that says what is wrong")
    func refusals() {
        for text in ["app in prod", "=web", "a b", "app in (x", "-bad=1", "app=-x", "Example.com/app=x",
                     "app=\(String(repeating: "v", count: 64))", "a,,b", "app>1", "a=b=c", String(repeating: "a,", count: 9_000)] {
            let refusal = Self.refusal(text)
            #expect(refusal?.code == 400, "\(text.prefix(30))")
        }
        #expect(Self.refusal("-bad=1")?.message.contains("invalid label key \"-bad\"") == true)
        #expect(Self.refusal("app in prod")?.message.contains("expected: '('") == true)
    }

    @Test("a Deployment's selector: matchLabels and matchExpressions")
    func objectSelectors() throws {
        let selector = try LabelSelector(MetaV1.LabelSelector(
            matchExpressions: [MetaV1.LabelSelectorRequirement(key: "tier", operator: "In", values: ["web", "edge"])],
            matchLabels: ["app": "nginx"]))
        #expect(selector.matches(["app": "nginx", "tier": "edge"]))
        #expect(!selector.matches(["app": "nginx", "tier": "db"]))
        #expect(throws: APIError.self) { try LabelSelector(MetaV1.LabelSelector(matchExpressions: [.init(key: "a", operator: "Near", values: [])])) }
        #expect(throws: APIError.self) { try LabelSelector(MetaV1.LabelSelector(matchExpressions: [.init(key: "a", operator: "In", values: [])])) }
        #expect(throws: APIError.self) { try LabelSelector(MetaV1.LabelSelector(matchExpressions: [.init(key: "a", operator: "Exists", values: ["x"])])) }
    }

    @Test("names: DNS-1123 subdomains and labels")
    func names() {
        #expect(NameRules.dnsSubdomainProblems("web-1").isEmpty)
        #expect(NameRules.dnsSubdomainProblems("a.b.c").isEmpty)
        #expect(!NameRules.dnsSubdomainProblems("Web").isEmpty)
        #expect(!NameRules.dnsSubdomainProblems("").isEmpty)
        #expect(!NameRules.dnsSubdomainProblems("-a").isEmpty)
        #expect(!NameRules.dnsSubdomainProblems("a..b").isEmpty)
        #expect(NameRules.dnsSubdomainProblems(String(repeating: "a", count: 254)).contains("must be no more than 253 characters"))
        #expect(NameRules.dnsLabelProblems("kube-system").isEmpty)
        #expect(!NameRules.dnsLabelProblems("a.b").isEmpty)
        #expect(NameRules.dnsLabelProblems(String(repeating: "a", count: 64)).contains("must be no more than 63 characters"))
        #expect(!NameRules.pathSegmentProblems("..").isEmpty)
        #expect(!NameRules.pathSegmentProblems("a/b").isEmpty)
        #expect(LabelSyntax.keyProblems("app.kubernetes.io/name").isEmpty)
        #expect(!LabelSyntax.keyProblems("/name").isEmpty)
        #expect(!LabelSyntax.valueProblems("bad value").isEmpty)
        #expect(LabelSyntax.valueProblems("").isEmpty)
    }
}

@Suite("Field selectors")
struct FieldSelectorTests {
    static let pod = JSONValue.object([
        "metadata": .object(["name": .string("web"), "namespace": .string("default")]),
        "spec": .object(["nodeName": .string("node1"), "hostNetwork": .bool(true)]),
        "status": .object(["phase": .string("Running")]),
    ])

    @Test("equality and inequality on the fields a kind offers; absent reads as empty")
    func matching() throws {
        #expect(try FieldSelector(parsing: "spec.nodeName=node1", kind: "Pod").matches(object: Self.pod))
        #expect(try FieldSelector(parsing: "spec.nodeName==node1,status.phase!=Succeeded", kind: "Pod").matches(object: Self.pod))
        #expect(try !FieldSelector(parsing: "spec.nodeName=node2", kind: "Pod").matches(object: Self.pod))
        #expect(try FieldSelector(parsing: "spec.hostNetwork=true", kind: "Pod").matches(object: Self.pod))
        #expect(try FieldSelector(parsing: "status.podIP=", kind: "Pod").matches(object: Self.pod))
        #expect(try FieldSelector(parsing: "metadata.name=web", kind: "ConfigMap").matches(object: Self.pod))
        #expect(try FieldSelector(parsing: "", kind: "Pod") == FieldSelector.everything)
    }

    @Test("unknown fields and bad syntax are 400s")
    func refusals() {
        #expect(throws: APIError.self) { try FieldSelector(parsing: "spec.nodeName=x", kind: "ConfigMap") }
        #expect(throws: APIError.self) { try FieldSelector(parsing: "spec.foo=x", kind: "Pod") }
        #expect(throws: APIError.self) { try FieldSelector(parsing: "metadata.name", kind: "Pod") }
        do {
            _ = try FieldSelector(parsing: "spec.foo=x", kind: "Pod")
        } catch {
            #expect(error.message == "field label not supported: spec.foo")
        }
    }
}

@Suite("Request paths as kube-apiserver reads them")
struct RequestInfoTests {
    static func info(_ method: String, _ path: String, watch: Bool = false) -> RequestInfo? {
        RequestInfo(method: method, path: path, watch: watch)
    }

    @Test("resource requests: verb, group, version, namespace, resource, name, subresource")
    func resources() throws {
        let pod = try #require(Self.info("GET", "/api/v1/namespaces/default/pods/web"))
        #expect(pod.isResourceRequest && pod.verb == "get" && pod.group == "" && pod.version == "v1")
        #expect(pod.namespace == "default" && pod.resource == "pods" && pod.name == "web" && pod.subresource == nil)
        let list = try #require(Self.info("GET", "/apis/apps/v1/namespaces/prod/deployments"))
        #expect(list.verb == "list" && list.group == "apps" && list.apiVersion == "apps/v1" && list.namespace == "prod" && list.name == nil)
        #expect(Self.info("GET", "/api/v1/pods")?.namespace == nil)
        #expect(Self.info("GET", "/api/v1/pods", watch: true)?.verb == "watch")
        #expect(Self.info("POST", "/api/v1/namespaces/default/pods")?.verb == "create")
        #expect(Self.info("PUT", "/api/v1/namespaces/default/pods/web/status")?.subresource == "status")
        #expect(Self.info("PATCH", "/apis/apps/v1/namespaces/d/deployments/x/scale")?.verb == "patch")
        #expect(Self.info("DELETE", "/api/v1/namespaces/default/pods")?.verb == "deletecollection")
        #expect(Self.info("DELETE", "/api/v1/namespaces/default/pods/web")?.verb == "delete")
        #expect(Self.info("POST", "/api/v1/namespaces/default/pods/web/binding")?.subresource == "binding")
    }

    @Test("the Namespace resource itself, and cluster-scoped resources")
    func namespaces() throws {
        let list = try #require(Self.info("GET", "/api/v1/namespaces"))
        #expect(list.resource == "namespaces" && list.namespace == nil && list.name == nil && list.verb == "list")
        let one = try #require(Self.info("GET", "/api/v1/namespaces/kube-system"))
        #expect(one.resource == "namespaces" && one.name == "kube-system" && one.namespace == nil)
        let finalize = try #require(Self.info("PUT", "/api/v1/namespaces/old/finalize"))
        #expect(finalize.resource == "namespaces" && finalize.name == "old" && finalize.subresource == "finalize" && finalize.namespace == nil)
        #expect(Self.info("GET", "/api/v1/namespaces/old/status")?.subresource == "status")
        let node = try #require(Self.info("PATCH", "/api/v1/nodes/n1/status"))
        #expect(node.resource == "nodes" && node.name == "n1" && node.subresource == "status")
    }

    @Test("non-resource paths and paths that do not parse")
    func others() {
        for path in ["/version", "/healthz", "/api", "/apis", "/api/v1", "/apis/apps/v1", "/openapi/v3"] {
            #expect(Self.info("GET", path)?.isResourceRequest == false, "\(path)")
        }
        #expect(Self.info("GET", "/api/v1/namespaces/default/pods/web/status/extra") == nil)
    }
}

@Suite("Discovery documents")
struct DiscoveryTests {
    @Test("groups, versions, resources with short names, categories and subresources")
    func documents() throws {
        let groups = Discovery.groupList()
        let names = groups["groups"].flatMap { value -> [String]? in
            guard case .array(let list) = value else { return nil }
            return list.compactMap { $0["name"]?.stringValue }
        }
        #expect(names == ["apps", "batch", "coordination.k8s.io", "discovery.k8s.io", "rbac.authorization.k8s.io", "authorization.k8s.io"])
        let core = try #require(Discovery.resourceList(group: "", version: "v1"))
        #expect(core["groupVersion"] == .string("v1"))
        guard case .array(let resources) = core["resources"] else { Issue.record("no resources"); return }
        let pods = try #require(resources.first { $0["name"] == .string("pods") })
        #expect(pods["shortNames"] == .array([.string("po")]) && pods["namespaced"] == .bool(true) && pods["kind"] == .string("Pod"))
        #expect(pods["categories"] == .array([.string("all")]))
        #expect(resources.contains { $0["name"] == .string("pods/status") && $0["verbs"] == .array([.string("get"), .string("patch"), .string("update")]) })
        #expect(resources.contains { $0["name"] == .string("pods/eviction") && $0["group"] == .string("policy") })
        let apps = try #require(Discovery.resourceList(group: "apps", version: "v1"))
        guard case .array(let appsResources) = apps["resources"] else { return }
        #expect(appsResources.contains { $0["name"] == .string("deployments/scale") && $0["kind"] == .string("Scale") })
        #expect(Discovery.resourceList(group: "apps", version: "v2") == nil)
        #expect(Discovery.group("batch")?["preferredVersion"]?["groupVersion"] == .string("batch/v1"))
        #expect(Discovery.group("extensions") == nil)
    }

    @Test("what a user types resolves to the resources it may mean")
    func resolving() {
        #expect(ServedResources.resolve("po").map(\.name) == ["pods"])
        #expect(ServedResources.resolve("Pod").map(\.name) == ["pods"])
        #expect(ServedResources.resolve("deploy").map(\.qualifiedName) == ["deployments.apps"])
        #expect(ServedResources.resolve("deployments.apps").map(\.name) == ["deployments"])
        #expect(ServedResources.resolve("deployments.batch").isEmpty)
        #expect(ServedResources.resolve("svc").first?.keyPrefix == "/registry/services/specs")
        #expect(ServedResources.resolve("no").first?.keyPrefix == "/registry/minions")
    }
}
