import ClusterHarness
import ClusterPKI
import Crypto
import Foundation
import Glibc
import Testing
import X509

/// A TLS store across three local VMs (`cluster/lab`: network namespaces on a bridge, 10.77.0.x):
/// leader failover (timed), a partitioned member that refuses instead of serving stale data and
/// catches up after healing, and a whole-cluster stop and start. Needs root, as CI has.
@Suite("Store in three local VMs", .serialized)
struct LabTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// Runs a command with `environment` added, output captured through a file. posix_spawn and
    /// waitpid, not Foundation's Process: `waitUntilExit` does not return while a process that
    /// the command started in the background (`cluster/lab spawn`) still runs.
    @discardableResult
    static func run(_ arguments: [String], environment: [String: String] = [:], root: String) throws -> (status: Int32, output: String) {
        let outputPath = "\(root)/command-\(UUID().uuidString).out"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let command = ["/usr/bin/env"] + arguments
        let variables = ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { "\($0)=\($1)" }
        var argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
        var envp: [UnsafeMutablePointer<CChar>?] = variables.map { strdup($0) } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, command[0], &actions, nil, &argv, &envp)
        guard spawned == 0 else { throw LabError(description: "cannot start \(arguments): errno \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw LabError(description: "waitpid for \(arguments): errno \(errno)") }
        }
        let exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (exitStatus, (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "")
    }

    static func eventually(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return try condition()
    }

    static func address(_ vm: Int) -> String { "10.77.0.\(10 + vm)" }

    /// A lab of three VMs, each running a TLS store member, and etcdctl from the host.
    final class Lab {
        let root: String
        let environment: [String: String]
        let pki: String
        var tlsArguments: [String] { ["--cacert", "\(pki)/ca.crt", "--cert", "\(pki)/admin.crt", "--key", "\(pki)/admin.key"] }

        init() throws {
            root = NSTemporaryDirectory() + "raftkube-labtest-\(UInt32.random(in: 0...UInt32.max))"
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            environment = ["LAB_ROOT": "\(root)/lab"]
            pki = "\(root)/pki"
        }

        func lab(_ arguments: String...) throws -> (status: Int32, output: String) {
            try LabTests.run(["\(LabTests.repository)/cluster/lab"] + arguments, environment: environment, root: root)
        }

        func etcdctl(_ arguments: [String], vms: [Int] = [1, 2, 3], timeout: Int = 5) throws -> (status: Int32, output: String) {
            let endpoints = vms.map { "https://\(LabTests.address($0)):2379" }.joined(separator: ",")
            return try LabTests.run(["ETCDCTL_API=3", "etcdctl", "--endpoints=\(endpoints)", "--dial-timeout=2s", "--command-timeout=\(timeout)s"] + tlsArguments + arguments, root: root)
        }

        func makeCertificates() throws {
            let ca = try CertificateAuthority.create(clusterName: "lab")
            try PEMFiles.write([ca.certificate], to: "\(pki)/ca.crt")
            for vm in 1...3 {
                let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
                let certificate = try ca.issue(profile: .node, commonName: "vm\(vm)", dnsNames: ["vm\(vm)"], ipAddresses: [LabTests.address(vm), "127.0.0.1"], publicKey: key.publicKey)
                try PEMFiles.write([certificate], to: "\(pki)/vm\(vm).crt")
                try PEMFiles.write(key, to: "\(pki)/vm\(vm).key")
            }
            let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
            try PEMFiles.write([try ca.issue(profile: .client(organization: CertificateAuthority.adminOrganization), commonName: "admin", publicKey: key.publicKey)], to: "\(pki)/admin.crt")
            try PEMFiles.write(key, to: "\(pki)/admin.key")
        }

        func startMembers() throws {
            let cluster = (1...3).map { "vm\($0)=https://\(LabTests.address($0)):2380" }.joined(separator: ",")
            for vm in 1...3 {
                let address = LabTests.address(vm)
                let result = try lab("spawn", "vm\(vm)", "\(root)/vm\(vm).log", ProcessCluster.siblingBinary, "store",
                                     "--name", "vm\(vm)", "--data-dir", "\(root)/lab/vm\(vm)/data",
                                     "--listen-client-urls", "https://\(address):2379", "--listen-peer-urls", "https://\(address):2380",
                                     "--initial-cluster", cluster, "--initial-cluster-token", "lab",
                                     "--cert-file", "\(pki)/vm\(vm).crt", "--key-file", "\(pki)/vm\(vm).key", "--trusted-ca-file", "\(pki)/ca.crt", "--client-cert-auth",
                                     "--peer-cert-file", "\(pki)/vm\(vm).crt", "--peer-key-file", "\(pki)/vm\(vm).key", "--peer-trusted-ca-file", "\(pki)/ca.crt")
                guard result.status == 0 else { throw LabError(description: "spawn vm\(vm): \(result.output)") }
            }
        }

        /// The VM whose member leads, from `endpoint status` (nil when none answers as leader).
        func leader() throws -> Int? {
            let rows = try etcdctl(["endpoint", "status"]).output.split(separator: "\n").map { $0.components(separatedBy: ", ") }
            guard let row = rows.first(where: { $0.count > 4 && $0[4] == "true" }) else { return nil }
            return (1...3).first { row[0].contains(LabTests.address($0)) }
        }

        func keyCount(vm: Int) throws -> Int {
            try etcdctl(["get", "k/", "--prefix", "--keys-only", "--consistency=s"], vms: [vm]).output
                .split(separator: "\n").filter { $0.hasPrefix("k/") }.count
        }

        func hashes() throws -> [Substring] {
            try etcdctl(["endpoint", "hashkv"]).output.split(separator: "\n").compactMap { $0.split(separator: ", ").last }
        }

        func logs() -> String {
            (1...3).map { vm in "vm\(vm):\n" + ((try? String(contentsOfFile: "\(root)/vm\(vm).log", encoding: .utf8)) ?? "").split(separator: "\n").suffix(12).joined(separator: "\n") }
                .joined(separator: "\n")
        }

        func tearDown() {
            _ = try? lab("down")
            try? FileManager.default.removeItem(atPath: root)
        }
    }

    struct LabError: Error, CustomStringConvertible {
        let description: String
    }

    @Test("TLS store on three VMs: leader failover is timed, a partitioned member refuses rather than serving stale data and catches up, a full stop loses nothing")
    func storeAcrossVMs() throws {
        let lab = try Lab()
        defer { lab.tearDown() }
        _ = try lab.lab("down")  // leftovers of an interrupted run
        let up = try lab.lab("up", "3")
        try #require(up.status == 0, "\(up.output)")
        try lab.makeCertificates()
        try lab.startMembers()
        let serving = try Self.eventually(30) { try lab.etcdctl(["put", "k/0", "0"]).status == 0 }
        try #require(serving, "\(lab.logs())")
        for number in 1..<50 { #expect(try lab.etcdctl(["put", "k/\(number)", "\(number)"]).status == 0) }

        // Leader failover: kill the leader's VM and time until a write succeeds on the others.
        let leader = try #require(try lab.leader(), "no leader\n\(lab.logs())")
        let others = [1, 2, 3].filter { $0 != leader }
        #expect(try lab.lab("kill", "vm\(leader)").status == 0)
        let killed = Date()
        var writes = 0
        let recovered = try Self.eventually(20) {
            let ok = try lab.etcdctl(["put", "k/failover", "yes"], vms: others, timeout: 1).status == 0
            if ok { writes += 1 }
            return ok
        }
        let failover = Date().timeIntervalSince(killed)
        print("lab: failover after killing the leader's VM: \(Int(failover * 1000)) ms")
        #expect(recovered, "\(lab.logs())")
        #expect(try lab.lab("start", "vm\(leader)").status == 0)
        #expect(try Self.eventually(20) { try lab.keyCount(vm: leader) == 51 }, "\(lab.logs())")

        // Partition one member: the majority serves; the isolated one refuses writes and
        // linearizable reads with an error, never an old value.
        let isolated = 3
        #expect(try lab.lab("partition", "vm\(isolated)").status == 0)
        let majority = [1, 2]
        #expect(try Self.eventually(10) { try lab.etcdctl(["put", "k/partitioned", "new"], vms: majority, timeout: 2).status == 0 }, "\(lab.logs())")
        #expect(try lab.etcdctl(["get", "k/partitioned", "--print-value-only"], vms: majority).output.contains("new"))
        let staleWrite = try lab.etcdctl(["put", "k/minority", "x"], vms: [isolated], timeout: 3)
        #expect(staleWrite.status != 0, "\(staleWrite.output)")
        let staleRead = try lab.etcdctl(["get", "k/partitioned"], vms: [isolated], timeout: 3)
        #expect(staleRead.status != 0 && !staleRead.output.contains("new"), "\(staleRead.output)")
        #expect(staleRead.output.contains("etcdserver:"), "a clear error: \(staleRead.output)")
        #expect(try lab.lab("heal").status == 0)
        #expect(try Self.eventually(20) { try lab.keyCount(vm: isolated) == 52 }, "\(lab.logs())")
        #expect(try lab.etcdctl(["get", "k/minority"], vms: majority).output.contains("k/minority") == false)
        #expect(try Self.eventually(10) { let hashes = try lab.hashes(); return hashes.count == 3 && Set(hashes).count == 1 })

        // Stop all three, start all three: every acknowledged write is there.
        for vm in 1...3 { #expect(try lab.lab("kill", "vm\(vm)").status == 0) }
        for vm in 1...3 { #expect(try lab.lab("start", "vm\(vm)").status == 0) }
        #expect(try Self.eventually(30) { try lab.etcdctl(["get", "k/", "--prefix", "--keys-only"]).output.split(separator: "\n").filter { $0.hasPrefix("k/") }.count == 52 },
                "\(lab.logs())")
        #expect(try lab.etcdctl(["get", "k/failover", "--print-value-only"]).output.contains("yes"))
    }

    @Test("the lab cleans up after itself: no namespace, link, rule or directory is left")
    func cleanUp() throws {
        let lab = try Lab()
        defer { lab.tearDown() }
        _ = try lab.lab("down")
        #expect(try lab.lab("up", "2").status == 0)
        #expect(try lab.lab("partition", "vm2").status == 0)
        #expect(try lab.lab("up", "2").status != 0, "a second up on a running lab is refused")
        #expect(try lab.lab("exec", "vm9", "true").output.contains("no VM 'vm9'"))
        let hostname = try lab.lab("exec", "vm2", "hostname")
        #expect(hostname.output.trimmingCharacters(in: .whitespacesAndNewlines) == "vm2")
        #expect(try lab.lab("down").status == 0)
        let namespaces = try Self.run(["ip", "netns", "list"], root: lab.root).output
        #expect(!namespaces.contains("rk-vm"), "\(namespaces)")
        #expect(try Self.run(["ip", "link", "show", "rkbr0"], root: lab.root).status != 0)
        #expect(!(try Self.run(["nft", "list", "tables"], root: lab.root).output.contains("rklab")))
        #expect(!FileManager.default.fileExists(atPath: "\(lab.root)/lab"))
    }
}
