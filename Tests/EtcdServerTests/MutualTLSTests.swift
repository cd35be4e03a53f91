import ClusterHarness
import ClusterPKI
import Crypto
import Foundation
import Testing
import X509

/// The store with TLS everywhere: etcd's certificate options, etcdctl with the cluster's admin
/// certificate, and refusals that name their reason in the member's log.
@Suite("Store over mutual TLS", .serialized)
struct MutualTLSTests {
    /// Issues a certificate into `directory`/`name`.crt and .key; returns (certificate, key) paths.
    static func issue(_ name: String, _ profile: CertificateAuthority.Profile, by authority: CertificateAuthority, into directory: String,
                      now: Date = Date(), days: Int = 30) throws -> (String, String) {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let certificate = try authority.issue(profile: profile, commonName: name, dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"],
                                              publicKey: key.publicKey, now: now, days: days)
        try PEMFiles.write([certificate], to: "\(directory)/\(name).crt")
        try PEMFiles.write(key, to: "\(directory)/\(name).key")
        return ("\(directory)/\(name).crt", "\(directory)/\(name).key")
    }

    static func log(_ cluster: StoreCluster, _ member: Int) -> String {
        (try? String(contentsOfFile: "\(cluster.root)/m\(member).log", encoding: .utf8)) ?? ""
    }

    @Test("etcdctl with the admin certificate works on every member and through a follower's forwarding; no certificate, another CA's, an expired one, or a non-node certificate on the peer port are refused and logged with the reason")
    func mutualTLS() throws {
        let cluster = try StoreCluster(name: "tls")
        cluster.scheme = "https"
        defer { cluster.tearDown() }
        let pki = cluster.root + "/pki"
        let ca = try CertificateAuthority.create(clusterName: "tls-test")
        let caFile = "\(pki)/ca.crt"
        try PEMFiles.write([ca.certificate], to: caFile)
        for member in 1...3 {
            let (certificate, key) = try Self.issue("m\(member)", .node, by: ca, into: pki)
            cluster.memberArguments[member] = [
                "--cert-file", certificate, "--key-file", key, "--trusted-ca-file", caFile, "--client-cert-auth",
                "--peer-cert-file", certificate, "--peer-key-file", key, "--peer-trusted-ca-file", caFile,
            ]
        }
        let (adminCertificate, adminKey) = try Self.issue("admin", .client(organization: CertificateAuthority.adminOrganization), by: ca, into: pki)
        cluster.etcdctlArguments = ["--cacert", caFile, "--cert", adminCertificate, "--key", adminKey]
        try cluster.start()
        try cluster.waitUntilServing()

        // Every member serves the administrator; writes on one are read on the others.
        for member in 1...3 {
            #expect(try cluster.etcdctl(["put", "k\(member)", "v\(member)"], endpoints: cluster.endpoint(member)).status == 0)
        }
        let all = try cluster.etcdctl(["get", "k", "--prefix", "--print-value-only"], endpoints: cluster.endpoint(2))
        #expect(all.stdout.split(separator: "\n") == ["v1", "v2", "v3"], "\(all.output)")
        let status = try cluster.etcdctl(["endpoint", "status", "--cluster"])
        #expect(status.status == 0 && status.stdout.components(separatedBy: "https://127.0.0.1").count == 4, "\(status.output)")

        // A follower forwards a membership change to the leader over TLS (with its node certificate).
        let rows = status.stdout.split(separator: "\n").map { $0.components(separatedBy: ", ") }
        let followerURL = try #require(rows.first { $0.count > 4 && $0[4] == "false" }?[0])
        let add = try cluster.etcdctl(["member", "add", "m4", "--learner", "--peer-urls=https://127.0.0.1:\(cluster.peerPort(4))"], endpoints: followerURL)
        #expect(add.status == 0 && add.output.contains("added to cluster"), "\(add.output)")
        let id4 = try #require(add.stdout.split(separator: " ").dropFirst().first.map(String.init))
        let remove = try cluster.etcdctl(["member", "remove", id4], endpoints: followerURL)
        #expect(remove.status == 0, "\(remove.output)")

        // Refused clients: none of them writes anything.
        let endpoint = cluster.endpoint(1)
        let saved = cluster.etcdctlArguments
        cluster.etcdctlArguments = ["--cacert", caFile]
        let anonymous = try cluster.etcdctl(["put", "anonymous", "x"], endpoints: endpoint, commandTimeout: 3)
        #expect(anonymous.status != 0, "\(anonymous.output)")

        let other = try CertificateAuthority.create(clusterName: "elsewhere")
        let (foreignCertificate, foreignKey) = try Self.issue("intruder", .client(organization: CertificateAuthority.adminOrganization), by: other, into: pki)
        cluster.etcdctlArguments = ["--cacert", caFile, "--cert", foreignCertificate, "--key", foreignKey]
        let foreign = try cluster.etcdctl(["put", "foreign", "x"], endpoints: endpoint, commandTimeout: 3)
        #expect(foreign.status != 0, "\(foreign.output)")
        #expect(eventually(15) { Self.log(cluster, 1).contains("was not issued by this cluster's CA") }, "\(Self.log(cluster, 1).suffix(2000))")

        let (staleCertificate, staleKey) = try Self.issue("stale", .client(organization: CertificateAuthority.adminOrganization), by: ca, into: pki,
                                                          now: Date().addingTimeInterval(-10 * 86_400), days: 1)
        cluster.etcdctlArguments = ["--cacert", caFile, "--cert", staleCertificate, "--key", staleKey]
        let stale = try cluster.etcdctl(["put", "stale", "x"], endpoints: endpoint, commandTimeout: 3)
        #expect(stale.status != 0, "\(stale.output)")
        #expect(eventually(15) { Self.log(cluster, 1).contains("expired") }, "\(Self.log(cluster, 1).suffix(2000))")
        cluster.etcdctlArguments = saved

        // The peer port takes only node certificates: the administrator's is refused there.
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        probe.arguments = ["5", "openssl", "s_client", "-connect", "127.0.0.1:\(cluster.peerPort(2))", "-cert", adminCertificate, "-key", adminKey, "-CAfile", caFile]
        probe.standardInput = FileHandle.nullDevice
        probe.standardOutput = FileHandle.nullDevice
        probe.standardError = FileHandle.nullDevice
        try probe.run()
        probe.waitUntilExit()
        #expect(eventually(15) { Self.log(cluster, 2).contains("is not a raftkube:nodes certificate") }, "\(Self.log(cluster, 2).suffix(2000))")

        let keys = try cluster.etcdctl(["get", "", "--prefix", "--keys-only"]).stdout.split(separator: "\n").filter { !$0.isEmpty }
        #expect(Set(keys) == ["k1", "k2", "k3", "ready"], "\(keys)")
    }

