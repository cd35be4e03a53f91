import APIServer
import APIServerHTTP
import ClusterPKI
import Crypto
import Foundation
import Logging
import Node
import Resources
import Store
import Testing
import X509

/// The API server over real HTTPS (Hummingbird, TLS with certificates of a CA made for the
/// test, HTTP/2 and HTTP/1.1) on a member in this process, driven by real clients: kubectl 1.33
/// and curl.
/// One test at a time: each runs a node with its API server and background loops in this
/// process; fourteen at once beside the other suites were seen to hang the whole group about one
/// run in ten (cause not yet found: see docs/testing.md).
@Suite("API server over HTTPS, with kubectl and curl", .serialized)
struct APIHTTPTests {
    static let kubectl = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33"

    /// What a test gets: the server's URL and a directory holding kubeconfigs and PEM files
    /// (`admin.conf`: system:masters; `kubelet.conf`: system:node:n1; `stranger.conf`: a
    /// certificate of another CA), and the handler behind the server.
    struct Setup: Sendable {
        let url: String
        let directory: String
        let handler: APIHandler

        func config(_ name: String) -> String { "\(directory)/\(name).conf" }

        /// kubectl's answer as JSON (`-o json` added unless the arguments choose an output or
        /// `--raw`); null when it is not JSON, after an expectation that kubectl succeeded.
        func json(_ arguments: [String]) async throws -> JSONValue {
            let chosen = arguments.contains("-o") || arguments.contains("--raw") || arguments.contains { $0.hasPrefix("-o=") }
            let result = try await kubectl(chosen ? arguments : arguments + ["-o", "json"])
            #expect(result.status == 0, "\(arguments): \(result.output)")
            return (try? JSONDecoder().decode(JSONValue.self, from: Data(result.output.utf8))) ?? .null
        }

        /// Writes `text` to NAME.yaml in the directory; returns its path.
        func write(_ name: String, _ text: String) throws -> String {
            let path = "\(directory)/\(name).yaml"
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }

        /// Runs kubectl with `config` (admin by default), its discovery cache in the directory.
        func kubectl(_ arguments: [String], config name: String = "admin") async throws -> Command.Result {
            // Bounded, so that a request the server never answers fails the test with its output.
            try await Command.run(["/usr/bin/timeout", "90", APIHTTPTests.kubectl, "--kubeconfig", config(name), "--cache-dir", "\(directory)/cache"] + arguments,
                                  directory: directory)
        }

        /// curl with the CA, and the client certificate of `identity` unless nil.
        func curl(_ arguments: [String], identity: String? = "admin") async throws -> Command.Result {
            var command = ["/usr/bin/curl", "-sS", "--max-time", "90", "--cacert", "\(directory)/ca.crt"]
            if let identity { command += ["--cert", "\(directory)/\(identity).crt", "--key", "\(directory)/\(identity).key"] }
            return try await Command.run(command + arguments, directory: directory)
        }
    }

