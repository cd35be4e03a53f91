import Foundation
import Logging
import NIOCore
import NIOSSL
import SwiftASN1
import X509

/// Checks certificates against the cluster's CA and nothing else, and says why one is refused
/// (expired, issued by another CA, not a node's): the words go to the log of whoever refused it.
public struct ClusterTrust: Sendable {
    public let ca: Certificate

    public init(ca: Certificate) {
        self.ca = ca
    }

    /// Nil when `chain` (leaf first) is a valid certificate of this cluster, with
    /// `organization` among its subject's organizations when one is required; else the reason.
    public func refusal(of chain: [Certificate], requiring organization: String? = nil, now: Date = Date()) async -> String? {
        guard let leaf = chain.first else { return "no certificate was presented" }
        let who = "certificate \"\(leaf.subject)\""
        guard leaf.issuer == ca.subject, ca.publicKey.isValidSignature(leaf.signature, for: leaf) else {
            return "\(who) was not issued by this cluster's CA (issuer \"\(leaf.issuer)\"): a node or client of another cluster, or a stale certificate"
        }
        if now > leaf.notValidAfter { return "\(who) expired at \(leaf.notValidAfter)" }
        if now < leaf.notValidBefore { return "\(who) is not valid before \(leaf.notValidBefore)" }
        var verifier = Verifier(rootCertificates: CertificateStore([ca])) { RFC5280Policy() }
        let result = await verifier.validate(leaf: leaf, intermediates: CertificateStore(Array(chain.dropFirst())))
        if case .couldNotValidate(let failures) = result {
            let reasons = failures.map { $0.policyFailureReason.description }
            return "\(who) is not valid: \(reasons.isEmpty ? "no chain to this cluster's CA" : reasons.joined(separator: "; "))"
        }
        if let organization, !Self.organizations(of: leaf).contains(organization) {
            return "\(who) is not a \(organization) certificate"
        }
        return nil
    }

    static func organizations(of certificate: Certificate) -> [String] {
        certificate.subject.flatMap { rdn in
            rdn.filter { $0.type == .RDNAttributeType.organizationName }.map { String(describing: $0.value) }
        }
    }

    /// A NIOSSL verification callback that accepts exactly what ``refusal(of:requiring:now:)``
    /// accepts and logs the reason for anything else.
    public func verificationCallback(requiring organization: String?, logger: Logger, context what: String) -> NIOSSLCustomVerificationCallbackWithMetadata {
        let trust = self
        return { certificates, promise in
            let chain: [Certificate]
            do {
                chain = try certificates.map { try Certificate(derEncoded: $0.toDERBytes()) }
            } catch {
                logger.warning("refused a TLS peer", metadata: ["connection": "\(what)", "reason": "unparsable certificate: \(error)"])
                promise.succeed(.failed)
                return
            }
            promise.completeWithTask {
                if let reason = await trust.refusal(of: chain, requiring: organization) {
                    logger.warning("refused a TLS peer", metadata: ["connection": "\(what)", "reason": "\(reason)"])
                    return .failed
                }
                return .certificateVerified(VerificationMetadata(nil))
            }
        }
    }
}

/// A node's or client's TLS identity: its certificate chain and key, and the cluster it trusts.
public struct TLSIdentity: Sendable {
    public let trust: ClusterTrust
    public let certificateChain: [Certificate]
    public let privateKey: Certificate.PrivateKey

    public init(trust: ClusterTrust, certificateChain: [Certificate], privateKey: Certificate.PrivateKey) {
        self.trust = trust
        self.certificateChain = certificateChain
        self.privateKey = privateKey
    }

    /// The chain and key as NIOSSL wants them.
    public func nioChain() throws -> [NIOSSLCertificateSource] {
        try certificateChain.map { .certificate(try NIOSSLCertificate(bytes: try $0.derBytes(), format: .der)) }
    }

    public func nioKey() throws -> NIOSSLPrivateKeySource {
        .privateKey(try NIOSSLPrivateKey(bytes: Array(try privateKey.serializeAsPEM().pemString.utf8), format: .pem))
    }

    /// TLS 1.3 server configuration that asks for a client certificate (checked by the callback
    /// from ``ClusterTrust/verificationCallback(requiring:logger:context:)``).
    public func serverConfiguration() throws -> TLSConfiguration {
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: try nioChain(), privateKey: try nioKey())
        configuration.minimumTLSVersion = .tlsv13
        configuration.certificateVerification = .noHostnameVerification
        configuration.trustRoots = .certificates([try NIOSSLCertificate(bytes: try trust.ca.derBytes(), format: .der)])
        return configuration
    }

    /// TLS 1.3 client configuration presenting this identity.
    public func clientConfiguration() throws -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv13
        configuration.certificateChain = try nioChain()
        configuration.privateKey = try nioKey()
        configuration.certificateVerification = .noHostnameVerification
        configuration.trustRoots = .certificates([try NIOSSLCertificate(bytes: try trust.ca.derBytes(), format: .der)])
        return configuration
    }
}

extension Certificate {
    func derBytes() throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(self)
        return serializer.serializedBytes
    }
}

extension TLSIdentity {
    /// Adds a TLS server handler, checking clients with ``ClusterTrust``, to accepted channels:
    /// the returned closure runs on each channel's event loop.
    public func serverSecurer(requiring organization: String?, logger: Logger, context what: String) throws -> @Sendable (any Channel) throws -> Void {
        let context = try NIOSSLContext(configuration: try serverConfiguration())
        let trust = self.trust
        return { channel in
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(
                context: context, customVerificationCallbackWithMetadata: trust.verificationCallback(requiring: organization, logger: logger, context: what)))
        }
    }

    /// Adds a TLS client handler presenting this identity and checking the server with
    /// ``ClusterTrust`` to outgoing channels.
    public func clientSecurer(requiring organization: String?, logger: Logger, context what: String) throws -> @Sendable (any Channel) throws -> Void {
        let context = try NIOSSLContext(configuration: try clientConfiguration())
        let trust = self.trust
        return { channel in
            try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(
                context: context, serverHostname: nil, customVerificationCallbackWithMetadata: trust.verificationCallback(requiring: organization, logger: logger, context: what)))
        }
    }

    /// Reads an identity from PEM files: the chain (leaf first), its key, and the CA to trust.
    public static func load(certificate: String, key: String, trustedCA: String) throws -> TLSIdentity {
        let chain = try PEMFiles.certificates(certificate)
        let privateKey = try PEMFiles.privateKey(key)
        let ca = try PEMFiles.certificates(trustedCA)
        guard chain[0].publicKey == privateKey.publicKey else {
            throw PKIError.invalid("the key in \(key) does not belong to the certificate in \(certificate)")
        }
        return TLSIdentity(trust: ClusterTrust(ca: ca[0]), certificateChain: chain, privateKey: privateKey)
    }
}