    @Test("certificate options that do not fit the URLs are usage errors")
    func badOptions() throws {
        let cluster = try StoreCluster(name: "tls-options")
        defer { cluster.tearDown() }
        let binary = ProcessCluster.siblingBinary
        func run(_ arguments: [String]) throws -> (Int32, String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = ["store", "--name", "a", "--data-dir", "\(cluster.root)/a", "--initial-cluster", "a=http://127.0.0.1:\(cluster.peerPort(1))",
                                 "--listen-peer-urls", "http://127.0.0.1:\(cluster.peerPort(1))"] + arguments
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            try process.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: data, as: UTF8.self))
        }
        let client = "http://127.0.0.1:\(cluster.clientPort(1))"
        let https = "https://127.0.0.1:\(cluster.clientPort(1))"
        let ca = try CertificateAuthority.create(clusterName: "options")
        let pki = cluster.root + "/pki"
        try PEMFiles.write([ca.certificate], to: "\(pki)/ca.crt")
        let (certificate, _) = try Self.issue("one", .node, by: ca, into: pki)
        let (_, otherKey) = try Self.issue("two", .node, by: ca, into: pki)
        let cases: [([String], String)] = [
            (["--listen-client-urls", "https://127.0.0.1:\(cluster.clientPort(1))"], "https URLs need --cert-file, --key-file and --trusted-ca-file"),
            (["--listen-client-urls", client, "--cert-file", "/nonexistent.crt"], "go together"),
            (["--listen-client-urls", client, "--cert-file", "a", "--key-file", "b", "--trusted-ca-file", "c"], "the URLs must be https"),
            (["--listen-client-urls", "https://127.0.0.1:\(cluster.clientPort(1))", "--cert-file", "/nonexistent.crt", "--key-file", "b", "--trusted-ca-file", "c"], "cannot read /nonexistent.crt"),
            (["--listen-client-urls", client, "--client-cert-auth"], "--client-cert-auth needs"),
            (["--listen-client-urls", https, "--cert-file", certificate, "--key-file", otherKey, "--trusted-ca-file", "\(pki)/ca.crt"], "does not belong to the certificate"),
            (["--listen-client-urls", https, "--cert-file", certificate, "--key-file", "\(pki)/ca.crt", "--trusted-ca-file", "\(pki)/ca.crt"], "not a PEM private key"),
        ]
        for (arguments, message) in cases {
            let (status, output) = try run(arguments)
            #expect(status != 0 && output.contains(message), "\(arguments): \(output)")
        }
    }
}