    static func withServer(_ body: @escaping @Sendable (Setup) async throws -> Void) async throws {
        try await EmbeddedStoreTests.withNode { node in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("api-http-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let ca = try CertificateAuthority.create(clusterName: "test")
            try PEMFiles.write([ca.certificate], to: "\(directory)/ca.crt")
            let serverKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
            let serverCertificate = try ca.issue(profile: .apiServer, commonName: "raftkube-apiserver test", dnsNames: ["localhost"],
                                                 ipAddresses: ["127.0.0.1"], publicKey: serverKey.publicKey)
            let identity = TLSIdentity(trust: ClusterTrust(ca: ca.certificate), certificateChain: [serverCertificate], privateKey: serverKey)
            let authorizer = RBACAuthorizer()
            let handler = APIHandler(storage: ObjectStorage(store: node.store), authorizer: authorizer)
            try await BootstrapObjects.ensure(handler.storage)
            let following = Task { await authorizer.run(handler.storage, retry: .milliseconds(100)) }
            defer { following.cancel() }
            let cleaning = Task { await NamespaceFinalizer(handler: handler).run(every: .milliseconds(200)) }
            defer { cleaning.cancel() }
            let (ports, listening) = AsyncStream.makeStream(of: Int.self)
            let server = try APIHTTPServer(.init(host: "127.0.0.1", port: 0, identity: identity), handler: handler, logger: EmbeddedStoreTests.quiet) { port in
                listening.yield(port)
            }
            let serving = Task { try await server.run() }
            defer { serving.cancel() }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { throw NodeError("the API server did not listen") }
            let endpoints = Task { await KubernetesService(storage: handler.storage, address: "127.0.0.1", port: port).run(every: .milliseconds(500)) }
            defer { endpoints.cancel() }
            let url = "https://127.0.0.1:\(port)"
            let stranger = try CertificateAuthority.create(clusterName: "other")
            for (name, authority, organization, commonName) in [("admin", ca, UserInfo.mastersGroup, "admin"),
                                                                 ("kubelet", ca, CertificateAuthority.nodeOrganization, "system:node:n1"),
                                                                 ("stranger", stranger, UserInfo.mastersGroup, "admin"),
                                                                 ("alice", ca, "users", "alice"), ("bob", ca, "devs", "bob")] {
                let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
                let certificate = try authority.issue(profile: .client(organization: organization), commonName: commonName, publicKey: key.publicKey)
                try PEMFiles.write([certificate], to: "\(directory)/\(name).crt")
                try PEMFiles.write(key, to: "\(directory)/\(name).key")
                try AdminConfig.kubeconfig(clusterName: "test", server: url, ca: ca.certificate, certificate: certificate, key: key)
                    .write(toFile: "\(directory)/\(name).conf", atomically: true, encoding: .utf8)
            }
            try await body(Setup(url: url, directory: directory, handler: handler))
        }
    }

    static let pod = """
        apiVersion: v1
        kind: Pod
        metadata:
          name: web
          labels:
            app: web
        spec:
          containers:
          - name: web
            image: nginx:1.27
        """

    @Test("kubectl 1.33: version, api-resources, api-versions, get namespaces, create, get in every output, selectors, explain, delete (waiting on a watch), not found")
    func kubectlRoundTrip() async throws {
        try await Self.withServer { setup in
            let version = try await setup.kubectl(["version", "-o", "json"])
            #expect(version.status == 0, "\(version.output)")
            #expect(version.output.contains("\"serverVersion\""), "\(version.output)")

            let resources = try await setup.kubectl(["api-resources"])
            #expect(resources.status == 0, "\(resources.output)")
            for line in ["pods", "deployments", "leases"] {
                #expect(resources.output.split(separator: "\n").contains { $0.hasPrefix(line + " ") }, "\(line) missing from:\n\(resources.output)")
            }
            #expect(resources.output.contains("apps/v1"))
            let versions = try await setup.kubectl(["api-versions"])
            #expect(versions.output.split(separator: "\n").contains("apps/v1"), "\(versions.output)")
            #expect(versions.output.split(separator: "\n").contains("v1"), "\(versions.output)")

            let namespaces = try await setup.kubectl(["get", "namespaces", "-o", "name"])
            #expect(namespaces.status == 0, "\(namespaces.output)")
            #expect(Set(namespaces.output.split(separator: "\n").map(String.init))
                .isSuperset(of: ["namespace/default", "namespace/kube-system", "namespace/kube-public", "namespace/kube-node-lease"]), "\(namespaces.output)")

            try Self.pod.write(toFile: "\(setup.directory)/pod.yaml", atomically: true, encoding: .utf8)
            let created = try await setup.kubectl(["create", "-f", "pod.yaml"])
            #expect(created.status == 0 && created.output.contains("pod/web created"), "\(created.output)")
            let again = try await setup.kubectl(["create", "-f", "pod.yaml"])
            #expect(again.status != 0 && again.output.contains("AlreadyExists"), "\(again.output)")

            let json = try await setup.kubectl(["get", "pods", "-o", "json"])
            let list = try JSONDecoder().decode(JSONValue.self, from: Data(json.output.utf8))
            // kubectl prints a list it got as kind List.
            #expect(list["kind"] == .string("List"))
            #expect(list["items"]?.arrayValue?.first?["metadata"]?["name"] == .string("web"))
            let yaml = try await setup.kubectl(["get", "pod", "web", "-o", "yaml"])
            #expect(yaml.output.contains("name: web") && yaml.output.contains("uid: "), "\(yaml.output)")
            let selected = try await setup.kubectl(["get", "pods", "-l", "app=web", "-o", "name"])
            #expect(selected.output.trimmingCharacters(in: .whitespacesAndNewlines) == "pod/web", "\(selected.output)")
            let none = try await setup.kubectl(["get", "pods", "-l", "app in (db)", "-o", "name"])
            #expect(none.status == 0 && !none.output.contains("pod/web"), "\(none.output)")
            // Tables from the server: kubectl prints Kubernetes' columns.
            let table = try await setup.kubectl(["get", "pods"])
            let header = table.output.split(separator: "\n").first.map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }
            #expect(header == "NAME READY STATUS RESTARTS AGE", "\(table.output)")
            #expect(table.output.contains("web") && table.output.contains("0/1") && table.output.contains("Pending"), "\(table.output)")
            let wide = try await setup.kubectl(["get", "pods", "-o", "wide"])
            #expect(wide.output.split(separator: "\n").first?.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
                == "NAME READY STATUS RESTARTS AGE IP NODE NOMINATED NODE READINESS GATES", "\(wide.output)")
            let namespaceTable = try await setup.kubectl(["get", "namespace", "default"])
            #expect(namespaceTable.output.contains("STATUS") && namespaceTable.output.contains("Active"), "\(namespaceTable.output)")
            async let watching = setup.kubectl(["get", "pods", "-w", "--request-timeout=4s"])
            try await Task.sleep(for: .milliseconds(1_500))
            try Self.pod.replacingOccurrences(of: "name: web", with: "name: second").replacingOccurrences(of: "app: web", with: "app: batch").write(toFile: "\(setup.directory)/second.yaml", atomically: true, encoding: .utf8)
            _ = try await setup.kubectl(["create", "-f", "second.yaml"])
            // `get -w`: the table once with its header, then a row per change.
            let watched = try await watching
            let rows = watched.output.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
            #expect(rows.first == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], "\(watched.output)")
            #expect(rows.filter { $0.first == "NAME" }.count == 1, "\(watched.output)")
            #expect(rows.contains { $0.first == "web" } && rows.contains { $0.first == "second" }, "\(watched.output)")
            // explain reads the served OpenAPI v3 document of v1.
            let explain = try await setup.kubectl(["explain", "pod.spec.containers"])
            #expect(explain.status == 0 && explain.output.contains("FIELD: containers <[]Container>") && explain.output.contains("imagePullPolicy"),
                    "\(explain.output.prefix(600))")
            let all = try await setup.kubectl(["get", "pods", "-A", "-o", "name"])
            #expect(all.output.contains("pod/web"), "\(all.output)")

            let deleted = try await setup.kubectl(["delete", "pod", "web", "--timeout=30s"])
            #expect(deleted.status == 0 && deleted.output.contains("pod \"web\" deleted"), "\(deleted.output)")
            let gone = try await setup.kubectl(["get", "pod", "web"])
            #expect(gone.status != 0 && gone.output.contains("Error from server (NotFound): pods \"web\" not found"), "\(gone.output)")
        }
    }

    static let deployment = """
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: web
          labels:
            app: web
        spec:
          replicas: 2
          selector:
            matchLabels:
              app: web
          template:
            metadata:
              labels:
                app: web
            spec:
              containers:
              - name: web
                image: nginx:1.27
                ports:
                - containerPort: 80
              - name: sidecar
                image: busybox:1.36
        """

    @Test("kubectl apply (create, unchanged, configured), patch of each type, label, annotate")
    func applyAndPatch() async throws {
        try await Self.withServer { setup in
            let file = "\(setup.directory)/deployment.yaml"
            try Self.deployment.write(toFile: file, atomically: true, encoding: .utf8)
            let first = try await setup.kubectl(["apply", "-f", file])
            #expect(first.status == 0 && first.output.contains("deployment.apps/web created"), "\(first.output)")
            let second = try await setup.kubectl(["apply", "-f", file])
            #expect(second.status == 0 && second.output.contains("deployment.apps/web unchanged"), "\(second.output)")
            try Self.deployment.replacingOccurrences(of: "replicas: 2", with: "replicas: 3").replacingOccurrences(of: "busybox:1.36", with: "busybox:1.37")
                .write(toFile: file, atomically: true, encoding: .utf8)
            let edited = try await setup.kubectl(["apply", "-f", file])
            #expect(edited.status == 0 && edited.output.contains("deployment.apps/web configured"), "\(edited.output)")
            var object = try await setup.json(["get", "deployment", "web"])
            #expect(object["spec"]?["replicas"] == .integer(3))
            #expect(object["spec"]?["template"]?["spec"]?["containers"]?.arrayValue?.compactMap { $0["image"]?.stringValue } == ["nginx:1.27", "busybox:1.37"])
            #expect(object["metadata"]?["generation"] == .integer(2), "\(object["metadata"] ?? .null)")

            // Strategic (kubectl's default): containers merge by name, the other one stays.
            let strategic = try await setup.kubectl(["patch", "deployment", "web", "-p", #"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.28"}]}}}}"#])
            #expect(strategic.status == 0 && strategic.output.contains("patched"), "\(strategic.output)")
            object = try await setup.json(["get", "deployment", "web"])
            #expect(object["spec"]?["template"]?["spec"]?["containers"]?.arrayValue?.compactMap { $0["image"]?.stringValue } == ["nginx:1.28", "busybox:1.37"])
            // Merge patch: a list is replaced whole.
            let merge = try await setup.kubectl(["patch", "deployment", "web", "--type", "merge", "-p",
                                                 #"{"spec":{"template":{"spec":{"containers":[{"name":"only","image":"nginx:1.29"}]}}}}"#])
            #expect(merge.status == 0, "\(merge.output)")
            object = try await setup.json(["get", "deployment", "web"])
            #expect(object["spec"]?["template"]?["spec"]?["containers"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["only"])
            // JSON patch, and a failing test operation (422) that changes nothing.
            let jsonPatch = try await setup.kubectl(["patch", "deployment", "web", "--type", "json", "-p",
                                                     #"[{"op":"replace","path":"/spec/replicas","value":5},{"op":"add","path":"/metadata/labels/tier","value":"front"}]"#])
            #expect(jsonPatch.status == 0, "\(jsonPatch.output)")
            let failing = try await setup.kubectl(["patch", "deployment", "web", "--type", "json", "-p",
                                                   #"[{"op":"test","path":"/spec/replicas","value":9},{"op":"replace","path":"/spec/replicas","value":1}]"#])
            #expect(failing.status != 0, "\(failing.output)")
            let missing = try await setup.kubectl(["patch", "deployment", "web", "--type", "json", "-p", #"[{"op":"remove","path":"/spec/nothing"}]"#])
            #expect(missing.status != 0 && missing.output.contains("/spec/nothing"), "\(missing.output)")
            object = try await setup.json(["get", "deployment", "web"])
            #expect(object["spec"]?["replicas"] == .integer(5) && object["metadata"]?["labels"]?["tier"] == .string("front"))

            let label = try await setup.kubectl(["label", "deployment", "web", "team=blue"])
            #expect(label.status == 0 && label.output.contains("labeled"), "\(label.output)")
            let annotate = try await setup.kubectl(["annotate", "deployment", "web", "note=hello"])
            #expect(annotate.status == 0 && annotate.output.contains("annotated"), "\(annotate.output)")
            let unlabel = try await setup.kubectl(["label", "deployment", "web", "tier-"])
            #expect(unlabel.status == 0, "\(unlabel.output)")
            object = try await setup.json(["get", "deployment", "web"])
            #expect(object["metadata"]?["labels"]?["team"] == .string("blue") && object["metadata"]?["labels"]?["tier"] == nil)
            #expect(object["metadata"]?["annotations"]?["note"] == .string("hello"))
            let renamed = try await setup.kubectl(["patch", "deployment", "web", "--type", "merge", "-p", #"{"metadata":{"name":"other"}}"#])
            #expect(renamed.status != 0, "\(renamed.output)")
            let notFound = try await setup.kubectl(["patch", "deployment", "nothing", "--type", "merge", "-p", #"{"spec":{}}"#])
            #expect(notFound.output.contains("NotFound"), "\(notFound.output)")
        }
    }

    @Test("a watch streams JSON lines over HTTP/1.1 and HTTP/2, filtered by its selector, and ends at timeoutSeconds")
    func watchStreams() async throws {
        try await Self.withServer { setup in
            for (index, version) in ["--http1.1", "--http2"].enumerated() {
                let path = "/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=3&labelSelector=app%3Dweb"
                let started = ContinuousClock.now
                async let watched = setup.curl([version, setup.url + path])
                try await Task.sleep(for: .milliseconds(800))
                for (name, app) in [("w\(index)", "web"), ("d\(index)", "db")] {
                    let pod: JSONValue = .object(["apiVersion": .string("v1"), "kind": .string("Pod"),
                                                  "metadata": .object(["name": .string(name), "labels": .object(["app": .string(app)])]),
                                                  "spec": .object(["containers": .array([.object(["name": .string("c"), "image": .string("busybox")])])])])
                    let answer = await setup.handler.handle(APIRequest(method: "POST", path: "/api/v1/namespaces/default/pods", body: pod.jsonBytes),
                                                            as: UserInfo(name: "admin", groups: [UserInfo.mastersGroup]))
                    guard case .object(201, _, _) = answer else { Issue.record("create failed: \(answer)"); return }
                }
                let result = try await watched
                let elapsed = ContinuousClock.now - started
                #expect(result.status == 0, "\(result.output)")
                let events = result.output.split(separator: "\n").compactMap { try? JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }
                // The earlier rounds' web pods are there from the start (ADDED), then this one's.
                let names = events.compactMap { $0["object"]?["metadata"]?["name"]?.stringValue }
                #expect(names == (0...index).map { "w\($0)" }, "\(version): \(result.output)")
                #expect(events.allSatisfy { $0["type"] == .string("ADDED") && $0["object"]?["kind"] == .string("Pod") })
                #expect(elapsed >= .seconds(2.5) && elapsed < .seconds(15), "\(version): the watch ended after \(elapsed)")
            }
        }
    }

    @Test("kubectl's typed commands send protobuf bodies: create namespace, configmap, secret, deployment, service, job; auth can-i for the admin and a kubelet")
    func protobufBodies() async throws {
        try await Self.withServer { setup in
            // -v=8 prints the request's headers: the body goes as protobuf.
            let namespace = try await setup.kubectl(["create", "namespace", "shop", "-v=8"])
            #expect(namespace.status == 0 && namespace.output.contains("namespace/shop created"), "\(namespace.output.suffix(2000))")
            #expect(namespace.output.contains("Content-Type: application/vnd.kubernetes.protobuf"), "\(namespace.output.suffix(3000))")

            let configMap = try await setup.kubectl(["create", "configmap", "settings", "-n", "shop", "--from-literal=color=blue", "--from-literal=size=10"])
            #expect(configMap.status == 0, "\(configMap.output)")
            let storedMap = try await setup.json(["get", "configmap", "settings", "-n", "shop"])
            #expect(storedMap["data"] == .object(["color": "blue", "size": "10"]))
            #expect(storedMap["metadata"]?["uid"]?.stringValue?.isEmpty == false)
            // Empty strings of the protobuf body are not stored as fields.
            #expect(storedMap["metadata"]?["generateName"] == nil && storedMap["metadata"]?["selfLink"] == nil)

            let secret = try await setup.kubectl(["create", "secret", "generic", "token", "-n", "shop", "--from-literal=password=s3cr3t"])
            #expect(secret.status == 0, "\(secret.output)")
            let storedSecret = try await setup.json(["get", "secret", "token", "-n", "shop"])
            #expect(storedSecret["data"]?["password"] == .string(Data("s3cr3t".utf8).base64EncodedString()))

            let deployment = try await setup.kubectl(["create", "deployment", "web", "-n", "shop", "--image=nginx:1.27", "--replicas=0", "--port=80"])
            #expect(deployment.status == 0, "\(deployment.output)")
            let storedDeployment = try await setup.json(["get", "deployment", "web", "-n", "shop"])
            // replicas 0 is a pointer's zero: kept, not dropped as empty.
            #expect(storedDeployment["spec"]?["replicas"] == .integer(0), "\(storedDeployment["spec"] ?? .null)")
            let container = storedDeployment["spec"]?["template"]?["spec"]?["containers"]?.arrayValue?.first
            #expect(container?["image"] == "nginx:1.27" && container?["ports"]?.arrayValue?.first?["containerPort"] == .integer(80))
            #expect(storedDeployment["spec"]?["selector"]?["matchLabels"] == .object(["app": "web"]))

            let service = try await setup.kubectl(["create", "service", "clusterip", "web", "-n", "shop", "--tcp=80:8080"])
            #expect(service.status == 0, "\(service.output)")
            let storedService = try await setup.json(["get", "service", "web", "-n", "shop"])
            let port = storedService["spec"]?["ports"]?.arrayValue?.first
            #expect(port?["port"] == .integer(80) && port?["targetPort"] == .integer(8080), "\(port ?? .null)")

            let job = try await setup.kubectl(["create", "job", "once", "-n", "shop", "--image=busybox:1.36", "--", "echo", "hi"])
            #expect(job.status == 0, "\(job.output)")
            let storedJob = try await setup.json(["get", "job", "once", "-n", "shop"])
            #expect(storedJob["spec"]?["template"]?["spec"]?["containers"]?.arrayValue?.first?["command"] == .array(["echo", "hi"]))

            let listed = try await setup.kubectl(["get", "all", "-n", "shop", "-o", "name"])
            #expect(listed.output.contains("deployment.apps/web") && listed.output.contains("service/web") && listed.output.contains("job.batch/once"), "\(listed.output)")

            // auth can-i: a SelfSubjectAccessReview (protobuf too), answered by the authorizer.
            let adminMay = try await setup.kubectl(["auth", "can-i", "delete", "pods", "-n", "shop"])
            #expect(adminMay.status == 0 && adminMay.output.trimmingCharacters(in: .whitespacesAndNewlines) == "yes", "\(adminMay.output)")
            let kubeletMay = try await setup.kubectl(["auth", "can-i", "list", "secrets", "-A"], config: "kubelet")
            #expect(kubeletMay.status != 0 && kubeletMay.output.hasPrefix("no"), "\(kubeletMay.output)")
            let kubeletVersion = try await setup.kubectl(["auth", "can-i", "get", "/version"], config: "kubelet")
            #expect(kubeletVersion.status == 0 && kubeletVersion.output.hasPrefix("yes"), "\(kubeletVersion.output)")
            // The review is not stored.
            let reviews = try await setup.kubectl(["get", "--raw", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"])
            #expect(reviews.status != 0, "\(reviews.output)")

            // Protobuf that does not decode: a 400 naming the problem, nothing stored.
            let garbage: [UInt8] = [0x6b, 0x38, 0x73, 0x00, 0x0a, 0x40, 0x01]
            try Data(garbage).write(to: URL(fileURLWithPath: "\(setup.directory)/garbage.pb"))
            let bad = try await setup.curl(["-w", "\\n%{http_code}", "-H", "Content-Type: application/vnd.kubernetes.protobuf", "--data-binary", "@garbage.pb",
                                            setup.url + "/api/v1/namespaces/shop/configmaps"])
            #expect(bad.output.hasSuffix("\n400") && bad.output.contains("does not decode as application/vnd.kubernetes.protobuf"), "\(bad.output)")
        }
    }

    @Test("RBAC: a Role and RoleBinding let a user read pods in one namespace only; a ClusterRoleBinding to view for a group; no escalation through roles or bindings; revoked by deleting the binding")
    func rbac() async throws {
        try await Self.withServer { setup in
            /// Repeats `arguments` until kubectl succeeds (the authorizer learns of a change by a watch).
            func eventually(_ arguments: [String], config: String, succeeds: Bool = true) async throws -> Command.Result {
                var result = try await setup.kubectl(arguments, config: config)
                for _ in 0..<50 where (result.status == 0) != succeeds {
                    try await Task.sleep(for: .milliseconds(100))
                    result = try await setup.kubectl(arguments, config: config)
                }
                return result
            }
            let bootstrap = try await setup.kubectl(["get", "clusterroles", "-o", "name"])
            for role in ["cluster-admin", "admin", "edit", "view", "system:discovery", "system:basic-user"] {
                #expect(bootstrap.output.contains("clusterrole.rbac.authorization.k8s.io/\(role)\n"), "\(role): \(bootstrap.output)")
            }
            let before = try await setup.kubectl(["get", "pods", "-n", "default"], config: "alice")
            #expect(before.status != 0 && before.output.contains("User \"alice\" cannot list resource \"pods\""), "\(before.output)")

            let role = try await setup.kubectl(["create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods", "-n", "default"])
            #expect(role.status == 0, "\(role.output)")
            let binding = try await setup.kubectl(["create", "rolebinding", "alice-reads", "--role=pod-reader", "--user=alice", "-n", "default"])
            #expect(binding.status == 0, "\(binding.output)")
            let after = try await eventually(["get", "pods", "-n", "default"], config: "alice")
            #expect(after.status == 0, "\(after.output)")
            let elsewhere = try await setup.kubectl(["get", "pods", "-n", "kube-system"], config: "alice")
            #expect(elsewhere.status != 0 && elsewhere.output.contains("in the namespace \"kube-system\""), "\(elsewhere.output)")
            let mayList = try await setup.kubectl(["auth", "can-i", "list", "pods", "-n", "default"], config: "alice")
            #expect(mayList.output.hasPrefix("yes"), "\(mayList.output)")
            let list = try await setup.kubectl(["auth", "can-i", "--list", "-n", "default"], config: "alice")
            #expect(list.status == 0 && list.output.contains("pods") && list.output.contains("[get list watch]")
                    && list.output.contains("selfsubjectaccessreviews.authorization.k8s.io"), "\(list.output)")
            let mayDelete = try await setup.kubectl(["auth", "can-i", "delete", "pods", "-n", "default"], config: "alice")
            #expect(mayDelete.status != 0 && mayDelete.output.hasPrefix("no"), "\(mayDelete.output)")

            // A group bound to the view ClusterRole: reads deployments everywhere, never secrets.
            let view = try await setup.kubectl(["create", "clusterrolebinding", "devs-view", "--clusterrole=view", "--group=devs"])
            #expect(view.status == 0, "\(view.output)")
            let bobReads = try await eventually(["get", "deployments", "-A"], config: "bob")
            #expect(bobReads.status == 0, "\(bobReads.output)")
            let bobSecrets = try await setup.kubectl(["get", "secrets", "-n", "default"], config: "bob")
            #expect(bobSecrets.status != 0 && bobSecrets.output.contains("Forbidden"), "\(bobSecrets.output)")
            let bobWrites = try await setup.kubectl(["create", "configmap", "x", "-n", "default"], config: "bob")
            #expect(bobWrites.status != 0 && bobWrites.output.contains("cannot create resource \"configmaps\""), "\(bobWrites.output)")

            // Alice may manage roles and bindings in default, but only grant what she holds.
            _ = try await setup.kubectl(["create", "role", "rbac-manager", "--verb=create,update,patch,get,list", "--resource=roles,rolebindings", "-n", "default"])
            _ = try await setup.kubectl(["create", "rolebinding", "alice-manages", "--role=rbac-manager", "--user=alice", "-n", "default"])
            let mayCreateRoles = try await eventually(["auth", "can-i", "create", "roles", "-n", "default"], config: "alice")
            #expect(mayCreateRoles.status == 0, "\(mayCreateRoles.output)")
            let secretsRole = try await setup.kubectl(["create", "role", "secret-reader", "--verb=get", "--resource=secrets", "-n", "default"], config: "alice")
            #expect(secretsRole.status != 0 && secretsRole.output.contains("is attempting to grant RBAC permissions not currently held")
                    && secretsRole.output.contains("Resources:[\"secrets\"]"), "\(secretsRole.output)")
            let toAdmin = try await setup.kubectl(["create", "rolebinding", "alice-admin", "--clusterrole=admin", "--user=alice", "-n", "default"], config: "alice")
            #expect(toAdmin.status != 0 && toAdmin.output.contains("is attempting to grant RBAC permissions not currently held"), "\(toAdmin.output)")
            let held = try await setup.kubectl(["create", "role", "pod-lister", "--verb=list", "--resource=pods", "-n", "default"], config: "alice")
            #expect(held.status == 0, "\(held.output)")
            let clusterWide = try await setup.kubectl(["create", "clusterrolebinding", "alice-everything", "--clusterrole=cluster-admin", "--user=alice"], config: "alice")
            #expect(clusterWide.status != 0 && clusterWide.output.contains("User \"alice\" cannot create resource \"clusterrolebindings\""), "\(clusterWide.output)")

            // Revoked: the binding deleted, the access goes.
            let revoke = try await setup.kubectl(["delete", "rolebinding", "alice-reads", "-n", "default"])
            #expect(revoke.status == 0, "\(revoke.output)")
            let revoked = try await eventually(["get", "pods", "-n", "default"], config: "alice", succeeds: false)
            #expect(revoked.status != 0 && revoked.output.contains("Forbidden"), "\(revoked.output)")
        }
    }

    @Test("subresources: scale (kubectl scale, the Scale's selector, a negative count refused), status (only status changes through it, the main resource keeps it), a new pod Pending with its QoS class, pods/binding once, pods/eviction, namespaces/finalize")
    func subresources() async throws {
        try await Self.withServer { setup in
            let file = "\(setup.directory)/deployment.yaml"
            try Self.deployment.write(toFile: file, atomically: true, encoding: .utf8)
            #expect(try await setup.kubectl(["apply", "-f", file]).status == 0)
            let scaled = try await setup.kubectl(["scale", "deployment", "web", "--replicas=4"])
            #expect(scaled.status == 0 && scaled.output.contains("deployment.apps/web scaled"), "\(scaled.output)")
            var deployment = try await setup.json(["get", "deployment", "web", "-o", "json"])
            #expect(deployment["spec"]?["replicas"] == .integer(4) && deployment["metadata"]?["generation"] == .integer(2), "\(deployment)")
            let scale = try await setup.json(["get", "--raw", "/apis/apps/v1/namespaces/default/deployments/web/scale"])
            #expect(scale["kind"] == "Scale" && scale["spec"]?["replicas"] == .integer(4) && scale["status"]?["selector"] == "app=web", "\(scale)")
            let negative = try await setup.kubectl(["scale", "deployment", "web", "--replicas=-1"])
            #expect(negative.status != 0, "\(negative.output)")

            // Status through its subresource; spec untouched, generation unchanged.
            let status = try await setup.kubectl(["patch", "deployment", "web", "--subresource=status", "--type=merge",
                                                  "-p", #"{"status":{"replicas":4,"readyReplicas":3},"spec":{"replicas":9}}"#])
            #expect(status.status == 0, "\(status.output)")
            deployment = try await setup.json(["get", "deployment", "web", "-o", "json"])
            #expect(deployment["status"]?["readyReplicas"] == .integer(3) && deployment["spec"]?["replicas"] == .integer(4), "\(deployment)")
            #expect(deployment["metadata"]?["generation"] == .integer(2))
            let ready = try await setup.kubectl(["get", "deployment", "web"])
            #expect(ready.output.contains("3/4"), "\(ready.output)")
            // The resource itself cannot change its status.
            let mainPatch = try await setup.kubectl(["patch", "deployment", "web", "--type=merge", "-p", #"{"status":{"readyReplicas":0}}"#])
            #expect(mainPatch.status == 0, "\(mainPatch.output)")
            deployment = try await setup.json(["get", "deployment", "web", "-o", "json"])
            #expect(deployment["status"]?["readyReplicas"] == .integer(3), "\(deployment)")

            // A pod's status on create is the server's: Pending, with its QoS class.
            try """
                apiVersion: v1
                kind: Pod
                metadata: {name: sized}
                spec:
                  containers:
                  - name: c
                    image: busybox
                    resources: {limits: {cpu: 500m, memory: 64Mi}}
                status: {phase: Running}
                """.write(toFile: "\(setup.directory)/pod.yaml", atomically: true, encoding: .utf8)
            #expect(try await setup.kubectl(["create", "-f", "\(setup.directory)/pod.yaml"]).status == 0)
            let pod = try await setup.json(["get", "pod", "sized", "-o", "json"])
            #expect(pod["status"] == .object(["phase": "Pending", "qosClass": "Guaranteed"]), "\(pod["status"] ?? .null)")

            // Binding: assigns the pod once.
            let base = setup.url + "/api/v1/namespaces/default/pods/sized"
            let binding = #"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"sized"},"target":{"kind":"Node","name":"n1"}}"#
            let bound = try await setup.curl(["-w", "\\n%{http_code}", "-H", "Content-Type: application/json", "--data-binary", binding, base + "/binding"])
            #expect(bound.output.hasSuffix("\n201"), "\(bound.output)")
            let placed = try await setup.json(["get", "pod", "sized", "-o", "json"])
            #expect(placed["spec"]?["nodeName"] == "n1", "\(placed)")
            #expect(placed["status"]?["conditions"]?.arrayValue?.contains { $0["type"] == "PodScheduled" && $0["status"] == "True" } == true)
            let again = try await setup.curl(["-w", "\\n%{http_code}", "-H", "Content-Type: application/json", "--data-binary", binding, base + "/binding"])
            #expect(again.output.hasSuffix("\n409") && again.output.contains("is already assigned to node \\\"n1\\\""), "\(again.output)")
            let noTarget = try await setup.curl(["-w", "\\n%{http_code}", "-H", "Content-Type: application/json", "--data-binary",
                                                 #"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"sized"},"target":{}}"#, base + "/binding"])
            #expect(noTarget.output.hasSuffix("\n422") && noTarget.output.contains("target.name"), "\(noTarget.output)")

            // Eviction deletes it.
            let evicted = try await setup.curl(["-w", "\\n%{http_code}", "-H", "Content-Type: application/json", "--data-binary",
                                                #"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"sized"}}"#, base + "/eviction"])
            #expect(evicted.output.hasSuffix("\n201"), "\(evicted.output)")
            let gone = try await setup.kubectl(["get", "pod", "sized"])
            #expect(gone.status != 0 && gone.output.contains("NotFound"), "\(gone.output)")

            // An unknown subresource is 404; finalize changes only spec.finalizers.
            let unknown = try await setup.kubectl(["get", "--raw", "/api/v1/namespaces/default/pods/sized/frobnicate"])
            #expect(unknown.status != 0 && unknown.output.contains("NotFound"), "\(unknown.output)")
            #expect(try await setup.kubectl(["create", "namespace", "doomed"]).status == 0)
            let finalize = try await setup.curl(["-w", "\\n%{http_code}", "-X", "PUT", "-H", "Content-Type: application/json", "--data-binary",
                                                 #"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"doomed","labels":{"x":"y"}},"spec":{"finalizers":[]}}"#,
                                                 setup.url + "/api/v1/namespaces/doomed/finalize"])
            #expect(finalize.output.hasSuffix("\n200"), "\(finalize.output)")
            let namespace = try await setup.json(["get", "namespace", "doomed", "-o", "json"])
            #expect(namespace["spec"]?["finalizers"] == .array([]) && namespace["metadata"]?["labels"]?["x"] == nil, "\(namespace)")
        }
    }

    @Test("a kubelet's identity (Node authorizer + NodeRestriction): its own Node, Lease, pods' status and mirror pods; nothing of another node's; no secrets")
    func kubeletIdentity() async throws {
        try await Self.withServer { setup in
            func write(_ name: String, _ text: String) throws -> String { try setup.write(name, text) }
            func node(_ name: String) throws -> String { try write("node-\(name)", "apiVersion: v1\nkind: Node\nmetadata: {name: \(name)}\n") }
            func pod(_ name: String, on node: String, mirror: Bool = false) throws -> String {
                try write("pod-\(name)", """
                    apiVersion: v1
                    kind: Pod
                    metadata:
                      name: \(name)
                      annotations: {\(mirror ? "kubernetes.io/config.mirror: abc" : "note: plain")}
                    spec:
                      nodeName: \(node)
                      containers: [{name: c, image: busybox}]
                    """)
            }
            func lease(_ name: String, namespace: String) throws -> String {
                try write("lease-\(name)-\(namespace)", "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: \(name), namespace: \(namespace)}\nspec: {holderIdentity: \(name)}\n")
            }
            #expect(try await setup.kubectl(["create", "-f", try node("n2")]).status == 0)
            #expect(try await setup.kubectl(["create", "-f", try pod("p1", on: "n1")]).status == 0)
            #expect(try await setup.kubectl(["create", "-f", try pod("p2", on: "n2")]).status == 0)

            let own = try await setup.kubectl(["create", "-f", try node("n1")], config: "kubelet")
            #expect(own.status == 0, "\(own.output)")
            let other = try await setup.kubectl(["create", "-f", try node("n3")], config: "kubelet")
            #expect(other.status != 0 && other.output.contains("node \"n1\" is not allowed to modify node \"n3\""), "\(other.output)")
            let ownStatus = try await setup.kubectl(["patch", "node", "n1", "--subresource=status", "--type=merge", "-p", #"{"status":{"phase":"Running"}}"#], config: "kubelet")
            #expect(ownStatus.status == 0, "\(ownStatus.output)")
            let otherStatus = try await setup.kubectl(["patch", "node", "n2", "--subresource=status", "--type=merge", "-p", #"{"status":{"phase":"Running"}}"#], config: "kubelet")
            #expect(otherStatus.status != 0 && otherStatus.output.contains("not allowed to modify node \"n2\""), "\(otherStatus.output)")
            let deleteOther = try await setup.kubectl(["delete", "node", "n2"], config: "kubelet")
            #expect(deleteOther.status != 0 && deleteOther.output.contains("not allowed to modify node \"n2\""), "\(deleteOther.output)")
            let readsNodes = try await setup.kubectl(["get", "nodes", "-o", "name"], config: "kubelet")
            #expect(readsNodes.status == 0 && readsNodes.output.contains("node/n2"), "\(readsNodes.output)")

            let ownLease = try await setup.kubectl(["create", "-f", try lease("n1", namespace: "kube-node-lease")], config: "kubelet")
            #expect(ownLease.status == 0, "\(ownLease.output)")
            let otherLease = try await setup.kubectl(["create", "-f", try lease("n2", namespace: "kube-node-lease")], config: "kubelet")
            #expect(otherLease.status != 0 && otherLease.output.contains("can only access node lease with the same name as the requesting node"), "\(otherLease.output)")
            let leaseElsewhere = try await setup.kubectl(["create", "-f", try lease("n1", namespace: "default")], config: "kubelet")
            #expect(leaseElsewhere.status != 0 && leaseElsewhere.output.contains("kube-node-lease"), "\(leaseElsewhere.output)")

            let podStatus = try await setup.kubectl(["patch", "pod", "p1", "--subresource=status", "--type=merge", "-p", #"{"status":{"phase":"Running"}}"#], config: "kubelet")
            #expect(podStatus.status == 0, "\(podStatus.output)")
            let otherPodStatus = try await setup.kubectl(["patch", "pod", "p2", "--subresource=status", "--type=merge", "-p", #"{"status":{"phase":"Failed"}}"#], config: "kubelet")
            #expect(otherPodStatus.status != 0 && otherPodStatus.output.contains("can only update pod status for pods with spec.nodeName set to itself"), "\(otherPodStatus.output)")
            let podSpec = try await setup.kubectl(["label", "pod", "p1", "x=y"], config: "kubelet")
            #expect(podSpec.status != 0 && podSpec.output.contains("cannot patch resource \"pods\""), "\(podSpec.output)")
            let deleteOtherPod = try await setup.kubectl(["delete", "pod", "p2", "--wait=false"], config: "kubelet")
            #expect(deleteOtherPod.status != 0 && deleteOtherPod.output.contains("can only delete pods with spec.nodeName set to itself"), "\(deleteOtherPod.output)")
            let deleteOwnPod = try await setup.kubectl(["delete", "pod", "p1", "--grace-period=0", "--force"], config: "kubelet")
            #expect(deleteOwnPod.status == 0, "\(deleteOwnPod.output)")

            let plainPod = try await setup.kubectl(["create", "-f", try pod("p3", on: "n1")], config: "kubelet")
            #expect(plainPod.status != 0 && plainPod.output.contains("can only create mirror pods"), "\(plainPod.output)")
            let mirror = try await setup.kubectl(["create", "-f", try pod("p4", on: "n1", mirror: true)], config: "kubelet")
            #expect(mirror.status == 0, "\(mirror.output)")
            let mirrorElsewhere = try await setup.kubectl(["create", "-f", try pod("p5", on: "n2", mirror: true)], config: "kubelet")
            #expect(mirrorElsewhere.status != 0 && mirrorElsewhere.output.contains("can only create pods with spec.nodeName set to itself"), "\(mirrorElsewhere.output)")

            let event = try await setup.kubectl(["create", "-f", try write("event", """
                apiVersion: v1
                kind: Event
                metadata: {name: n1.started, namespace: default}
                involvedObject: {kind: Node, name: n1}
                reason: Starting
                message: kubelet started
                """)], config: "kubelet")
            #expect(event.status == 0, "\(event.output)")
            let configMap = try await setup.kubectl(["create", "configmap", "sneaky", "--from-literal=a=b"], config: "kubelet")
            #expect(configMap.status != 0 && configMap.output.contains("cannot create resource \"configmaps\""), "\(configMap.output)")
            let survivors = try await setup.kubectl(["get", "pods", "-o", "name"])
            #expect(survivors.output.contains("pod/p2") && !survivors.output.contains("pod/p1") && survivors.output.contains("pod/p4"), "\(survivors.output)")
        }
    }

    @Test("defaults and validation through kubectl: kubectl run's pod defaulted, an image update allowed and another spec change refused, a selector that misses its template refused")
    func defaultsAndValidation() async throws {
        try await Self.withServer { setup in
            let run = try await setup.kubectl(["run", "web", "--image=nginx:1.27", "--port=80"])
            #expect(run.status == 0 && run.output.contains("pod/web created"), "\(run.output)")
            let got = try await setup.kubectl(["get", "pod", "web", "-o", "json"])
            let pod = try JSONDecoder().decode(JSONValue.self, from: Data(got.output.utf8))
            #expect(pod["spec"]?["dnsPolicy"] == "ClusterFirst" && pod["spec"]?["restartPolicy"] == "Always" && pod["spec"]?["terminationGracePeriodSeconds"] == .integer(30))
            let container = pod["spec"]?["containers"]?.arrayValue?.first
            #expect(container?["imagePullPolicy"] == "IfNotPresent" && container?["ports"]?.arrayValue?.first?["protocol"] == "TCP", "\(container ?? .null)")
            #expect(pod["status"]?["phase"] == "Pending" && pod["status"]?["qosClass"] == "BestEffort")
            let listed = try await setup.kubectl(["get", "pods"])
            #expect(listed.output.contains("Pending"), "\(listed.output)")

            let image = try await setup.kubectl(["set", "image", "pod/web", "web=nginx:1.28"])
            #expect(image.status == 0 && image.output.contains("image updated"), "\(image.output)")
            let spec = try await setup.kubectl(["patch", "pod", "web", "-p", #"{"spec":{"restartPolicy":"Never"}}"#])
            #expect(spec.status != 0 && spec.output.contains("pod updates may not change fields other than `spec.containers[*].image`"), "\(spec.output)")

            let file = "\(setup.directory)/mismatch.yaml"
            try Self.deployment.replacingOccurrences(of: "      app: web\n  template", with: "      app: db\n  template").write(toFile: file, atomically: true, encoding: .utf8)
            let mismatch = try await setup.kubectl(["create", "-f", file])
            #expect(mismatch.status != 0 && mismatch.output.contains("spec.template.metadata.labels: Invalid value")
                    && mismatch.output.contains("`selector` does not match template `labels`"), "\(mismatch.output)")
            let noPorts = try await setup.curl(["-w", "\\n%{http_code}", "-H", "Content-Type: application/json", "--data-binary",
                                                #"{"apiVersion":"v1","kind":"Service","metadata":{"name":"empty"},"spec":{"selector":{"app":"web"}}}"#,
                                                setup.url + "/api/v1/namespaces/default/services"])
            #expect(noPorts.output.hasSuffix("\n422") && noPorts.output.contains("\"field\":\"spec.ports\""), "\(noPorts.output)")
        }
    }

    @Test("deletion: a pod on a node waits its grace period (Terminating) unless forced; finalizers hold an object until removed; deletecollection by selector; a namespace's content goes with it, and nothing new is made in it meanwhile")
    func deletion() async throws {
        try await Self.withServer { setup in
            func write(_ name: String, _ text: String) throws -> String { try setup.write(name, text) }
            #expect(try await setup.kubectl(["create", "-f", try write("bound", "apiVersion: v1\nkind: Pod\nmetadata: {name: bound}\nspec: {nodeName: n1, containers: [{name: c, image: busybox}]}\n")]).status == 0)
            let graceful = try await setup.kubectl(["delete", "pod", "bound", "--wait=false"])
            #expect(graceful.status == 0, "\(graceful.output)")
            let terminating = try await setup.kubectl(["get", "pod", "bound"])
            #expect(terminating.status == 0 && terminating.output.contains("Terminating"), "\(terminating.output)")
            let marked = try await setup.kubectl(["get", "pod", "bound", "-o", "jsonpath={.metadata.deletionGracePeriodSeconds}"])
            #expect(marked.output == "30", "\(marked.output)")
            let forced = try await setup.kubectl(["delete", "pod", "bound", "--grace-period=0", "--force"])
            #expect(forced.status == 0, "\(forced.output)")
            #expect(try await setup.kubectl(["get", "pod", "bound"]).output.contains("NotFound"))

            // Finalizers: the delete marks; no new finalizer may be added; removing the last deletes.
            #expect(try await setup.kubectl(["create", "-f", try write("held", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, finalizers: [example.com/hold]}\n")]).status == 0)
            let held = try await setup.kubectl(["delete", "configmap", "held", "--wait=false"])
            #expect(held.status == 0, "\(held.output)")
            let stillThere = try await setup.kubectl(["get", "configmap", "held", "-o", "jsonpath={.metadata.deletionTimestamp}"])
            #expect(stillThere.status == 0 && !stillThere.output.isEmpty, "\(stillThere.output)")
            let more = try await setup.kubectl(["patch", "configmap", "held", "--type=merge", "-p", #"{"metadata":{"finalizers":["example.com/hold","example.com/more"]}}"#])
            #expect(more.status != 0 && more.output.contains("no new finalizers can be added if the object is being deleted"), "\(more.output)")
            let released = try await setup.kubectl(["patch", "configmap", "held", "--type=merge", "-p", #"{"metadata":{"finalizers":null}}"#])
            #expect(released.status == 0, "\(released.output)")
            #expect(try await setup.kubectl(["get", "configmap", "held"]).output.contains("NotFound"))

            // deletecollection with a label selector.
            for (name, team) in [("a1", "a"), ("a2", "a"), ("b1", "b")] {
                #expect(try await setup.kubectl(["create", "configmap", name]).status == 0)
                #expect(try await setup.kubectl(["label", "configmap", name, "team=\(team)"]).status == 0)
            }
            let collection = try await setup.curl(["-w", "\\n%{http_code}", "-X", "DELETE", setup.url + "/api/v1/namespaces/default/configmaps?labelSelector=team%3Da"])
            #expect(collection.output.hasSuffix("\n200") && collection.output.contains("\"kind\":\"ConfigMapList\""), "\(collection.output)")
            let left = try await setup.kubectl(["get", "configmaps", "-o", "name"])
            #expect(left.output.contains("configmap/b1") && !left.output.contains("configmap/a1") && !left.output.contains("configmap/a2"), "\(left.output)")
            let badPolicy = try await setup.curl(["-w", "\\n%{http_code}", "-X", "DELETE", setup.url + "/api/v1/namespaces/default/configmaps/b1?propagationPolicy=Sideways"])
            #expect(badPolicy.output.hasSuffix("\n422") && badPolicy.output.contains("propagationPolicy"), "\(badPolicy.output)")
            let badGrace = try await setup.curl(["-w", "\\n%{http_code}", "-X", "DELETE", setup.url + "/api/v1/namespaces/default/configmaps/b1?gracePeriodSeconds=soon"])
            #expect(badGrace.output.hasSuffix("\n400"), "\(badGrace.output)")

            // Namespaces: nothing is made in one that does not exist or is going.
            let nowhere = try await setup.kubectl(["create", "configmap", "x", "-n", "nowhere"])
            #expect(nowhere.status != 0 && nowhere.output.contains("namespaces \"nowhere\" not found"), "\(nowhere.output)")
            #expect(try await setup.kubectl(["create", "namespace", "temp"]).status == 0)
            #expect(try await setup.kubectl(["create", "configmap", "plain", "-n", "temp"]).status == 0)
            #expect(try await setup.kubectl(["create", "-f", try write("pin", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: pin, namespace: temp, finalizers: [example.com/hold]}\n")]).status == 0)
            let going = try await setup.kubectl(["delete", "namespace", "temp", "--wait=false"])
            #expect(going.status == 0, "\(going.output)")
            let phase = try await setup.kubectl(["get", "namespace", "temp", "-o", "jsonpath={.status.phase}"])
            #expect(phase.output == "Terminating", "\(phase.output)")
            let late = try await setup.kubectl(["create", "configmap", "late", "-n", "temp"])
            #expect(late.status != 0 && late.output.contains("unable to create new content in namespace temp because it is being terminated"), "\(late.output)")
            // The content goes (the finalizer holds one object, and so the namespace); released, all go.
            var plainGone = false
            for _ in 0..<50 where !plainGone {
                plainGone = try await setup.kubectl(["get", "configmap", "plain", "-n", "temp"]).output.contains("NotFound")
                if !plainGone { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(plainGone)
            #expect(try await setup.kubectl(["patch", "configmap", "pin", "-n", "temp", "--type=merge", "-p", #"{"metadata":{"finalizers":null}}"#]).status == 0)
            let waited = try await setup.kubectl(["wait", "--for=delete", "namespace/temp", "--timeout=20s"])
            #expect(waited.status == 0 || waited.output.contains("NotFound"), "\(waited.output)")
            #expect(try await setup.kubectl(["get", "namespace", "temp"]).output.contains("NotFound"))
        }
    }

    @Test("services: the kubernetes Service at 10.96.0.1 with this server as its endpoint; cluster IPs and node ports allocated, unique under concurrent creates, kept on update, released on delete or type change; taken or out-of-range ones refused")
    func serviceAllocation() async throws {
        try await Self.withServer { setup in
            var kubernetes = JSONValue.null
            for _ in 0..<50 where kubernetes == .null {
                let found = try await setup.kubectl(["get", "service", "kubernetes", "-o", "json"])
                if found.status == 0 { kubernetes = try JSONDecoder().decode(JSONValue.self, from: Data(found.output.utf8)) } else { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(kubernetes["spec"]?["clusterIP"] == "10.96.0.1" && kubernetes["spec"]?["ports"]?.arrayValue?.first?["port"] == .integer(443), "\(kubernetes)")
            var endpoint = ""
            for _ in 0..<50 where endpoint.isEmpty {
                endpoint = try await setup.kubectl(["get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[0].addresses[0].ip}"]).output
                if endpoint.isEmpty { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(endpoint == "127.0.0.1")
            let defaultGone = try await setup.kubectl(["delete", "namespace", "default"])
            #expect(defaultGone.status != 0 && defaultGone.output.contains("this namespace may not be deleted"), "\(defaultGone.output)")

            #expect(try await setup.kubectl(["create", "service", "nodeport", "np", "--tcp=80:8080"]).status == 0)
            let nodePortService = try await setup.json(["get", "service", "np"])
            let ip = nodePortService["spec"]?["clusterIP"]?.stringValue ?? ""
            #expect(ip.hasPrefix("10.") && ip != "10.96.0.1" && nodePortService["spec"]?["ipFamilies"] == .array(["IPv4"]), "\(nodePortService)")
            let nodePort = nodePortService["spec"]?["ports"]?.arrayValue?.first?["nodePort"]?.integerValue ?? 0
            #expect((30000...32767).contains(nodePort), "\(nodePortService)")
            // An apply that does not mention them keeps the address and the port.
            #expect(try await setup.kubectl(["label", "service", "np", "tier=web"]).status == 0)
            let relabelled = try await setup.json(["get", "service", "np"])
            #expect(relabelled["spec"]?["clusterIP"] == .string(ip) && relabelled["spec"]?["ports"]?.arrayValue?.first?["nodePort"] == .integer(nodePort))

            // Taken, and out of range.
            func service(_ name: String, _ spec: String) async throws -> Command.Result {
                try await setup.curl(["-w", "\\n%{http_code}", "-H", "Content-Type: application/json", "--data-binary",
                                      #"{"apiVersion":"v1","kind":"Service","metadata":{"name":""# + name + #""},"spec":"# + spec + "}",
                                      setup.url + "/api/v1/namespaces/default/services"])
            }
            let sameIP = try await service("same-ip", #"{"clusterIP":""# + ip + #"","ports":[{"port":80}]}"#)
            #expect(sameIP.output.hasSuffix("\n422") && sameIP.output.contains("already allocated"), "\(sameIP.output)")
            let samePort = try await service("same-port", #"{"type":"NodePort","ports":[{"port":80,"nodePort":\#(nodePort)}]}"#)
            #expect(samePort.output.hasSuffix("\n422") && samePort.output.contains("provided port is already allocated"), "\(samePort.output)")
            let outside = try await service("outside", #"{"clusterIP":"192.168.1.1","ports":[{"port":80}]}"#)
            #expect(outside.output.hasSuffix("\n422") && outside.output.contains("The range of valid IPs is 10.96.0.0/12"), "\(outside.output)")
            let lowPort = try await service("low-port", #"{"type":"NodePort","ports":[{"port":80,"nodePort":8080}]}"#)
            #expect(lowPort.output.hasSuffix("\n422") && lowPort.output.contains("The range of valid ports is 30000-32767"), "\(lowPort.output)")

            // Type change to ClusterIP releases the node port; delete releases the address.
            #expect(try await setup.kubectl(["patch", "service", "np", "--type=merge", "-p", #"{"spec":{"type":"ClusterIP"}}"#]).status == 0)
            let clusterOnly = try await setup.json(["get", "service", "np"])
            #expect(clusterOnly["spec"]?["ports"]?.arrayValue?.first?["nodePort"] == nil, "\(clusterOnly)")
            let reusedPort = try await service("reused-port", #"{"type":"NodePort","ports":[{"port":80,"nodePort":\#(nodePort)}]}"#)
            #expect(reusedPort.output.hasSuffix("\n201"), "\(reusedPort.output)")
            #expect(try await setup.kubectl(["delete", "service", "np"]).status == 0)
            let reusedIP = try await service("reused-ip", #"{"clusterIP":""# + ip + #"","ports":[{"port":80}]}"#)
            #expect(reusedIP.output.hasSuffix("\n201"), "\(reusedIP.output)")

            // 16 creates at once: 16 different addresses and node ports.
            try await withThrowingTaskGroup(of: Command.Result.self) { group in
                for index in 0..<16 { group.addTask { try await service("burst-\(index)", #"{"type":"NodePort","ports":[{"port":80}]}"#) } }
                for try await result in group { #expect(result.output.hasSuffix("\n201"), "\(result.output)") }
            }
            let all = try await setup.json(["get", "services"])
            let burst = (all["items"]?.arrayValue ?? []).filter { $0.metadata("name")?.stringValue?.hasPrefix("burst-") == true }
            #expect(burst.count == 16)
            #expect(Set(burst.compactMap { $0["spec"]?["clusterIP"]?.stringValue }).count == 16)
            #expect(Set(burst.compactMap { $0["spec"]?["ports"]?.arrayValue?.first?["nodePort"]?.integerValue }).count == 16)
        }
    }

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    @Test("the Python kubernetes client 33.1.0: CRUD, 409 on a stale update, patches, typed models, scale, pagination, watch from a resourceVersion, 410 after compaction, namespace deletion")
    func pythonClient() async throws {
        let python = ProcessInfo.processInfo.environment["RAFTKUBE_KUBERNETES_PYTHON"] ?? Self.root + "/.build-python/kubernetes/bin/python"
        try #require(FileManager.default.isExecutableFile(atPath: python), "no kubernetes client virtualenv at \(python): run cluster/python-kubernetes (cluster/test does)")
        try await Self.withServer { setup in
            // A resourceVersion from before a compaction, for the client's 410.
            let first = try await setup.kubectl(["create", "configmap", "old"])
            #expect(first.status == 0, "\(first.output)")
            let old = try await setup.kubectl(["get", "configmap", "old", "-o", "jsonpath={.metadata.resourceVersion}"]).output
            #expect(try await setup.kubectl(["delete", "configmap", "old"]).status == 0)
            #expect(try await setup.kubectl(["create", "configmap", "after"]).status == 0)
            let now = try await setup.handler.storage.list(try #require(ServedResources.find(group: "", version: "v1", name: "configmaps")), namespace: nil).resourceVersion
            _ = try await setup.handler.storage.store.compact(revision: now, physical: true)
            let result = try await Command.run(["/usr/bin/timeout", "180", python, Self.root + "/Tests/NodeTests/Python/kubernetes_suite.py", setup.config("admin"), old],
                                               directory: setup.directory)
            #expect(result.status == 0 && result.output.contains("OK 22 checks"), "\(result.output.suffix(3000))")
        }
    }

    @Test("kubectl apply --server-side: created, changed, a label dropped, a conflict with another manager, --force-conflicts, diff, a missing field manager refused")
    func serverSideApply() async throws {
        try await Self.withServer { setup in
            let file = "\(setup.directory)/deployment.yaml"
            try Self.deployment.replacingOccurrences(of: "    app: web\nspec:", with: "    app: web\n    tier: front\nspec:").write(toFile: file, atomically: true, encoding: .utf8)
            let first = try await setup.kubectl(["apply", "--server-side", "-f", file])
            #expect(first.status == 0 && first.output.contains("deployment.apps/web serverside-applied"), "\(first.output)")
            let managed = try await setup.kubectl(["get", "deployment", "web", "-o", "jsonpath={.metadata.managedFields[0].manager}/{.metadata.managedFields[0].operation}"])
            #expect(managed.output == "kubectl/Apply", "\(managed.output)")
            let labels = try await setup.kubectl(["get", "deployment", "web", "-o", "jsonpath={.metadata.labels.tier}"])
            #expect(labels.output == "front", "\(labels.output)")

            // The label dropped from the file goes; replicas changed.
            try Self.deployment.replacingOccurrences(of: "replicas: 2", with: "replicas: 3").write(toFile: file, atomically: true, encoding: .utf8)
            let diff = try await setup.kubectl(["diff", "--server-side", "-f", file])
            #expect(diff.status == 1 && diff.output.contains("+  replicas: 3") && diff.output.contains("-    tier: front"), "\(diff.output)")
            let second = try await setup.kubectl(["apply", "--server-side", "-f", file])
            #expect(second.status == 0, "\(second.output)")
            let after = try await setup.kubectl(["get", "deployment", "web", "-o", "jsonpath={.spec.replicas}/{.metadata.labels.tier}"])
            #expect(after.output == "3/", "\(after.output)")

            // Another manager wanting other replicas: a conflict, then forced.
            let other = "\(setup.directory)/other.yaml"
            try "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 7\n".write(toFile: other, atomically: true, encoding: .utf8)
            let conflict = try await setup.kubectl(["apply", "--server-side", "--field-manager=autoscaler", "-f", other])
            #expect(conflict.status != 0 && conflict.output.contains("conflict with \"kubectl\"") && conflict.output.contains(".spec.replicas"), "\(conflict.output)")
            let forced = try await setup.kubectl(["apply", "--server-side", "--field-manager=autoscaler", "--force-conflicts", "-f", other])
            #expect(forced.status == 0, "\(forced.output)")
            let replicas = try await setup.kubectl(["get", "deployment", "web", "-o", "jsonpath={.spec.replicas}"])
            #expect(replicas.output == "7", "\(replicas.output)")
            // The image is still kubectl's, the containers as applied.
            let image = try await setup.kubectl(["get", "deployment", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"])
            #expect(image.output == "nginx:1.27", "\(image.output)")

            let noManager = try await setup.curl(["-w", "\\n%{http_code}", "-X", "PATCH", "-H", "Content-Type: application/apply-patch+yaml", "--data-binary",
                                                  "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n", setup.url + "/api/v1/namespaces/default/configmaps/x"])
            #expect(noManager.output.hasSuffix("\n422") && noManager.output.contains("fieldManager"), "\(noManager.output)")
            let created = try await setup.curl(["-w", "\\n%{http_code}", "-X", "PATCH", "-H", "Content-Type: application/apply-patch+yaml", "--data-binary",
                                                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: b\n",
                                                setup.url + "/api/v1/namespaces/default/configmaps/x?fieldManager=curl"])
            #expect(created.output.hasSuffix("\n201") && created.output.contains("\"manager\":\"curl\""), "\(created.output)")
        }
    }

    static let withUnknownField = """
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: strict
          colour: blue
        data:
          a: "1"
        """

    @Test("field validation: kubectl create -f refuses an unknown field naming it (Strict), a wrong type, a missing required field; Warn answers a Warning header; Ignore drops it")
    func fieldValidation() async throws {
        try await Self.withServer { setup in
            let unknownFile = "\(setup.directory)/unknown.yaml"
            try Self.withUnknownField.write(toFile: unknownFile, atomically: true, encoding: .utf8)
            let strict = try await setup.kubectl(["create", "-f", unknownFile])
            #expect(strict.status != 0 && strict.output.contains("strict decoding error: unknown field \"metadata.colour\""), "\(strict.output)")
            let absent = try await setup.kubectl(["get", "configmap", "strict"])
            #expect(absent.status != 0 && absent.output.contains("NotFound"), "\(absent.output)")

            let warned = try await setup.kubectl(["create", "-f", unknownFile, "--validate=warn"])
            #expect(warned.status == 0 && warned.output.contains("Warning: unknown field \"metadata.colour\""), "\(warned.output)")
            let stored = try await setup.kubectl(["get", "configmap", "strict", "-o", "json"])
            #expect(stored.status == 0 && !stored.output.contains("colour"), "\(stored.output)")
            let ignored = try await setup.curl(["-w", "\\n%{http_code}", "-D", "-", "-H", "Content-Type: application/json", "--data-binary",
                                                #"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ignored","colour":"red"}}"#,
                                                setup.url + "/api/v1/namespaces/default/configmaps?fieldValidation=Ignore"])
            #expect(ignored.output.hasSuffix("\n201") && !ignored.output.lowercased().contains("warning:"), "\(ignored.output)")

            let wrongTypeFile = "\(setup.directory)/wrongtype.yaml"
            try """
                apiVersion: apps/v1
                kind: Deployment
                metadata:
                  name: typed
                spec:
                  replicas: "three"
                  selector: {matchLabels: {app: typed}}
                  template:
                    metadata: {labels: {app: typed}}
                    spec: {containers: [{name: c, image: busybox}]}
                """.write(toFile: wrongTypeFile, atomically: true, encoding: .utf8)
            let wrongType = try await setup.kubectl(["create", "-f", wrongTypeFile])
            #expect(wrongType.status != 0 && wrongType.output.contains("spec.replicas"), "\(wrongType.output)")

            let missingFile = "\(setup.directory)/missing.yaml"
            try """
                apiVersion: apps/v1
                kind: Deployment
                metadata:
                  name: incomplete
                spec:
                  replicas: 1
                  selector: {matchLabels: {app: incomplete}}
                  template:
                    metadata: {labels: {app: incomplete}}
                    spec: {containers: [{image: busybox}]}
                """.write(toFile: missingFile, atomically: true, encoding: .utf8)
            let missing = try await setup.kubectl(["create", "-f", missingFile])
            #expect(missing.status != 0 && missing.output.contains("spec.template.spec.containers[0].name") && missing.output.contains("Required value"),
                    "\(missing.output)")
            let none = try await setup.kubectl(["get", "deployments", "-o", "name"])
            #expect(none.status == 0 && none.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(none.output)")
        }
    }

    @Test("refusals: no certificate 401 (but /version, /healthz), a kubelet 403 in Kubernetes' words, another CA at TLS, 413, 400, 415, 404; still serving")
    func refusals() async throws {
        try await Self.withServer { setup in
            let anonymous = try await setup.curl(["-w", "\\n%{http_code}", setup.url + "/api/v1/namespaces"], identity: nil)
            #expect(anonymous.output.hasSuffix("\n401") && anonymous.output.contains("\"reason\":\"Unauthorized\""), "\(anonymous.output)")
            for open in ["/version", "/healthz", "/readyz", "/livez"] {
                let answer = try await setup.curl(["-f", setup.url + open], identity: nil)
                #expect(answer.status == 0, "\(open): \(answer.output)")
            }
            let anonymousDiscovery = try await setup.curl(["-w", "\\n%{http_code}", setup.url + "/api"], identity: nil)
            #expect(anonymousDiscovery.output.hasSuffix("\n401"), "\(anonymousDiscovery.output)")

            let kubelet = try await setup.kubectl(["get", "secrets"], config: "kubelet")
            #expect(kubelet.status != 0)
            #expect(kubelet.output.contains("Error from server (Forbidden): secrets is forbidden: User \"system:node:n1\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\""),
                    "\(kubelet.output)")
            let kubeletRole = try await setup.kubectl(["get", "clusterrole", "view"], config: "kubelet")
            #expect(kubeletRole.output.contains("clusterroles.rbac.authorization.k8s.io \"view\" is forbidden: User \"system:node:n1\" cannot get resource \"clusterroles\" in API group \"rbac.authorization.k8s.io\" at the cluster scope"),
                    "\(kubeletRole.output)")
            let kubeletDiscovery = try await setup.kubectl(["api-versions"], config: "kubelet")
            #expect(kubeletDiscovery.status == 0, "\(kubeletDiscovery.output)")

            let stranger = try await setup.curl([setup.url + "/api/v1/namespaces"], identity: "stranger")
            #expect(stranger.status != 0 && !stranger.output.contains("NamespaceList"), "\(stranger.output)")

            let big = String(repeating: "x", count: 4 << 20)
            try "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"big\"},\"data\":{\"k\":\"\(big)\"}}"
                .write(toFile: "\(setup.directory)/big.json", atomically: true, encoding: .utf8)
            let tooLarge = try await setup.curl(["-w", "\\n%{http_code}", "-H", "Content-Type: application/json", "--data-binary", "@big.json",
                                                 setup.url + "/api/v1/namespaces/default/configmaps"])
            #expect(tooLarge.output.hasSuffix("\n413"), "\(tooLarge.output.suffix(300))")
            let malformed = try await setup.curl(["-w", "\\n%{http_code}", "-H", "Content-Type: application/json", "--data-binary", "{\"kind\": ",
                                                  setup.url + "/api/v1/namespaces/default/configmaps"])
            #expect(malformed.output.hasSuffix("\n400") && malformed.output.contains("\"reason\":\"BadRequest\""), "\(malformed.output)")
            let media = try await setup.curl(["-w", "\\n%{http_code}", "-H", "Content-Type: text/plain", "--data-binary", "hello",
                                              setup.url + "/api/v1/namespaces/default/configmaps"])
            #expect(media.output.hasSuffix("\n415"), "\(media.output)")
            let yaml = try await setup.curl(["-w", "\\n%{http_code}", "-H", "Content-Type: application/yaml", "--data-binary",
                                             "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  port: \"8080\"\n",
                                             setup.url + "/api/v1/namespaces/default/configmaps"])
            #expect(yaml.output.hasSuffix("\n201") && yaml.output.contains("\"port\":\"8080\""), "\(yaml.output)")
            let badYAML = try await setup.curl(["-w", "\\n%{http_code}", "-H", "Content-Type: application/yaml", "--data-binary", "kind: [ConfigMap\nmetadata: x",
                                                setup.url + "/api/v1/namespaces/default/configmaps"])
            #expect(badYAML.output.hasSuffix("\n400") && badYAML.output.contains("does not parse as YAML"), "\(badYAML.output)")
            let unknown = try await setup.kubectl(["get", "--raw", "/apis/example.com/v1/widgets"])
            #expect(unknown.status != 0 && unknown.output.contains("NotFound"), "\(unknown.output)")

            let after = try await setup.kubectl(["get", "namespaces", "-o", "name"])
            #expect(after.status == 0 && after.output.contains("namespace/default"), "\(after.output)")
        }
    }
}

/// A command run to its end without blocking a thread of the concurrency pool: its output
/// (stdout and stderr together) in a file, its end reported by the termination handler.
enum Command {
    struct Result: Sendable {
        let status: Int32
        let output: String
    }

    /// Spawns the command (posix_spawn, in `directory`, output to a file, stdin /dev/null) and
    /// waits for it on a thread of its own. Not Foundation's Process: with a dozen tests spawning
    /// kubectl and curl at once, its termination handler was seen never to be called, hanging
    /// every test that waited on it.
    static func run(_ arguments: [String], directory: String) async throws -> Result {
        let outputPath = "\(directory)/command-\(UUID().uuidString).out"
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // In `directory` by env -C (glibc's posix_spawn chdir action is not in Swift's Glibc module).
        let command = ["/usr/bin/env", "-C", directory] + arguments
        let argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, command[0], &actions, nil, argv, environ)
        guard spawned == 0 else { throw NodeError("cannot start \(arguments[0]): error \(spawned)") }
        let child = pid
        let status: Int32 = await withCheckedContinuation { continuation in
            let waiter = Thread {
                var raw: Int32 = 0
                while waitpid(child, &raw, 0) == -1 && errno == EINTR {}
                // WIFEXITED: the exit code; otherwise 128 + the signal, as a shell reports it.
                let signal = raw & 0x7f
                continuation.resume(returning: signal == 0 ? (raw >> 8) & 0xff : 128 + signal)
            }
            waiter.start()
        }
        return Result(status: status, output: (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "")
    }
}
