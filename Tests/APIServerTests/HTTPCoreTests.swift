import APIServer
import Resources
import Testing

@Suite("Queries, users and the OpenAPI documents, as kube-apiserver reads and serves them")
struct HTTPCoreTests {
    @Test("queries: + is a space, escapes decode, the first of a repeated key wins, bad escapes are dropped")
    func queries() {
        let query = QueryString.parse("labelSelector=app+in+%28db%2Cweb%29&limit=5&limit=6&watch&bad=%zz&plus=%2B")
        #expect(query["labelSelector"] == "app in (db,web)")
        #expect(query["limit"] == "5")
        #expect(query["watch"] == "")
        #expect(query["bad"] == nil)
        #expect(query["plus"] == "+")
        #expect(QueryString.parse("").isEmpty)
    }

    @Test("masters may do anything; others only discovery and health; anonymous only /version and health; 403 in Kubernetes' words")
    func authorization() throws {
        let authorizer = MastersAuthorizer()
        let admin = UserInfo(name: "admin", groups: [UserInfo.mastersGroup])
        let kubelet = UserInfo(name: "system:node:n1", groups: ["system:nodes"])
        #expect(kubelet.groups == ["system:nodes", UserInfo.authenticatedGroup])
        let listPods = try #require(RequestInfo(method: "GET", path: "/api/v1/namespaces/default/pods", watch: false))
        let getNode = try #require(RequestInfo(method: "GET", path: "/api/v1/nodes/n2", watch: false))
        let discovery = try #require(RequestInfo(method: "GET", path: "/apis/apps/v1", watch: false))
        let status = try #require(RequestInfo(method: "PUT", path: "/apis/apps/v1/namespaces/a/deployments/web/status", watch: false))
        #expect(authorizer.allows(admin, listPods) && authorizer.allows(admin, status))
        #expect(!authorizer.allows(kubelet, listPods) && !authorizer.allows(kubelet, getNode))
        #expect(authorizer.allows(kubelet, discovery))
        #expect(!authorizer.allows(kubelet, try #require(RequestInfo(method: "POST", path: "/api", watch: false))))
        #expect(APIError.forbidden(kubelet, listPods).message
            == "pods is forbidden: User \"system:node:n1\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"")
        #expect(APIError.forbidden(kubelet, getNode).message
            == "nodes \"n2\" is forbidden: User \"system:node:n1\" cannot get resource \"nodes\" in API group \"\" at the cluster scope")
        #expect(APIError.forbidden(kubelet, status).message
            == "deployments.apps \"web\" is forbidden: User \"system:node:n1\" cannot update resource \"deployments/status\" in API group \"apps\" in the namespace \"a\"")
        #expect(APIError.forbidden(kubelet, try #require(RequestInfo(method: "GET", path: "/metrics", watch: false))).message
            == "forbidden: User \"system:node:n1\" cannot get path \"/metrics\"")
        #expect(try #require(RequestInfo(method: "GET", path: "/version", watch: false)).isAnonymousAllowed)
        #expect(try #require(RequestInfo(method: "GET", path: "/healthz", watch: false)).isAnonymousAllowed)
        #expect(!discovery.isAnonymousAllowed && !listPods.isAnonymousAllowed)
        #expect(!(try #require(RequestInfo(method: "DELETE", path: "/version", watch: false))).isAnonymousAllowed)
    }

    @Test("OpenAPI v3: an index entry per group version, PATCH with the GVK and fieldValidation, every reference resolvable, no JSON Schema type lists")
    func openAPI() throws {
        let openAPI = OpenAPI(resources: ServedResources.all)
        let paths = try #require(openAPI.root()["paths"]?.objectValue)
        #expect(paths["api/v1"]?["serverRelativeURL"]?.stringValue == "/openapi/v3/api/v1?hash=\(OpenAPI.hash)")
        #expect(paths["apis/apps/v1"] != nil && paths["apis/coordination.k8s.io/v1"] != nil)
        #expect(openAPI.document("apis/example.com/v1") == nil)
        let apps = try #require(openAPI.document("apis/apps/v1"))
        let patch = try #require(apps["paths"]?["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]?["patch"])
        #expect(patch["x-kubernetes-group-version-kind"] == .object(["group": .string("apps"), "version": .string("v1"), "kind": .string("Deployment")]))
        #expect(patch["parameters"]?.arrayValue?.contains { $0["name"] == .string("fieldValidation") && $0["in"] == .string("query") } == true)
        let core = try #require(openAPI.document("api/v1"))
        #expect(core["paths"]?["/api/v1/nodes/{name}"]?["get"] != nil)
        #expect(core["paths"]?["/api/v1/namespaces/{namespace}/nodes/{name}"] == nil)
        let schemas = try #require(core["components"]?["schemas"]?.objectValue)
        #expect(schemas["io.k8s.api.core.v1.Pod"]?["properties"]?["spec"]?["$ref"] == .string("#/components/schemas/io.k8s.api.core.v1.PodSpec"))
        #expect(schemas["io.k8s.api.core.v1.Pod"]?["type"] == .string("object"))
        var references: [String] = []
        func collect(_ value: JSONValue) {
            switch value {
            case .object(let fields):
                if let reference = fields["$ref"]?.stringValue { references.append(reference) }
                if let type = fields["type"], type.arrayValue != nil { Issue.record("a type list remains: \(type)") }
                fields.values.forEach(collect)
            case .array(let items): items.forEach(collect)
            default: break
            }
        }
        for schema in schemas.values { collect(schema) }
        #expect(!references.isEmpty)
        for reference in references {
            #expect(reference.hasPrefix("#/components/schemas/") && schemas[String(reference.dropFirst("#/components/schemas/".count))] != nil, "\(reference)")
        }
        #expect(OpenAPI.definitionName(group: "", version: "v1", kind: "Pod") == "io.k8s.api.core.v1.Pod")
        #expect(OpenAPI.definitionName(group: "apps", version: "v1", kind: "Pod") == nil)
    }
}
