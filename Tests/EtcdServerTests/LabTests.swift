import ClusterHarness
import ClusterPKI
import X509
import Foundation
import Glibc
import Testing

/// Clusters made by `raftkube init` and `join` in local VMs (`cluster/lab`: network namespaces on
/// a bridge, 10.77.0.x), with mutual TLS everywhere: leader failover (timed), a partitioned
/// member that refuses instead of serving stale data and catches up after healing, a whole-cluster
/// stop and start, growing past voters-max, promote, remove, leave, and the refusals of init and
/// join. Needs root, as CI has.
@Suite("Nodes in local VMs", .serialized)
struct LabTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// Runs a command with `environment` added, output captured through a file. posix_spawn and
    /// waitpid, not Foundation's Process: `waitUntilExit` does not return while a process that
    /// the command started in the background (`cluster/lab spawn`) still runs.
    @discardableResult
    /// The serial number (hex, as openssl prints it) of the certificate that VM `vm` presents on
    /// `port` to a new TLS connection.
    static func presentedSerial(vm: Int, port: Int, root: String) throws -> String {
        let output = try run(["sh", "-c", "openssl s_client -connect \(address(vm)):\(port) </dev/null 2>/dev/null | openssl x509 -noout -serial"], root: root).output
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("serial=") }) else { return "" }
        return String(line.dropFirst("serial=".count).drop { $0 == "0" })
    }

    static func hex(_ serial: Certificate.SerialNumber) -> String {
        let digits: String = serial.bytes.map { String(format: "%02X", $0) }.joined()
        return String(digits.drop { $0 == "0" })
    }

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

    static func address(_ vm: Int) -> String { "10.77.0.\(10 + vm)" }

    /// A lab of VMs (its own LAB_ROOT), raftkube in them, and etcdctl from the host.
    final class Lab {
        let root: String
        let environment: [String: String]
        /// Where etcdctl finds the CA and the administrator's certificate and key.
        var credentials: String
        var tlsArguments: [String] { ["--cacert", "\(credentials)/ca.crt", "--cert", "\(credentials)/admin.crt", "--key", "\(credentials)/admin.key"] }

        init() throws {
            root = NSTemporaryDirectory() + "raftkube-labtest-\(UInt32.random(in: 0...UInt32.max))"
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            environment = ["LAB_ROOT": "\(root)/lab", "RAFTKUBE": ProcessCluster.siblingBinary]
            credentials = "\(root)/lab/vm1/data/pki"
        }

        func dataDir(_ vm: Int) -> String { "\(root)/lab/vm\(vm)/data" }

        /// Runs `raftkube ARGUMENTS` in `vm` in the foreground.
        func raftkube(_ vm: Int, _ arguments: [String]) throws -> (status: Int32, output: String) {
            // Bounded: a join that wrongly succeeded would run its node in the foreground.
            try LabTests.run(["\(LabTests.repository)/cluster/lab", "exec", "vm\(vm)", "timeout", "60", ProcessCluster.siblingBinary] + arguments, environment: environment, root: root)
        }

        /// Starts `raftkube ARGUMENTS` in `vm` in the background, logging to vmN.log.
        func spawnRaftkube(_ vm: Int, _ arguments: [String]) throws {
            let result = try LabTests.run(["\(LabTests.repository)/cluster/lab", "spawn", "vm\(vm)", "\(root)/vm\(vm).log", ProcessCluster.siblingBinary] + arguments,
                                          environment: environment, root: root)
            guard result.status == 0 else { throw LabError(description: "spawn in vm\(vm): \(result.output)") }
        }

        /// VM `vm`'s node output: where `spawnRaftkube` puts it, or `cluster/lab up`.
        func log(_ vm: Int) -> String {
            ["\(root)/vm\(vm).log", "\(root)/lab/vm\(vm).log"].compactMap { try? String(contentsOfFile: $0, encoding: .utf8) }.joined(separator: "\n")
        }

        /// `member list` rows: ID, status, name, peer URLs, client URLs, is learner.
        func members(vms: [Int] = [1, 2, 3]) throws -> [[String]] {
            try etcdctl(["member", "list"], vms: vms).output.split(separator: "\n").map { $0.components(separatedBy: ", ") }.filter { $0.count == 6 }
        }

        func lab(_ arguments: String...) throws -> (status: Int32, output: String) {
            try LabTests.run(["\(LabTests.repository)/cluster/lab"] + arguments, environment: environment, root: root)
        }

        func etcdctl(_ arguments: [String], vms: [Int] = [1, 2, 3], timeout: Int = 5) throws -> (status: Int32, output: String) {
            let endpoints = vms.map { "https://\(LabTests.address($0)):2379" }.joined(separator: ",")
            return try LabTests.run(["ETCDCTL_API=3", "etcdctl", "--endpoints=\(endpoints)", "--dial-timeout=2s", "--command-timeout=\(timeout)s"] + tlsArguments + arguments, root: root)
        }

        /// `cluster/lab up N`: init in vm1, join in the others, healthy; etcdctl then uses vm1's admin certificate.
        func up(_ count: Int) throws -> (status: Int32, output: String) {
            let result = try lab("up", "\(count)")
            credentials = "\(dataDir(1))/pki"
            return result
        }

        /// The VM whose member leads, from `endpoint status` (nil when none answers as leader).
        func leader(among vms: [Int] = [1, 2, 3]) throws -> Int? {
            let rows = try etcdctl(["endpoint", "status"], vms: vms).output.split(separator: "\n").map { $0.components(separatedBy: ", ") }
            guard let row = rows.first(where: { $0.count > 4 && $0[4] == "true" }) else { return nil }
            return vms.first { row[0].contains(LabTests.address($0)) }
        }

        /// Whether `vm`'s member knows a leader (its own `endpoint status`; etcd leaves out a zero leader).
        func knowsLeader(vm: Int) throws -> Bool {
            let output = try etcdctl(["endpoint", "status", "-w", "json"], vms: [vm]).output
            guard let range = output.range(of: #""leader":\d+"#, options: .regularExpression) else { return false }
            return output[range].dropFirst(9) != "0"
        }

        func keyCount(vm: Int) throws -> Int {
            try etcdctl(["get", "k/", "--prefix", "--keys-only", "--consistency=s"], vms: [vm]).output
                .split(separator: "\n").filter { $0.hasPrefix("k/") }.count
        }

        func hashes() throws -> [Substring] {
            try etcdctl(["endpoint", "hashkv"]).output.split(separator: "\n").compactMap { $0.split(separator: ", ").last }
        }

        func logs() -> String {
            (1...4).map { vm in "vm\(vm):\n" + log(vm).split(separator: "\n").suffix(12).joined(separator: "\n") }
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

    @Test("lab up: init and joins make a healthy 3-voter TLS cluster; leader failover is timed; a partitioned VM refuses rather than serving stale data and catches up; a full stop and start loses nothing")
    func storeAcrossVMs() throws {
        let lab = try Lab()
        defer { lab.tearDown() }
        _ = try lab.lab("down")  // leftovers of an interrupted run
        let started = Date()
        let up = try lab.up(3)
        try #require(up.status == 0, "\(up.output)")
        print("lab: cluster/lab up 3 (init + 2 joins, healthy): \(Int(Date().timeIntervalSince(started) * 1000)) ms")
        #expect(up.output.contains("admin.conf") && up.output.contains("etcdctl"), "up says how to reach the cluster: \(up.output)")
        let voters = try lab.members()
        #expect(voters.count == 3 && voters.allSatisfy { $0[5] == "false" }, "\(voters)")
        // etcdctl with the admin certificate, through mTLS, against each VM alone.
        for vm in 1...3 {
            #expect(try lab.etcdctl(["put", "via/vm\(vm)", "\(vm)"], vms: [vm]).status == 0, "\(lab.logs())")
            #expect(try lab.etcdctl(["get", "via/", "--prefix", "--keys-only"], vms: [vm]).output.contains("via/vm\(vm)"))
        }
        // kubectl 1.33 with the admin.conf that init wrote, against each VM's API server (6443):
        // the bootstrap namespaces, and a ConfigMap made through vm1 read through the others.
        let kubectl = ["/usr/lib/google-cloud-sdk/bin/kubectl.1.33", "--kubeconfig", "\(lab.dataDir(1))/admin.conf", "--cache-dir", "\(lab.root)/kube-cache"]
        func kube(_ vm: Int, _ arguments: [String]) throws -> (status: Int32, output: String) {
            try LabTests.run(kubectl + ["--server", "https://\(LabTests.address(vm)):6443", "--request-timeout=10s"] + arguments, root: lab.root)
        }
        #expect(try eventually(20, every: 0.2) { try kube(1, ["get", "namespace", "kube-system", "-o", "name"]).status == 0 }, "\(lab.logs())")
        // (`create -f`: kubectl's typed commands such as `create configmap` send protobuf, not served yet.)
        try #"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "lab"}, "data": {"made": "vm1"}}"#
            .write(toFile: "\(lab.root)/configmap.json", atomically: true, encoding: .utf8)
        let configMap = try kube(1, ["create", "-f", "\(lab.root)/configmap.json"])
        #expect(configMap.output.contains("configmap/lab created"), "\(configMap.output)")
        for vm in 1...3 {
            let namespaces = try kube(vm, ["get", "namespaces", "-o", "name"])
            #expect(namespaces.output.contains("namespace/default") && namespaces.output.contains("namespace/kube-node-lease"), "vm\(vm): \(namespaces.output)")
            let made = try kube(vm, ["get", "configmap", "lab", "-o", "jsonpath={.data.made}"])
            #expect(made.status == 0 && made.output == "vm1", "vm\(vm): \(made.output)")
        }
        #expect(try lab.etcdctl(["put", "k/0", "0"]).status == 0)
        for number in 1..<50 { #expect(try lab.etcdctl(["put", "k/\(number)", "\(number)"]).status == 0) }

        // Leader failover: kill the leader's VM and time until a write succeeds on the others.
        let leader = try #require(try lab.leader(), "no leader\n\(lab.logs())")
        let others = [1, 2, 3].filter { $0 != leader }
        #expect(try lab.lab("kill", "vm\(leader)").status == 0)
        let killed = Date()
        var writes = 0
        let recovered = try eventually(20, every: 0.1) {
            let ok = try lab.etcdctl(["put", "k/failover", "yes"], vms: others, timeout: 1).status == 0
            if ok { writes += 1 }
            return ok
        }
        let failover = Date().timeIntervalSince(killed)
        print("lab: failover after killing the leader's VM: \(Int(failover * 1000)) ms")
        #expect(recovered, "\(lab.logs())")
        #expect(try lab.lab("start", "vm\(leader)").status == 0)
        #expect(try eventually(20, every: 0.1) { try lab.keyCount(vm: leader) == 51 }, "\(lab.logs())")

        // Partition one member: the majority serves; the isolated one refuses writes and
        // linearizable reads with an error, never an old value.
        let isolated = 3
        #expect(try lab.lab("partition", "vm\(isolated)").status == 0)
        let majority = [1, 2]
        #expect(try eventually(10, every: 0.1) { try lab.etcdctl(["put", "k/partitioned", "new"], vms: majority, timeout: 2).status == 0 }, "\(lab.logs())")
        #expect(try lab.etcdctl(["get", "k/partitioned", "--print-value-only"], vms: majority).output.contains("new"))
        // Until its election timeout the isolated member still believes in the old leader and
        // forwards a write to it; TCP delivers that proposal after the heal, and the write (which
        // timed out, an indeterminate answer in etcd too) would then be committed. Once it knows
        // it has no leader, its refusal is definite and the write must never appear.
        #expect(try eventually(10, every: 0.1) { try !lab.knowsLeader(vm: isolated) }, "\(lab.logs())")
        let staleWrite = try lab.etcdctl(["put", "k/minority", "x"], vms: [isolated], timeout: 3)
        #expect(staleWrite.output.contains("etcdserver: no leader"), "\(staleWrite.output)")
        #expect(staleWrite.status != 0, "\(staleWrite.output)")
        let staleRead = try lab.etcdctl(["get", "k/partitioned"], vms: [isolated], timeout: 3)
        #expect(staleRead.status != 0 && !staleRead.output.contains("new"), "\(staleRead.output)")
        #expect(staleRead.output.contains("etcdserver:"), "a clear error: \(staleRead.output)")
        #expect(try lab.lab("heal").status == 0)
        #expect(try eventually(20, every: 0.1) { try lab.keyCount(vm: isolated) == 52 }, "\(lab.logs())")
        #expect(try lab.etcdctl(["get", "k/minority"], vms: majority).output.contains("k/minority") == false)
        #expect(try eventually(10, every: 0.1) { let hashes = try lab.hashes(); return hashes.count == 3 && Set(hashes).count == 1 })

        // Stop all three, start all three: every acknowledged write is there.
        for vm in 1...3 { #expect(try lab.lab("kill", "vm\(vm)").status == 0) }
        for vm in 1...3 { #expect(try lab.lab("start", "vm\(vm)").status == 0) }
        var keys: [Substring] = []
        let complete = try eventually(30, every: 0.1) {
            keys = try lab.etcdctl(["get", "k/", "--prefix", "--keys-only"]).output.split(separator: "\n").filter { $0.hasPrefix("k/") }
            return keys.count == 52
        }
        #expect(complete, "keys: \(keys)\n\(lab.logs())")
        #expect(try lab.etcdctl(["get", "k/failover", "--print-value-only"]).output.contains("yes"))
    }

    @Test("a fourth control-plane VM stays a learner past voters-max and is promoted; a dead VM is removed and its certificates stop working; the leader leaves; writes go on and nothing is lost")
    func growPromoteRemoveLeave() throws {
        let lab = try Lab()
        defer { lab.tearDown() }
        _ = try lab.lab("down")
        let up = try lab.up(3)
        try #require(up.status == 0, "\(up.output)")
        let started = Date()
        let added = try lab.lab("add")
        try #require(added.status == 0, "\(added.output)")
        print("lab: cluster/lab add (a fourth VM joins as a learner): \(Int(Date().timeIntervalSince(started) * 1000)) ms")
        let adminConfig = "\(lab.dataDir(1))/admin.conf"
        func cluster(_ arguments: String...) throws -> (status: Int32, output: String) {
            try LabTests.run([ProcessCluster.siblingBinary, "cluster"] + arguments + ["--admin-config", adminConfig, "--endpoint", "https://\(LabTests.address(3)):2379"], root: lab.root)
        }
        func roles() throws -> [String: String] {
            Dictionary(try lab.members(vms: [3]).map { ($0[2], $0[5] == "true" ? "learner" : "voter") }) { first, _ in first }
        }
        #expect(try roles() == ["vm1": "voter", "vm2": "voter", "vm3": "voter", "vm4": "learner"], "voters-max is 3: \(added.output)")
        for number in 0..<20 { #expect(try lab.etcdctl(["put", "k/\(number)", "\(number)"], vms: [1, 3]).status == 0) }
        #expect(try eventually(20, every: 0.1) { try lab.keyCount(vm: 4) == 20 }, "the learner replicates")

        // Promote the learner by name; promoting it again, or an unknown name, is refused.
        let promoted = try cluster("promote", "vm4")
        #expect(promoted.status == 0 && promoted.output.contains("vm4"), "\(promoted.output)")
        #expect(try roles()["vm4"] == "voter")
        let again = try cluster("promote", "vm4")
        #expect(again.status != 0 && again.output.contains("vm4 is a voter already"), "\(again.output)")
        let unknown = try cluster("promote", "vm9")
        #expect(unknown.status != 0 && unknown.output.contains("no member named 'vm9'"), "\(unknown.output)")

        // vm2's machine is gone: remove it from another node.
        #expect(try lab.lab("kill", "vm2").status == 0)
        let removed = try cluster("remove", "vm2")
        #expect(removed.status == 0, "\(removed.output)")
        #expect(try roles() == ["vm1": "voter", "vm3": "voter", "vm4": "voter"])
        #expect(try lab.etcdctl(["put", "k/20", "20"], vms: [1, 3, 4]).status == 0)
        // The removed node's certificates (its store client, its peer) no longer open the store;
        // a current member's still do.
        func storeAs(_ vm: Int, _ name: String) throws -> (status: Int32, output: String) {
            let pki = "\(lab.dataDir(vm))/pki"
            return try LabTests.run(["ETCDCTL_API=3", "etcdctl", "--endpoints=https://\(LabTests.address(1)):2379", "--dial-timeout=2s", "--command-timeout=3s",
                                     "--cacert", "\(pki)/ca.crt", "--cert", "\(pki)/\(name).crt", "--key", "\(pki)/\(name).key", "get", "k/20"], root: lab.root)
        }
        for name in ["store-client", "peer"] {
            let refused = try storeAs(2, name)
            #expect(refused.status != 0, "\(name): \(refused.output)")
        }
        #expect(eventually(10) { lab.log(1).contains("which is not a member of this cluster") }, "\(lab.log(1).suffix(2000))")
        let accepted = try storeAs(3, "store-client")
        #expect(accepted.status == 0 && accepted.output.contains("20"), "\(accepted.output)")

        // The leader leaves: leadership moves first, the others go on serving.
        let leader = try #require(try lab.leader(among: [1, 3, 4]), "\(lab.logs())")
        let left = try lab.raftkube(leader, ["leave", "--data-dir", lab.dataDir(leader)])
        #expect(left.status == 0 && left.output.contains("handing leadership"), "\(left.output)")
        let rest = [1, 3, 4].filter { $0 != leader }
        #expect(try lab.members(vms: rest).count == 2)
        #expect(try eventually(10, every: 0.1) { try lab.etcdctl(["put", "k/21", "21"], vms: rest, timeout: 2).status == 0 }, "\(lab.logs())")
        for vm in rest {
            #expect(try eventually(10, every: 0.1) { try lab.keyCount(vm: vm) == 22 }, "vm\(vm) has every acknowledged write")
        }
        let restarted = try lab.raftkube(leader, ["start", "--data-dir", lab.dataDir(leader)])
        #expect(restarted.status != 0 && restarted.output.contains("left its cluster"), "\(restarted.output)")
    }

    @Test("the lab cleans up after itself: no namespace, link, rule or directory is left")
    func cleanUp() throws {
        let lab = try Lab()
        defer { lab.tearDown() }
        _ = try lab.lab("down")
        #expect(try lab.lab("up", "--bare", "2").status == 0)
        #expect(try lab.lab("partition", "vm2").status == 0)
        #expect(try lab.lab("up", "--bare", "2").status != 0, "a second up on a running lab is refused")
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

    @Test("init in vm1 prints a control-plane and a worker join command; vm2 and vm3 join and become voters; a worker gets no CA key and no store access; bad tokens, a worker token for the control plane, a wrong CA hash and reused data directories are refused and change nothing; failed attempts are limited per address; expired tokens are purged; status answers with vm1 down; a node restarts with no flags; leave; a backup restores into a new cluster")
    func initAndJoin() throws {
        let lab = try Lab()
        defer { lab.tearDown() }
        _ = try lab.lab("down")
        try #require(try lab.lab("up", "--bare", "3").status == 0)
        let started = Date()
        try lab.spawnRaftkube(1, ["init", "--advertise-address", Self.address(1), "--data-dir", lab.dataDir(1), "--node-name", "vm1", "--cluster-name", "lab"])
        let printed = eventually(30, every: 0.1) { lab.log(1).split(separator: "\n").filter { $0.hasPrefix("raftkube join ") }.count == 2 }
        try #require(printed, "\(lab.log(1))")
        let joinLines = lab.log(1).split(separator: "\n").filter { $0.hasPrefix("raftkube join ") }.map { $0.split(separator: " ").map(String.init) }
        // raftkube join ADDRESS:PORT --token T --ca-cert-hash H [--control-plane]
        let controlPlaneLine = try #require(joinLines.first { $0.last == "--control-plane" }, "\(joinLines)")
        let workerLine = try #require(joinLines.first { !$0.contains("--control-plane") }, "\(joinLines)")
        let endpoint = controlPlaneLine[2], token = controlPlaneLine[4], hash = controlPlaneLine[6], workerToken = workerLine[4]
        #expect(endpoint == "\(Self.address(1)):2381" && hash.hasPrefix("sha256:") && workerLine[6] == hash && workerToken != token, "\(joinLines)")
        #expect(lab.log(1).contains("[init] creating the cluster CA"), "progress lines: \(lab.log(1))")

        func join(_ vm: Int, token: String = token, hash: String = hash, dataDir: String? = nil, controlPlane: Bool = true) throws -> (status: Int32, output: String) {
            try lab.raftkube(vm, ["join", endpoint, "--token", token, "--ca-cert-hash", hash, "--data-dir", dataDir ?? lab.dataDir(vm),
                                  "--advertise-address", Self.address(vm), "--node-name", "vm\(vm)"] + (controlPlane ? ["--control-plane"] : []))
        }
        // Refusals: each says what to do, and nothing joins or is written. An unknown token and a
        // wrong secret get the same words (neither says which token IDs exist).
        let zeroHash = "sha256:" + String(repeating: "0", count: 64)
        let tokenID = String(token.prefix(6))
        let refusals: [(String, String, String)] = [
            (token, zeroHash, "not the pinned"),
            ("\(tokenID).\(String(repeating: "a", count: 16))", hash, "is not valid for this cluster (unknown, deleted, or a wrong secret)"),
            ("zzzzzz.0123456789abcdef", hash, "is not valid for this cluster (unknown, deleted, or a wrong secret)"),
            ("nope", hash, "[a-z0-9]{6}.[a-z0-9]{16}"),
            (token, "sha256:xyz", "64 lowercase hex digits"),
            // A worker token does not make a store member: no CA key, no membership.
            (workerToken, hash, "this token admits workers only"),
        ]
        for (badToken, badHash, message) in refusals {
            let refused = try join(2, token: badToken, hash: badHash)
            #expect(refused.status != 0 && refused.output.contains(message), "\(message): \(refused.output)")
            #expect(!FileManager.default.fileExists(atPath: "\(lab.dataDir(2))/node.json"))
            #expect(!FileManager.default.fileExists(atPath: "\(lab.dataDir(2))/pki/ca.key"))
        }
        #expect(try lab.members().count == 1)
        let again = try lab.raftkube(1, ["init", "--advertise-address", Self.address(1), "--data-dir", lab.dataDir(1)])
        #expect(again.status != 0 && again.output.contains("already holds node vm1"), "\(again.output)")

        // Two control-plane joins: learners first, then voters.
        for vm in [2, 3] {
            try lab.spawnRaftkube(vm, ["join", endpoint, "--token", token, "--ca-cert-hash", hash, "--data-dir", lab.dataDir(vm),
                                       "--advertise-address", Self.address(vm), "--node-name", "vm\(vm)", "--control-plane"])
        }
        let voters = try eventually(60, every: 0.1) {
            let rows = try lab.members()
            return rows.count == 3 && rows.allSatisfy { $0[5] == "false" && !$0[2].isEmpty }
        }
        let rows = try lab.members()
        #expect(voters, "\(rows)\n\(lab.logs())")
        print("lab: init + 2 joins to 3 voters: \(Int(Date().timeIntervalSince(started) * 1000)) ms")
        #expect(try lab.etcdctl(["put", "joined", "yes"], vms: [3]).status == 0)
        #expect(try lab.etcdctl(["get", "joined", "--print-value-only"], vms: [2]).output.contains("yes"))
        // Control-plane joiners hold their own peer certificate, bound to their member.
        let peerText = try Self.run(["openssl", "x509", "-noout", "-text", "-in", "\(lab.dataDir(2))/pki/peer.crt"], root: lab.root).output
        #expect(peerText.contains("raftkube:peers") && peerText.contains("URI:urn:raftkube:member:"), "\(peerText)")

        // A worker joins with the worker token: it gets its node certificate and the CA
        // certificate, never the CA key, and is no store member; the store refuses its certificate.
        let workerDir = "\(lab.root)/lab/vm3/worker"
        try lab.spawnRaftkube(3, ["join", endpoint, "--token", workerToken, "--ca-cert-hash", hash, "--data-dir", workerDir,
                                  "--advertise-address", Self.address(3), "--node-name", "w3"])
        #expect(eventually(30, every: 0.1) { lab.log(3).contains("(a worker: no store member, no CA key)") }, "\(lab.log(3))")
        #expect(FileManager.default.fileExists(atPath: "\(workerDir)/pki/node.crt") && FileManager.default.fileExists(atPath: "\(workerDir)/pki/ca.crt"))
        for absent in ["ca.key", "peer.crt", "store-client.crt", "admin.crt"] {
            #expect(!FileManager.default.fileExists(atPath: "\(workerDir)/pki/\(absent)"), "\(absent)")
        }
        let workerText = try Self.run(["openssl", "x509", "-noout", "-subject", "-in", "\(workerDir)/pki/node.crt"], root: lab.root).output
        #expect(workerText.contains("system:nodes") && workerText.contains("system:node:w3"), "\(workerText)")
        let workerStore = try Self.run(["ETCDCTL_API=3", "etcdctl", "--endpoints=https://\(Self.address(1)):2379", "--dial-timeout=2s", "--command-timeout=3s",
                                        "--cacert", "\(workerDir)/pki/ca.crt", "--cert", "\(workerDir)/pki/node.crt", "--key", "\(workerDir)/pki/node.key",
                                        "get", "/raftkube/bootstrap-tokens/", "--prefix"], root: lab.root)
        #expect(workerStore.status != 0, "\(workerStore.output)")
        #expect(try lab.members().count == 3)

        // Tokens: create one that expires at once; it is refused as expired; listed as expired,
        // then purged by the leader's janitor. Another is deleted by hand.
        let created = try lab.raftkube(2, ["token", "create", "--data-dir", lab.dataDir(2), "--ttl", "1s", "--description", "short", "--control-plane"])
        #expect(created.status == 0 && created.output.contains("--control-plane"), "\(created.output)")
        let shortToken = String(created.output.split(separator: "\n").first { $0.wholeMatch(of: /[a-z0-9]{6}\.[a-z0-9]{16}/) != nil } ?? "")
        Thread.sleep(forTimeInterval: 1.5)
        let expired = try join(3, token: shortToken, dataDir: "\(lab.root)/lab/vm3/other")
        #expect(expired.status != 0 && expired.output.contains("expired at"), "\(expired.output)")
        let listed = try lab.raftkube(1, ["token", "list", "--data-dir", lab.dataDir(1)])
        #expect(listed.output.contains(tokenID) && listed.output.contains(String(shortToken.prefix(6))) && !listed.output.contains(String(token.suffix(16)))
                && listed.output.contains("control-plane") && listed.output.contains("workers"), "\(listed.output)")
        #expect(try eventually(40, every: 1) { !(try lab.raftkube(1, ["token", "list", "--data-dir", lab.dataDir(1)]).output.contains(String(shortToken.prefix(6)))) },
                "the expired token was not purged")
        let another = try lab.raftkube(1, ["token", "create", "--data-dir", lab.dataDir(1)])
        let anotherID = String(another.output.prefix(6))
        #expect(try lab.raftkube(1, ["token", "list", "--data-dir", lab.dataDir(1)]).output.contains(anotherID))
        #expect(try lab.raftkube(1, ["token", "delete", "--data-dir", lab.dataDir(1), anotherID]).status == 0)
        #expect(!(try lab.raftkube(1, ["token", "list", "--data-dir", lab.dataDir(1)]).output.contains(anotherID)))

        // Guessing: after 5 wrong secrets from vm3's address, vm3 is refused even with a valid
        // token for a while; vm2's address is not.
        let other = "\(lab.root)/lab/vm3/guess"
        for guess in 0..<5 {
            let wrong = try join(3, token: "\(tokenID).\(String(repeating: "\(guess)", count: 16))", dataDir: other)
            #expect(wrong.status != 0 && wrong.output.contains("is not valid for this cluster"), "\(wrong.output)")
        }
        let limited = try join(3, token: token, dataDir: other)
        #expect(limited.status != 0 && limited.output.contains("too many failed join attempts from \(Self.address(3))"), "\(limited.output)")
        let elsewhere = try join(2, token: "\(tokenID).\(String(repeating: "x", count: 16))", dataDir: other)
        #expect(elsewhere.status != 0 && elsewhere.output.contains("is not valid for this cluster"), "\(elsewhere.output)")

        // A data directory of this cluster, or of another, is not joined again.
        let reused = try join(2)
        #expect(reused.status != 0 && reused.output.contains("already holds node vm2"), "\(reused.output)")
        let foreign = try join(2, hash: "sha256:" + String(repeating: "1", count: 64))
        #expect(foreign.status != 0 && foreign.output.contains("belongs to another cluster"), "\(foreign.output)")

        // Certificates: check-expiration lists them; renew re-signs the same key and names.
        let pki2 = "\(lab.dataDir(2))/pki"
        let expiration = try lab.raftkube(2, ["certs", "check-expiration", "--data-dir", lab.dataDir(2)])
        #expect(expiration.status == 0 && ["peer", "store-client", "node", "ca"].allSatisfy { expiration.output.contains($0) } && expiration.output.contains("364d"),
                "\(expiration.output)")
        let peerBefore = try PEMFiles.certificates("\(pki2)/peer.crt")[0]
        let renewed = try lab.raftkube(2, ["certs", "renew", "peer", "--data-dir", lab.dataDir(2)])
        #expect(renewed.status == 0 && renewed.output.contains("renewed peer"), "\(renewed.output)")
        let peerAfter = try PEMFiles.certificates("\(pki2)/peer.crt")[0]
        #expect(peerAfter.serialNumber != peerBefore.serialNumber)
        #expect(peerAfter.publicKey == peerBefore.publicKey && peerAfter.subject == peerBefore.subject)
        #expect(CertificateAuthority.memberID(of: peerAfter) == CertificateAuthority.memberID(of: peerBefore))
        let unknownName = try lab.raftkube(2, ["certs", "renew", "bogus", "--data-dir", lab.dataDir(2)])
        #expect(unknownName.status != 0 && unknownName.output.contains("no certificate named 'bogus'"), "\(unknownName.output)")

        // Restart with no flags but the data directory: the same member, serving. Its peer
        // certificate had 10 days left: the node renews it as it starts.
        #expect(try lab.lab("kill", "vm2").status == 0)
        let ca2 = CertificateAuthority(certificate: try PEMFiles.certificates("\(pki2)/ca.crt")[0], privateKey: try PEMFiles.privateKey("\(pki2)/ca.key"))
        let shortLived = try ca2.issue(profile: .peer(memberID: try #require(CertificateAuthority.memberID(of: peerAfter))), commonName: "vm2",
                                       dnsNames: ["vm2", "localhost"], ipAddresses: [Self.address(2), "127.0.0.1"], publicKey: peerAfter.publicKey, days: 10)
        try PEMFiles.write([shortLived], to: "\(pki2)/peer.crt")
        try lab.spawnRaftkube(2, ["start", "--data-dir", lab.dataDir(2), "--certificate-check-interval", "1"])
        #expect(try eventually(30, every: 0.1) { try lab.etcdctl(["get", "joined", "--print-value-only", "--consistency=s"], vms: [2]).output.contains("yes") }, "\(lab.logs())")
        #expect(try lab.members().count == 3)
        let startRenewed = try PEMFiles.certificates("\(pki2)/peer.crt")[0]
        #expect(startRenewed.notValidAfter.timeIntervalSinceNow > 300 * 86_400 && lab.log(2).contains("renewed a certificate"), "\(startRenewed.notValidAfter)")

        // While it runs (checking every second here, hourly by default), a certificate that falls
        // due is renewed, and the next connection to the client and the peer port presents the
        // renewed one: no restart.
        let dueSoon = try ca2.issue(profile: .peer(memberID: try #require(CertificateAuthority.memberID(of: peerAfter))), commonName: "vm2",
                                    dnsNames: ["vm2", "localhost"], ipAddresses: [Self.address(2), "127.0.0.1"], publicKey: peerAfter.publicKey, days: 20)
        try PEMFiles.write([dueSoon], to: "\(pki2)/peer.crt")
        #expect(try eventually(20, every: 0.2) { try PEMFiles.certificates("\(pki2)/peer.crt")[0].notValidAfter.timeIntervalSinceNow > 300 * 86_400 }, "\(lab.log(2))")
        let runRenewed = try PEMFiles.certificates("\(pki2)/peer.crt")[0]
        #expect(runRenewed.serialNumber != dueSoon.serialNumber && runRenewed.serialNumber != startRenewed.serialNumber)
        for port in [2379, 2380] {
            var presented = ""
            let seen = try eventually(10, every: 0.2) {
                presented = try Self.presentedSerial(vm: 2, port: port, root: lab.root)
                return presented == Self.hex(runRenewed.serialNumber)
            }
            #expect(seen, "port \(port) presents serial \(presented), the renewed certificate is \(Self.hex(runRenewed.serialNumber))")
        }
        #expect(lab.log(2).components(separatedBy: "renewed a certificate").count >= 3, "\(lab.log(2))")
        // vm2 restarted a moment ago (a serializable read answered before it heard a leader).
        #expect(try eventually(30, every: 0.2) { try lab.knowsLeader(vm: 2) }, "\(lab.log(2))")
        let afterRenewal = try lab.etcdctl(["put", "after-renewal", "yes"], vms: [2])
        #expect(afterRenewal.status == 0, "\(afterRenewal.output)\n\(lab.log(2))")

        // cluster members / status from the host with the admin config init wrote.
        let adminConfig = "\(lab.dataDir(1))/admin.conf"
        let listing = try Self.run([ProcessCluster.siblingBinary, "cluster", "members", "--admin-config", adminConfig], root: lab.root)
        #expect(listing.status == 0 && ["vm1", "vm2", "vm3"].allSatisfy { listing.output.contains($0) }
                && listing.output.components(separatedBy: " voter ").count == 4, "\(listing.output)")
        let status = try Self.run([ProcessCluster.siblingBinary, "cluster", "status", "--admin-config", adminConfig], root: lab.root)
        #expect(status.status == 0 && status.output.components(separatedBy: " leader ").count == 2
                && status.output.components(separatedBy: " follower ").count == 3, "\(status.output)")
        let noConfig = try Self.run([ProcessCluster.siblingBinary, "cluster", "status", "--admin-config", "/nonexistent/admin.conf"], root: lab.root)
        #expect(noConfig.status != 0 && noConfig.output.contains("cannot read the admin config"), "\(noConfig.output)")
        // With vm1 (the admin config's server) down, status still answers from the other members.
        #expect(try lab.lab("kill", "vm1").status == 0)
        var withoutVM1 = (status: Int32(-1), output: "")
        let answered = try eventually(20, every: 0.5) {
            // A new leader may take a moment when vm1 led.
            withoutVM1 = try Self.run([ProcessCluster.siblingBinary, "cluster", "status", "--admin-config", adminConfig], root: lab.root)
            return withoutVM1.status == 0 && withoutVM1.output.contains("unreachable") && withoutVM1.output.components(separatedBy: " leader ").count == 2
        }
        #expect(answered, "\(withoutVM1.output)")
        try lab.spawnRaftkube(1, ["start", "--data-dir", lab.dataDir(1)])
        #expect(try eventually(30, every: 0.1) { try lab.etcdctl(["get", "joined", "--print-value-only", "--consistency=s"], vms: [1]).output.contains("yes") }, "\(lab.logs())")
        #expect(try eventually(30, every: 0.1) { try lab.knowsLeader(vm: 1) }, "\(lab.logs())")

        // A follower leaves, then the leader leaves: the rest keeps serving.
        let leader = try #require(try lab.leader())
        let follower = try #require([1, 2, 3].first { $0 != leader })
        let left = try lab.raftkube(follower, ["leave", "--data-dir", lab.dataDir(follower)])
        #expect(left.status == 0 && left.output.contains("has left"), "\(left.output)")
        #expect(try eventually(10, every: 0.1) { try lab.members().count == 2 })
        let restart = try lab.raftkube(follower, ["start", "--data-dir", lab.dataDir(follower)])
        #expect(restart.status != 0 && restart.output.contains("left its cluster"), "\(restart.output)")
        let leaderLeft = try lab.raftkube(leader, ["leave", "--data-dir", lab.dataDir(leader)])
        #expect(leaderLeft.status == 0 && leaderLeft.output.contains("handing leadership"), "\(leaderLeft.output)")
        let last = try #require([1, 2, 3].first { $0 != leader && $0 != follower })
        #expect(try eventually(15, every: 0.1) { try lab.etcdctl(["put", "after-leave", "yes"], vms: [last], timeout: 2).status == 0 }, "\(lab.logs())")
        #expect(try lab.etcdctl(["member", "list"], vms: [last]).output.split(separator: "\n").count == 1)

        // Back up with `etcdctl snapshot save`; a new cluster made by `init --restore` holds the
        // same keys at the same revisions, and its own single member. A damaged file is refused.
        let backup = "\(lab.root)/backup.db"
        let saved = try lab.etcdctl(["snapshot", "save", backup], vms: [last])
        #expect(saved.status == 0, "\(saved.output)")
        let before = try lab.etcdctl(["get", "joined", "-w", "json"], vms: [last]).output
        #expect(before.contains("\"mod_revision\""), "\(before)")
        #expect(try lab.lab("kill", "vm\(last)").status == 0)
        let contents = try Data(contentsOf: URL(fileURLWithPath: backup))
        let damaged = "\(lab.root)/damaged.db"
        try contents.prefix(contents.count / 2).write(to: URL(fileURLWithPath: damaged))
        let restoredDir = "\(lab.root)/lab/vm\(last)/restored"
        for bad in [damaged, "/etc/hostname", "\(lab.root)/missing.db"] {
            let refused = try lab.raftkube(last, ["init", "--advertise-address", Self.address(last), "--data-dir", restoredDir, "--restore", bad])
            #expect(refused.status != 0 && refused.output.contains("--restore:"), "\(bad): \(refused.output)")
            #expect(!FileManager.default.fileExists(atPath: "\(restoredDir)/node.json") && !FileManager.default.fileExists(atPath: "\(restoredDir)/store"))
        }
        try lab.spawnRaftkube(last, ["init", "--advertise-address", Self.address(last), "--data-dir", restoredDir, "--node-name", "restored", "--restore", backup])
        lab.credentials = "\(restoredDir)/pki"
        let after = try eventually(30, every: 0.2) { try lab.etcdctl(["get", "joined", "-w", "json"], vms: [last]).output.contains("\"kvs\"") }
        #expect(after, "\(lab.logs())")
        func keyFields(_ json: String) -> [Substring] { json.matches(of: /"(create_revision|mod_revision|version|value)":[^,}]+/).map { $0.output.0 } }
        let restored = try lab.etcdctl(["get", "joined", "-w", "json"], vms: [last]).output
        #expect(keyFields(restored) == keyFields(before) && !keyFields(before).isEmpty, "before: \(before)\nafter: \(restored)")
        #expect(try lab.etcdctl(["get", "after-leave", "--print-value-only"], vms: [last]).output.contains("yes"))
        let members = try lab.members(vms: [last])
        #expect(members.count == 1 && members.first?[2] == "restored", "\(members)")
        #expect(try lab.etcdctl(["put", "after-restore", "yes"], vms: [last]).status == 0)
    }
}
