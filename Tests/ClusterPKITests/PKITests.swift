import ClusterPKI
import Crypto
import Foundation
import Testing
import X509

/// The cluster CA, node and client certificates, the CA hash and bootstrap tokens, checked
/// against OpenSSL where it has an opinion.
@Suite("Cluster PKI")
struct PKITests {
    static func nodeKey() -> Certificate.PrivateKey { Certificate.PrivateKey(P256.Signing.PrivateKey()) }

    /// A scratch directory removed by the caller.
    static func directory() throws -> String {
        let path = NSTemporaryDirectory() + "raftkube-pki-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func openssl(_ arguments: [String], input: String? = nil) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", arguments.joined(separator: " ")]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test("a peer certificate verifies under the CA with OpenSSL, names its addresses and its member, and is a TLS server and client")
    func nodeCertificateAsOpenSSLSeesIt() throws {
        let path = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let ca = try CertificateAuthority.create(clusterName: "lab")
        let key = Self.nodeKey()
        let node = try ca.issue(profile: .peer(memberID: 0xabc123), commonName: "vm1", dnsNames: ["vm1", "localhost"], ipAddresses: ["10.77.0.11", "127.0.0.1", "::1"], publicKey: key.publicKey)
        try PEMFiles.write([ca.certificate], to: "\(path)/ca.crt")
        try PEMFiles.write([node], to: "\(path)/node.crt")
        try PEMFiles.write(key, to: "\(path)/node.key")

        let verify = try Self.openssl(["openssl verify -purpose sslserver -CAfile", "\(path)/ca.crt", "\(path)/node.crt"])
        #expect(verify.status == 0 && verify.output.contains("OK"), "\(verify.output)")
        let asClient = try Self.openssl(["openssl verify -purpose sslclient -CAfile", "\(path)/ca.crt", "\(path)/node.crt"])
        #expect(asClient.status == 0, "\(asClient.output)")
        let text = try Self.openssl(["openssl x509 -noout -text -in", "\(path)/node.crt"]).output
        for name in ["DNS:vm1", "DNS:localhost", "IP Address:10.77.0.11", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1", "URI:urn:raftkube:member:abc123"] {
            #expect(text.contains(name), "\(name) missing from\n\(text)")
        }
        #expect(text.contains("O = raftkube:peers, CN = vm1") || text.contains("O=raftkube:peers, CN=vm1"), "\(text)")
        #expect(CertificateAuthority.memberID(of: node) == 0xabc123)
        // The key file is the owner's alone, and matches the certificate.
        let mode = try #require(try FileManager.default.attributesOfItem(atPath: "\(path)/node.key")[.posixPermissions] as? NSNumber)
        #expect(mode.intValue == 0o600)
        #expect(try PEMFiles.privateKey("\(path)/node.key").publicKey == node.publicKey)
        #expect(try PEMFiles.certificates("\(path)/node.crt") == [node])
    }

    @Test("the CA hash is kubeadm's: SHA-256 of the DER public key, as the openssl pipeline computes it")
    func caHashMatchesOpenSSL() throws {
        let path = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let ca = try CertificateAuthority.create(clusterName: "lab")
        try PEMFiles.write([ca.certificate], to: "\(path)/ca.crt")
        let pipeline = try Self.openssl(["openssl x509 -pubkey -in", "\(path)/ca.crt", "| openssl pkey -pubin -outform der | sha256sum"])
        let expected = "sha256:" + (pipeline.output.split(separator: " ").first.map(String.init) ?? "")
        #expect(ca.hash == expected, "\(pipeline.output)")
        try CertificateAuthority.validateHash(ca.hash)
        for bad in ["", "sha256:", "sha1:" + String(repeating: "a", count: 64), "sha256:" + String(repeating: "A", count: 64), "sha256:" + String(repeating: "a", count: 63), ca.hash + "0"] {
            #expect(throws: PKIError.self, "\(bad)") { try CertificateAuthority.validateHash(bad) }
        }
        #expect(CertificateAuthority.hash(of: try CertificateAuthority.create(clusterName: "lab").certificate) != ca.hash)
    }

