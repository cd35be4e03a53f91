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
    /// A last check of a certificate that passed every other, with the reason to refuse it, or
    /// nil to accept: a store member refuses the certificates bound to members that are no
    /// longer (or not yet) in the cluster, so that a removed node's certificates stop working
    /// everywhere at once.
    public var revocation: (@Sendable (Certificate) -> String?)?

    public init(ca: Certificate, revocation: (@Sendable (Certificate) -> String?)? = nil) {
        self.ca = ca
        self.revocation = revocation
    }

    /// Nil when `chain` (leaf first) is a valid certificate of this cluster whose subject names
    /// one of `organizations` (when given), and a member ID when `memberBound`; else the reason.
    public func refusal(of chain: [Certificate], requiring organizations: Set<String>? = nil, memberBound: Bool = false, now: Date = Date()) async -> String? {
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
        if let organizations, Set(Self.organizations(of: leaf)).isDisjoint(with: organizations) {
            return "\(who) is not a \(organizations.sorted().joined(separator: " or ")) certificate: its role may not use this port"
        }
        if memberBound, CertificateAuthority.memberID(of: leaf) == nil {
            return "\(who) names no member ID (\(CertificateAuthority.memberURNPrefix)<hex>): peers must present their own member's certificate"
        }
        return revocation?(leaf)
    }

    /// The organizations named in `certificate`'s subject (a certificate's role).
    public static func organizations(of certificate: Certificate) -> [String] {
        certificate.subject.flatMap { rdn in
            rdn.filter { $0.type == .RDNAttributeType.organizationName }.map { String(describing: $0.value) }
        }
    }

    /// A NIOSSL verification callback that accepts exactly what
    /// ``refusal(of:requiring:memberBound:now:)`` accepts and logs the reason for anything else.
    public func verificationCallback(requiring organizations: Set<String>?, memberBound: Bool = false, logger: Logger, context what: String) -> NIOSSLCustomVerificationCallbackWithMetadata {
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
                if let reason = await trust.refusal(of: chain, requiring: organizations, memberBound: memberBound) {
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
    /// from ``ClusterTrust/verificationCallback(requiring:memberBound:logger:context:)``).
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

extension IdentityProvider {
    /// Adds a TLS server handler, checking clients with ``ClusterTrust``, to accepted channels:
    /// the returned closure runs on each channel's event loop. Each connection gets the
    /// provider's identity of the moment (a renewed certificate from the next connection on);
    /// `configure` adjusts the server configuration (versions, ALPN, whether a client
    /// certificate is asked for).
    public func serverSecurer(requiring organizations: Set<String>?, memberBound: Bool = false, logger: Logger, context what: String,
                              configure: @escaping @Sendable (inout TLSConfiguration, TLSIdentity) throws -> Void = { _, _ in }) throws -> @Sendable (any Channel) throws -> Void {
        let contexts = try TLSContextCache(self) { identity in
            var configuration = try identity.serverConfiguration()
            try configure(&configuration, identity)
            return try NIOSSLContext(configuration: configuration)
        }
        return { channel in
            let (context, identity) = try contexts.current()
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(
                context: context, customVerificationCallbackWithMetadata: identity.trust.verificationCallback(requiring: organizations, memberBound: memberBound, logger: logger, context: what)))
        }
    }

    /// Adds a TLS client handler presenting the provider's identity of the moment and checking
    /// the server with ``ClusterTrust`` to outgoing channels.
    public func clientSecurer(requiring organizations: Set<String>?, memberBound: Bool = false, logger: Logger, context what: String) throws -> @Sendable (any Channel) throws -> Void {
        let contexts = try TLSContextCache(self) { identity in try NIOSSLContext(configuration: try identity.clientConfiguration()) }
        return { channel in
            let (context, identity) = try contexts.current()
            try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(
                context: context, serverHostname: nil, customVerificationCallbackWithMetadata: identity.trust.verificationCallback(requiring: organizations, memberBound: memberBound, logger: logger, context: what)))
        }
    }
}

extension TLSIdentity {
    /// The member ID named by the certificate that the remote end of `channel` presented in its
    /// (completed) TLS handshake; nil when there is no TLS handler, no certificate or no ID.
    /// Call on the channel's event loop.
    public static func peerMemberID(of channel: any Channel) -> UInt64? {
        guard let handler = try? channel.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self),
              let presented = handler.peerCertificate, let bytes = try? presented.toDERBytes(),
              let certificate = try? Certificate(derEncoded: bytes)
        else { return nil }
        return CertificateAuthority.memberID(of: certificate)
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

    /// This identity, trusting with `revocation` added to its trust's checks.
    public func revoking(_ revocation: @escaping @Sendable (Certificate) -> String?) -> TLSIdentity {
        TLSIdentity(trust: ClusterTrust(ca: trust.ca, revocation: revocation), certificateChain: certificateChain, privateKey: privateKey)
    }
}
