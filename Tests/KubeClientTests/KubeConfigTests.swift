import Foundation
import KubeClient
import Testing

@Suite("kubeconfig files: parsing, choosing the file, errors")
struct KubeConfigTests {
    static let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

    static func config(ca: String) -> String {
        """
        apiVersion: v1
        kind: Config
        clusters:
        - name: lab
          cluster:
            server: https://10.0.0.1:6443
            \(ca)
        users:
        - name: admin
          user:
            client-certificate-data: \(Data("CERT".utf8).base64EncodedString())
            client-key-data: \(Data("KEY".utf8).base64EncodedString())
        - name: robot
          user:
            token: abc.def
        contexts:
        - name: admin@lab
          context: {cluster: lab, user: admin}
        - name: robot@lab
          context: {cluster: lab, user: robot, namespace: apps}
        current-context: admin@lab
        """
    }

    @Test("Inline data, files relative to the kubeconfig, contexts with their namespace and token")
    func parses() throws {
        let inline = try KubeConfig.parse(Self.config(ca: "certificate-authority-data: \(Data(Self.pem.utf8).base64EncodedString())"))
        let admin = try inline.resolved()
        #expect(admin.server == "https://10.0.0.1:6443" && admin.certificateAuthority == Self.pem)
        #expect(admin.clientCertificate == "CERT" && admin.clientKey == "KEY" && admin.namespace == "default" && admin.token == nil)
        let robot = try inline.resolved(context: "robot@lab")
        #expect(robot.token == "abc.def" && robot.namespace == "apps" && robot.clientCertificate == nil)

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kubeconfig-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Self.pem.write(toFile: "\(directory)/ca.crt", atomically: true, encoding: .utf8)
        try Self.config(ca: "certificate-authority: ca.crt").write(toFile: "\(directory)/config", atomically: true, encoding: .utf8)
        let fromFile = try KubeConfig.load(explicit: "\(directory)/config")
        #expect(try fromFile.resolved().certificateAuthority == Self.pem)
    }

    @Test("Refusals name the problem: not YAML, no server, unknown context, missing file, bad base64")
    func refusals() throws {
        func message(_ body: () throws -> Any) -> String {
            do { _ = try body(); return "" } catch { return "\(error)" }
        }
        #expect(message { try KubeConfig.parse("clusters: [unclosed") }.contains("not YAML"))
        #expect(message { try KubeConfig.parse("- a list") }.contains("not a kubeconfig"))
        #expect(message { try KubeConfig.parse("clusters:\n- name: x\n  cluster: {}\n") }.contains("cluster \"x\" has no server"))
        #expect(message { try KubeConfig.parse(Self.config(ca: "")).resolved(context: "nope") }.contains("context \"nope\" is not in"))
        #expect(message { try KubeConfig.parse("contexts: []\n").resolved() }.contains("no current-context"))
        #expect(message { try KubeConfig.parse(Self.config(ca: "certificate-authority-data: '%%%'")) }.contains("not base64"))
        #expect(message { try KubeConfig.parse(Self.config(ca: "certificate-authority: /no/such/ca.crt")) }.contains("cannot read certificate-authority"))
        #expect(message { try KubeConfig.locate(explicit: "/no/such/config") }.contains("does not exist"))
    }

    @Test("The file is chosen as kubectl chooses it: explicit, then $KUBECONFIG's first existing file, then ~/.kube/config, then the fallbacks")
    func locating() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kubeconfig-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: "\(directory)/home/.kube", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for name in ["a", "fallback", "home/.kube/config"] { try "x".write(toFile: "\(directory)/\(name)", atomically: true, encoding: .utf8) }
        let environment = ["KUBECONFIG": "\(directory)/missing:\(directory)/a", "HOME": "\(directory)/home"]
        #expect(try KubeConfig.locate(explicit: nil, environment: environment) == "\(directory)/a")
        #expect(try KubeConfig.locate(explicit: nil, environment: ["HOME": "\(directory)/home"]) == "\(directory)/home/.kube/config")
        #expect(try KubeConfig.locate(explicit: nil, environment: ["HOME": "\(directory)/nohome"], fallbacks: ["\(directory)/fallback"]) == "\(directory)/fallback")
        #expect(throws: KubeConfigError.self) { try KubeConfig.locate(explicit: nil, environment: [:], fallbacks: []) }
    }

    @Test("Learned servers are remembered per kubeconfig server and read back, junk lines dropped")
    func serverMemory() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("servers-\(UUID().uuidString)/x.servers").path
        defer { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path) }
        let memory = ServerMemory(path: path)
        #expect(memory.load().isEmpty && !memory.isFresh)
        memory.save(["https://10.0.0.1:6443", "https://10.0.0.2:6443"])
        #expect(memory.load() == ["https://10.0.0.1:6443", "https://10.0.0.2:6443"] && memory.isFresh)
        try "https://10.0.0.3:6443\nrm -rf /\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(memory.load() == ["https://10.0.0.3:6443"])
        #expect(ServerMemory(server: "https://a:6443", environment: [:]) == nil)
    }
}
