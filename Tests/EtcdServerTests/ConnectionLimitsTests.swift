import ClusterHarness
import ClusterPKI
import EtcdAPI
import Foundation
import RaftRuntime
import Testing

@testable import EtcdServer

/// The listeners' ``ConnectionLimits`` against real members (issue 11, item 13): a TLS
/// handshake that stalls is timed out on the client and the peer port, and connections past
/// the client port's cap are refused at once while those open keep working.
@Suite("Listener connection limits", .serialized)
struct ConnectionLimitsTests {
    @Test("A TLS handshake that never starts, or stalls inside the ClientHello, is closed after the handshake timeout on the client and the peer port")
    func stalledHandshake() throws {
        let cluster = try StoreCluster(name: "handshake", count: 1)
        cluster.scheme = "https"
        defer { cluster.tearDown() }
        let pki = cluster.root + "/pki"
        let ca = try CertificateAuthority.create(clusterName: "handshake-test")
        let caFile = "\(pki)/ca.crt"
        try PEMFiles.write([ca.certificate], to: caFile)
        let (certificate, key) = try MutualTLSTests.issue("m1", .node, by: ca, into: pki)
        cluster.memberArguments[1] = [
            "--cert-file", certificate, "--key-file", key, "--trusted-ca-file", caFile, "--client-cert-auth",
            "--peer-cert-file", certificate, "--peer-key-file", key, "--peer-trusted-ca-file", caFile,
        ]
        let (adminCertificate, adminKey) = try MutualTLSTests.issue("admin", .client(organization: CertificateAuthority.adminOrganization), by: ca, into: pki)
        cluster.etcdctlArguments = ["--cacert", caFile, "--cert", adminCertificate, "--key", adminKey]
        try cluster.start()
        try cluster.waitUntilServing()

        let timeoutSeconds = Double(ConnectionLimits.client.handshakeTimeoutMs) / 1000
        #expect(ConnectionLimits.peer.handshakeTimeoutMs == ConnectionLimits.client.handshakeTimeoutMs)
        // A TLS record header and the start of a ClientHello, then nothing.
        let partialHello: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03]
        let started = Date()
        var stalled: [(String, RawConnection)] = []
        for (port, name) in [(cluster.clientPort(1), "client"), (cluster.peerPort(1), "peer")] {
            stalled.append(("\(name) port, silent", try RawConnection(port: port, receiveTimeoutMs: 250)))
            let partial = try RawConnection(port: port, receiveTimeoutMs: 250)
            partial.send(partialHello)
            stalled.append(("\(name) port, partial ClientHello", partial))
        }
        // Open while the handshake may still complete; etcdctl meanwhile connects as usual.
        Thread.sleep(forTimeInterval: timeoutSeconds / 2)
        for (name, connection) in stalled { #expect(!connection.isClosedNow(), "\(name) closed early") }
        let during = try cluster.etcdctl(["put", "during", "stalls"])
        #expect(during.status == 0, "\(during.output)")
        for (name, connection) in stalled {
            #expect(connection.waitUntilClosed(seconds: timeoutSeconds + 5 - Date().timeIntervalSince(started)),
                    "\(name) still open \(Int(Date().timeIntervalSince(started))) s after connecting")
        }
        let after = try cluster.etcdctl(["get", "during", "--print-value-only"])
        #expect(after.status == 0 && after.stdout.contains("stalls"), "\(after.output)")
    }

    @Test("Connections past the client port's cap are closed at once and logged; the open ones keep working, and new ones are admitted once some close")
    func connectionCap() async throws {
        let cluster = try StoreCluster(name: "conncap", count: 1)
        defer { cluster.tearDown() }
        try cluster.start()
        try cluster.waitUntilServing()
        let client = try await WireClient.connect(host: "127.0.0.1", port: cluster.clientPort(1))
        let cap = ConnectionLimits.client.connectionsMax
        var raw: [RawConnection] = []
        for _ in 0..<(cap + 50) { raw.append(try RawConnection(port: cluster.clientPort(1))) }
        // Accepting a thousand connections takes the member a moment: wait for the refusals.
        var closed = 0
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            closed = raw.filter { $0.isClosedNow() }.count
            if closed >= 50 { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        try await Task.sleep(for: .milliseconds(500))
        closed = raw.filter { $0.isClosedNow() }.count
        // The lean client holds one place (and etcdctl's connections may linger a moment).
        #expect(closed >= 50 && closed <= 55, "\(closed) of \(cap + 50) closed")

        var put = Etcdserverpb_PutRequest()
        put.key = Data("at-cap".utf8)
        put.value = Data("fine".utf8)
        let written: Etcdserverpb_PutResponse = try await client.unary("/etcdserverpb.KV/Put", put)
        #expect(written.header.revision > 1)
        let log = (try? String(contentsOfFile: "\(cluster.root)/m1.log", encoding: .utf8)) ?? ""
        #expect(log.contains("refusing connections"), "\(log.suffix(2000))")
        #expect(log.components(separatedBy: "refusing connections").count - 1 <= 2, "the warning is rate-limited")

        raw.removeAll()
        #expect(eventually(10) { (try? cluster.etcdctl(["get", "at-cap", "--print-value-only"]))?.stdout.contains("fine") == true })
        await client.close()
    }
}