    @Test("trust refuses expired certificates, other clusters' certificates, and roles that a port does not take, saying which")
    func refusals() async throws {
        let ca = try CertificateAuthority.create(clusterName: "one")
        let trust = ClusterTrust(ca: ca.certificate)
        let key = Self.nodeKey()
        let peers: Set<String> = [CertificateAuthority.peerOrganization]
        let peer = try ca.issue(profile: .peer(memberID: 7), commonName: "vm1", publicKey: key.publicKey)
        #expect(await trust.refusal(of: [peer], requiring: peers, memberBound: true) == nil)
        #expect(await trust.refusal(of: [peer], requiring: CertificateAuthority.storeAPIOrganizations) == nil)
        // A node's (kubelet's, a worker's) certificate is neither a peer nor a store client.
        let node = try ca.issue(profile: .node, commonName: "system:node:w1", publicKey: key.publicKey)
        let nodeAsPeer = await trust.refusal(of: [node], requiring: peers, memberBound: true)
        #expect(nodeAsPeer?.contains("is not a raftkube:peers certificate") == true, "\(nodeAsPeer ?? "accepted")")
        let nodeOnStore = await trust.refusal(of: [node], requiring: CertificateAuthority.storeAPIOrganizations)
        #expect(nodeOnStore?.contains("is not a raftkube:peers or raftkube:store-clients or system:masters certificate") == true, "\(nodeOnStore ?? "accepted")")
        #expect(CertificateAuthority.memberID(of: node) == nil)
        // A store client (API server) uses the store, but is no peer.
        let storeClient = try ca.issue(profile: .client(organization: CertificateAuthority.storeClientOrganization), commonName: "apiserver", publicKey: key.publicKey)
        #expect(await trust.refusal(of: [storeClient], requiring: CertificateAuthority.storeAPIOrganizations) == nil)
        #expect(await trust.refusal(of: [storeClient], requiring: peers) != nil)
        // A peer-organization certificate that names no member cannot speak on the peer port.
        let unbound = try ca.issue(profile: .client(organization: CertificateAuthority.peerOrganization), commonName: "no-id", publicKey: key.publicKey)
        let unboundReason = await trust.refusal(of: [unbound], requiring: peers, memberBound: true)
        #expect(unboundReason?.contains("names no member ID") == true, "\(unboundReason ?? "accepted")")
        #expect(throws: PKIError.self) { try ca.issue(profile: .peer(memberID: 0), commonName: "zero", publicKey: key.publicKey) }

        let longAgo = Date().addingTimeInterval(-3 * 86_400)
        let expired = try ca.issue(profile: .node, commonName: "old", publicKey: key.publicKey, now: longAgo, days: 1)
        let expiredReason = await trust.refusal(of: [expired])
        #expect(expiredReason?.contains("expired") == true, "\(expiredReason ?? "accepted")")

        let other = try CertificateAuthority.create(clusterName: "two")
        let foreign = try other.issue(profile: .node, commonName: "vm1", publicKey: key.publicKey)
        let foreignReason = await trust.refusal(of: [foreign])
        #expect(foreignReason?.contains("was not issued by this cluster's CA") == true, "\(foreignReason ?? "accepted")")

        let admin = try ca.issue(profile: .client(organization: CertificateAuthority.adminOrganization), commonName: "admin", publicKey: key.publicKey)
        #expect(await trust.refusal(of: [admin]) == nil)
        #expect(await trust.refusal(of: [admin], requiring: CertificateAuthority.storeAPIOrganizations) == nil)
        let adminAsPeer = await trust.refusal(of: [admin], requiring: peers, memberBound: true)
        #expect(adminAsPeer?.contains("is not a raftkube:peers certificate") == true, "\(adminAsPeer ?? "accepted")")
        #expect(await trust.refusal(of: []) == "no certificate was presented")

        // A verifying-only CA (no key) cannot issue.
        let verifyOnly = CertificateAuthority(certificate: ca.certificate, privateKey: nil)
        #expect(throws: PKIError.self) { try verifyOnly.issue(profile: .node, commonName: "x", publicKey: key.publicKey) }
        #expect(throws: PKIError.self) { try ca.issue(profile: .node, commonName: "x", ipAddresses: ["10.0.0.300"], publicKey: key.publicKey) }
    }

    @Test("bootstrap tokens have kubeadm's shape; malformed ones are refused with the expected form")
    func tokens() throws {
        var seen = Set<String>()
        for _ in 0..<200 {
            let token = BootstrapToken()
            #expect(token.description.wholeMatch(of: /[a-z0-9]{6}\.[a-z0-9]{16}/) != nil, "\(token)")
            #expect(try BootstrapToken(parsing: token.description) == token)
            seen.insert(token.description)
        }
        #expect(seen.count == 200)
        for bad in ["", "abcdef", "abcdef.", "abcdef.0123456789abcde", "abcdef.0123456789abcdef0", "ABCDEF.0123456789abcdef", "abcde.f0123456789abcdef", "abcdef-0123456789abcdef", "abc def.0123456789abcdef", "abcdef.0123456789abcdef.x"] {
            #expect(throws: PKIError.self, "\(bad)") { try BootstrapToken(parsing: bad) }
        }
    }

