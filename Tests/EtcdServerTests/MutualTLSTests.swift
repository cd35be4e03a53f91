import ClusterHarness
import ClusterPKI
import Crypto
import EtcdServer
import Foundation
import Logging
import NIOCore
import NIOPosix
import Raft
import RaftRuntime
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

    /// The member ID of member `member` of `cluster` (from its peer URL and the default token).
    static func memberID(_ cluster: StoreCluster, _ member: Int) -> UInt64 {
        StoreMember.memberID(peerURL: "https://127.0.0.1:\(cluster.peerPort(member))", clusterToken: "etcd-cluster")
    }

    /// Opens a TLS connection to a peer port presenting `identity`, writes one frame of `messages`
    /// (the transport's format), waits a moment and closes.
    static func sendPeerFrame(_ messages: [Message], port: Int, identity: TLSIdentity) async throws {
        let securer = try identity.clientSecurer(requiring: [CertificateAuthority.peerOrganization], memberBound: true,
                                                 logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }, context: "test peer")
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try securer(channel) } }
            .connect(host: "127.0.0.1", port: port).get()
        var body = ByteBuffer()
        body.writeInteger(UInt8(0))  // a batch of messages
        body.writeInteger(UInt32(messages.count), endianness: .little)
        for message in messages { MessageCodec.encode(message, into: &body) }
        var frame = ByteBuffer()
        frame.writeInteger(UInt32(body.readableBytes), endianness: .little)
        frame.writeBuffer(&body)
        try await channel.writeAndFlush(frame).get()
        try await Task.sleep(for: .milliseconds(500))
        try? await channel.close()
    }

    /// Member `member`'s Raft term, from etcdctl's JSON status.
    static func term(_ cluster: StoreCluster, _ member: Int) throws -> UInt64? {
        let output = try cluster.etcdctl(["endpoint", "status", "-w", "json"], endpoints: cluster.endpoint(member)).stdout
        return output.firstMatch(of: /"raft_term":(\d+)/).flatMap { UInt64($0.output.1) }
    }

    @Test("etcdctl with the admin certificate works on every member and through a follower's forwarding; no certificate, another CA's, an expired one, a worker's, or any non-peer certificate on the peer port are refused and logged with the reason; a peer cannot speak for another member; the data directory is private")
    func mutualTLS() async throws {
        let cluster = try StoreCluster(name: "tls")
        cluster.scheme = "https"
        defer { cluster.tearDown() }
        let pki = cluster.root + "/pki"
        let ca = try CertificateAuthority.create(clusterName: "tls-test")
        let caFile = "\(pki)/ca.crt"
        try PEMFiles.write([ca.certificate], to: caFile)
        for member in 1...3 {
            let (certificate, key) = try Self.issue("m\(member)", .peer(memberID: Self.memberID(cluster, member)), by: ca, into: pki)
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

        // A worker's (kubelet's) certificate is refused by the store API; an API server's store
        // client certificate is accepted.
        let (workerCertificate, workerKey) = try Self.issue("system:node:w1", .node, by: ca, into: pki)
        cluster.etcdctlArguments = ["--cacert", caFile, "--cert", workerCertificate, "--key", workerKey]
        let worker = try cluster.etcdctl(["put", "worker", "x"], endpoints: endpoint, commandTimeout: 3)
        #expect(worker.status != 0, "\(worker.output)")
        #expect(eventually(15) { Self.log(cluster, 1).contains("is not a raftkube:peers or raftkube:store-clients or system:masters certificate") },
                "\(Self.log(cluster, 1).suffix(2000))")
        let (clientCertificate, clientKey) = try Self.issue("apiserver", .client(organization: CertificateAuthority.storeClientOrganization), by: ca, into: pki)
        cluster.etcdctlArguments = ["--cacert", caFile, "--cert", clientCertificate, "--key", clientKey]
        let apiServer = try cluster.etcdctl(["put", "k4", "v4"], endpoints: endpoint, commandTimeout: 5)
        #expect(apiServer.status == 0, "\(apiServer.output)")
        cluster.etcdctlArguments = saved

        // The peer port takes only peer certificates: the administrator's and a worker's are refused there.
        for (certificate, key) in [(adminCertificate, adminKey), (workerCertificate, workerKey)] {
            let probe = Process()
            probe.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
            probe.arguments = ["5", "openssl", "s_client", "-connect", "127.0.0.1:\(cluster.peerPort(2))", "-cert", certificate, "-key", key, "-CAfile", caFile]
            probe.standardInput = FileHandle.nullDevice
            probe.standardOutput = FileHandle.nullDevice
            probe.standardError = FileHandle.nullDevice
            try probe.run()
            probe.waitUntilExit()
        }
        #expect(eventually(15) { Self.log(cluster, 2).components(separatedBy: "is not a raftkube:peers certificate").count >= 3 }, "\(Self.log(cluster, 2).suffix(2000))")

        // A peer's certificate speaks for its own member only: m2's connection to m3 claiming to
        // be m1 and telling it to campaign (TimeoutNow) is dropped and logged, and m3's term stays
        // as it was (had it campaigned, the term would have grown). The claimed sender is never m2
        // itself, whoever leads: a TimeoutNow that m2 sends as m2 would be genuine.
        let follower = 3
        let claimed = Self.memberID(cluster, 1)
        let termBefore = try #require(try Self.term(cluster, follower))
        let m2 = try TLSIdentity.load(certificate: "\(pki)/m2.crt", key: "\(pki)/m2.key", trustedCA: caFile)
        let forged = Message(type: .timeoutNow, from: claimed, to: Self.memberID(cluster, follower), term: termBefore)
        try await Self.sendPeerFrame([forged], port: cluster.peerPort(follower), identity: m2)
        #expect(eventually(15) { Self.log(cluster, follower).contains("dropped a peer message whose sender is not the connection's member") },
                "\(Self.log(cluster, follower).suffix(2000))")
        try await Task.sleep(for: .seconds(1))
        #expect(try Self.term(cluster, follower) == termBefore)
        #expect(try cluster.etcdctl(["put", "k5", "v5"]).status == 0)

        let keys = try cluster.etcdctl(["get", "", "--prefix", "--keys-only"]).stdout.split(separator: "\n").filter { !$0.isEmpty }
        #expect(Set(keys) == ["k1", "k2", "k3", "k4", "k5", "ready"], "\(keys)")

        // Everything under a member's data directory is the owner's alone.
        let data = "\(cluster.root)/m1"
        let paths = try FileManager.default.subpathsOfDirectory(atPath: data).map { "\(data)/\($0)" } + [data]
        #expect(paths.count > 5, "\(paths)")
        for path in paths {
            let mode = try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber).intValue
            #expect(mode & 0o077 == 0, "\(path) has mode \(String(mode, radix: 8))")
        }
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
        let (certificate, _) = try Self.issue("one", .peer(memberID: 1), by: ca, into: pki)
        let (_, otherKey) = try Self.issue("two", .peer(memberID: 2), by: ca, into: pki)
        let cases: [([String], String)] = [
            (["--listen-client-urls", "https://127.0.0.1:\(cluster.clientPort(1))"], "https URLs need --cert-file, --key-file and --trusted-ca-file"),
            (["--listen-client-urls", client, "--cert-file", "/nonexistent.crt"], "go together"),
            (["--listen-client-urls", client, "--cert-file", "a", "--key-file", "b", "--trusted-ca-file", "c"], "the URLs must be https"),
            (["--listen-client-urls", "https://127.0.0.1:\(cluster.clientPort(1))", "--cert-file", "/nonexistent.crt", "--key-file", "b", "--trusted-ca-file", "c"], "cannot read /nonexistent.crt"),
            (["--listen-client-urls", client, "--client-cert-auth"], "--client-cert-auth needs"),
            (["--listen-client-urls", https, "--cert-file", certificate, "--key-file", otherKey, "--trusted-ca-file", "\(pki)/ca.crt"], "does not belong to the certificate"),
            (["--listen-client-urls", https, "--cert-file", certificate, "--key-file", "\(pki)/ca.crt", "--trusted-ca-file", "\(pki)/ca.crt"], "not a PEM private key"),
            // Plain http off loopback is refused unless asked for by name.
            (["--listen-client-urls", "http://0.0.0.0:\(cluster.clientPort(1))"], "plain http on a network address"),
            (["--listen-client-urls", client, "--advertise-client-urls", "http://10.77.0.99:\(cluster.clientPort(1))"], "--insecure-plaintext"),
        ]
        for (arguments, message) in cases {
            let (status, output) = try run(arguments)
            #expect(status != 0 && output.contains(message), "\(arguments): \(output)")
        }
        // A data directory another process holds is refused at once (a second member on it used
        // to hang, deaf to SIGTERM).
        try FileManager.default.createDirectory(atPath: "\(cluster.root)/a", withIntermediateDirectories: true)
        let holder = open("\(cluster.root)/a/store.lock", O_RDWR | O_CREAT, 0o600)
        defer { close(holder) }
        #expect(flock(holder, LOCK_EX | LOCK_NB) == 0)
        let (status, output) = try run(["--listen-client-urls", client])
        #expect(status != 0 && output.contains("is in use by another raftkube process"), "\(output)")
    }
}
