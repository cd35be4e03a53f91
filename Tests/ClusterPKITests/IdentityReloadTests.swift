import ClusterPKI
import Crypto
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Testing
import X509

/// ``IdentityFiles`` behind a real TLS listener: a certificate file replaced while the listener
/// runs is presented from the next handshake on; files that do not load change nothing.
@Suite("Certificates read again when their files change")
struct IdentityReloadTests {
    /// Completes a promise with the serial number of the certificate the server presented, once
    /// the echo of "ping" arrived (the handshake is complete then).
    final class ServerSerial: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let promise: EventLoopPromise<Certificate.SerialNumber>
        init(promise: EventLoopPromise<Certificate.SerialNumber>) { self.promise = promise }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            do {
                let handler = try context.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self)
                let bytes = try #require(handler.peerCertificate).toDERBytes()
                promise.succeed(try Certificate(derEncoded: bytes).serialNumber)
            } catch {
                promise.fail(error)
            }
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            promise.fail(error)
            context.close(promise: nil)
        }
        func channelInactive(context: ChannelHandlerContext) { promise.fail(ChannelError.eof) }
    }

    /// Connects with `client`, and returns the open channel and the server certificate's serial.
    static func connect(_ client: TLSIdentity, port: Int) async throws -> (any Channel, Certificate.SerialNumber) {
        let quiet = Logger(label: "client") { _ in SwiftLogNoOpLogHandler() }
        let securer = try client.clientSecurer(requiring: [CertificateAuthority.peerOrganization], memberBound: true, logger: quiet, context: "test client")
        let group = MultiThreadedEventLoopGroup.singleton
        let promise = group.next().makePromise(of: Certificate.SerialNumber.self)
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try securer(channel)
                    try channel.pipeline.syncOperations.addHandler(ServerSerial(promise: promise))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        try await channel.writeAndFlush(ByteBuffer(string: "ping")).get()
        return (channel, try await promise.futureResult.get())
    }

    @Test("a renewed certificate is presented on the next connection, open ones keep going, and a key that does not match is refused once with a warning")
    func reload() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("identity-reload-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ca = try CertificateAuthority.create(clusterName: "lab")
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        func issue(days: Int, publicKey: Certificate.PublicKey? = nil) throws -> Certificate {
            try ca.issue(profile: .peer(memberID: 1), commonName: "vm1", ipAddresses: ["127.0.0.1"], publicKey: publicKey ?? key.publicKey, days: days)
        }
        let (certificatePath, keyPath, caPath) = ("\(directory)/peer.crt", "\(directory)/peer.key", "\(directory)/ca.crt")
        let first = try issue(days: 10)
        try PEMFiles.write([first], to: certificatePath)
        try PEMFiles.write(key, to: keyPath)
        try PEMFiles.write([ca.certificate], to: caPath)

        let log = RecordingLogHandler()
        let logger = Logger(label: "server") { _ in log }
        // Looked at on every connection here (a node looks at most once a second).
        let files = try IdentityFiles(certificate: certificatePath, key: keyPath, trustedCA: caPath, recheckInterval: .zero, logger: logger)
        let securer = try files.serverSecurer(requiring: [CertificateAuthority.peerOrganization], memberBound: true, logger: logger, context: "test server")
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try securer(channel)
                    try channel.pipeline.syncOperations.addHandler(EchoHandler())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: nil) }
        let port = try #require(server.localAddress?.port)
        let client = try TLSHandshakeTests.identity(ca, .peer(memberID: 2), name: "vm2")

        let (open, before) = try await Self.connect(client, port: port)
        #expect(before == first.serialNumber)
        #expect(files.currentIdentity().generation == 0)

        // Renewal: the same key, a new certificate written by rename.
        let renewed = try issue(days: 365)
        try PEMFiles.write([renewed], to: certificatePath)
        let (second, after) = try await Self.connect(client, port: port)
        #expect(after == renewed.serialNumber, "the listener still presents the certificate it started with")
        #expect(files.currentIdentity().generation == 1)
        #expect(log.lines.withLockedValue { $0 }.contains { $0.contains("loaded a changed certificate") && $0.contains("\(renewed.serialNumber)") })
        // The connection made before the renewal still carries traffic.
        try await open.writeAndFlush(ByteBuffer(string: "again")).get()
        #expect(open.isActive)

        // A certificate for another key: refused, the renewed one stays, and the files are not
        // parsed again (one warning) until they change.
        let stranger = Certificate.PrivateKey(P256.Signing.PrivateKey())
        try PEMFiles.write([try issue(days: 365, publicKey: stranger.publicKey)], to: certificatePath)
        let (third, stillRenewed) = try await Self.connect(client, port: port)
        let (fourth, again) = try await Self.connect(client, port: port)
        #expect(stillRenewed == renewed.serialNumber && again == renewed.serialNumber)
        #expect(files.currentIdentity().generation == 1)
        let warnings = log.lines.withLockedValue { $0 }.filter { $0.contains("does not load") }
        #expect(warnings.count == 1 && warnings[0].contains("does not belong to the certificate"), "\(warnings)")

        // The matching pair again (the key renewed with it): loaded.
        try PEMFiles.write(stranger, to: keyPath)
        let (fifth, strangerSerial) = try await Self.connect(client, port: port)
        #expect(strangerSerial != renewed.serialNumber)
        #expect(files.currentIdentity().generation == 2)
        for channel in [open, second, third, fourth, fifth] { try await channel.close() }
    }

    @Test("files that do not make an identity at start are an error, not a listener without TLS")
    func refusedAtStart() throws {
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        #expect(throws: (any Error).self) {
            _ = try IdentityFiles(certificate: "/nonexistent/peer.crt", key: "/nonexistent/peer.key", trustedCA: "/nonexistent/ca.crt", logger: logger)
        }
    }

    @Test("the files are looked at no more than once per recheck interval")
    func recheckInterval() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("identity-recheck-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ca = try CertificateAuthority.create(clusterName: "lab")
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let (certificatePath, keyPath, caPath) = ("\(directory)/peer.crt", "\(directory)/peer.key", "\(directory)/ca.crt")
        func issue() throws -> Certificate {
            try ca.issue(profile: .peer(memberID: 1), commonName: "vm1", ipAddresses: ["127.0.0.1"], publicKey: key.publicKey, days: 30)
        }
        try PEMFiles.write([try issue()], to: certificatePath)
        try PEMFiles.write(key, to: keyPath)
        try PEMFiles.write([ca.certificate], to: caPath)
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        let slow = try IdentityFiles(certificate: certificatePath, key: keyPath, trustedCA: caPath, recheckInterval: .seconds(3_600), logger: logger)
        let eager = try IdentityFiles(certificate: certificatePath, key: keyPath, trustedCA: caPath, recheckInterval: .zero, logger: logger)
        try PEMFiles.write([try issue()], to: certificatePath)
        #expect(slow.currentIdentity().generation == 0, "the files were looked at inside the interval")
        #expect(eager.currentIdentity().generation == 1)
    }
}