    @Test("unreadable PEM files name the file and the problem")
    func badFiles() throws {
        let path = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        try PEMFiles.write("not a certificate", to: "\(path)/junk.crt", secret: false)
        #expect { try PEMFiles.certificates("\(path)/junk.crt") } throws: { "\($0)".contains("junk.crt") }
        #expect { try PEMFiles.certificates("\(path)/missing.crt") } throws: { "\($0)".contains("missing.crt") }
        #expect { try PEMFiles.privateKey("\(path)/junk.crt") } throws: { "\($0)".contains("not a PEM private key") }
    }

    @Test("failed join attempts: a source is refused after 5 failures in a minute, others are not, the window passes, and the table stays bounded")
    func failedAttemptLimiter() {
        var limiter = FailedAttemptLimiter(failuresMax: 5, windowSeconds: 60, sourcesMax: 100)
        for attempt in 0..<5 {
            #expect(limiter.retryAfter(source: "10.0.0.9", now: 1_000 + Double(attempt)) == nil)
            limiter.recordFailure(source: "10.0.0.9", now: 1_000 + Double(attempt))
        }
        #expect(limiter.retryAfter(source: "10.0.0.9", now: 1_010) == 50)
        #expect(limiter.retryAfter(source: "10.0.0.8", now: 1_010) == nil)
        #expect(limiter.retryAfter(source: "10.0.0.9", now: 1_060) == nil)
        // Four failures are not enough to be refused.
        for attempt in 0..<4 { limiter.recordFailure(source: "10.0.0.7", now: 2_000 + Double(attempt)) }
        #expect(limiter.retryAfter(source: "10.0.0.7", now: 2_005) == nil)
        // Many sources: never more than sourcesMax tracked, and the newest is tracked.
        for source in 0..<1_000 { limiter.recordFailure(source: "s\(source)", now: 3_000 + Double(source) / 100) }
        #expect(limiter.trackedSources <= 100)
        for _ in 0..<4 { limiter.recordFailure(source: "s999", now: 3_010) }
        #expect(limiter.retryAfter(source: "s999", now: 3_011) != nil)
    }

    @Test("constant-time comparison agrees with ==")
    func constantTime() {
        #expect(constantTimeEqual(Array("abc".utf8), Array("abc".utf8)))
        #expect(!constantTimeEqual(Array("abc".utf8), Array("abd".utf8)))
        #expect(!constantTimeEqual(Array("abc".utf8), Array("ab".utf8)))
        #expect(constantTimeEqual([], []))
    }

    @Test("private files: durable files are 0600 in 0700 directories, a planted link at the temporary name is not followed, and an old data directory is tightened")
    func privateFiles() throws {
        let path = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        func mode(_ file: String) throws -> Int {
            try #require(try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? NSNumber).intValue
        }
        try DurableFile.write("public\n", to: "\(path)/sub/node.json", secret: false)
        #expect(try mode("\(path)/sub/node.json") == 0o600)
        #expect(try mode("\(path)/sub") == 0o700)
        // A link planted at the temporary name is replaced, and its target is left untouched.
        try "victim\n".write(toFile: "\(path)/victim", atomically: false, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: "\(path)/sub/x.tmp-\(getpid())", withDestinationPath: "\(path)/victim")
        try DurableFile.write("new\n", to: "\(path)/sub/x", secret: true)
        #expect(try String(contentsOfFile: "\(path)/victim", encoding: .utf8) == "victim\n")
        #expect(try String(contentsOfFile: "\(path)/sub/x", encoding: .utf8) == "new\n")
        // An older, world-readable tree is made private.
        try FileManager.default.createDirectory(atPath: "\(path)/old/store", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        _ = FileManager.default.createFile(atPath: "\(path)/old/store/kv.sqlite", contents: Data("x".utf8), attributes: [.posixPermissions: 0o644])
        chmod("\(path)/old", 0o755)
        let saved = umask(0o022)
        defer { umask(saved) }
        try PrivateFiles.prepare("\(path)/old")
        #expect(try mode("\(path)/old") == 0o700)
        #expect(try mode("\(path)/old/store") == 0o700)
        #expect(try mode("\(path)/old/store/kv.sqlite") == 0o600)
        // And new files made after it are private too (umask 077).
        _ = FileManager.default.createFile(atPath: "\(path)/old/new", contents: Data())
        #expect(try mode("\(path)/old/new") & 0o077 == 0)
    }
}
