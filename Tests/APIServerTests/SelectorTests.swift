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
