import ClusterPKI
import GRPCNIOTransportHTTP2
import Logging
import NIOCore
import NIOSSL

/// TLS for the etcd API: the member's certificate, the cluster CA it trusts, and whether clients
/// must present a certificate of the cluster (etcd's `--client-cert-auth`). Members use the same
/// identity as clients when they forward requests to the leader. The identity comes from a
/// provider: a renewed certificate is used from the next connection on.
public struct APISecurity: Sendable {
    public let provider: any IdentityProvider
    public let clientCertificateRequired: Bool

    public init(identity provider: any IdentityProvider, clientCertificateRequired: Bool) throws {
        self.provider = provider
        self.clientCertificateRequired = clientCertificateRequired
        // Fail at start, not at the first connection, when the identity cannot be serialized.
        _ = try Self.sources(provider.currentIdentity().identity)
    }

    /// The identity of the moment.
    public var identity: TLSIdentity { provider.currentIdentity().identity }

    /// A number that changes when the identity does (a forwarding connection made with an older
    /// identity is replaced).
    public var generation: Int { provider.currentIdentity().generation }

    /// The server side: adds TLS 1.2+ (as etcd; ALPN `h2`) to an accepted connection, client
    /// certificates checked by ``ClusterTrust``: only the roles that may use the store
    /// (``CertificateAuthority/storeAPIOrganizations``: members, API servers, administrators);
    /// a node's (kubelet's) or worker's certificate is refused, as Kubernetes keeps etcd to
    /// kube-apiserver.
    func serverSecurer(logger: Logger) throws -> @Sendable (any Channel) throws -> Void {
        let required = clientCertificateRequired
        return try provider.serverSecurer(requiring: CertificateAuthority.storeAPIOrganizations, logger: logger, context: "etcd API client") { configuration, _ in
            configuration.minimumTLSVersion = .tlsv12
            configuration.certificateVerification = required ? .noHostnameVerification : .none
            configuration.applicationProtocols = ["h2"]
        }
    }

    /// The client side, for a member (or an administrator) calling a member: only a store member
    /// of the cluster (a peer certificate) answers.
    public func clientSecurity(logger: Logger) throws -> HTTP2ClientTransport.Posix.TransportSecurity {
        let identity = self.identity
        let (chain, key, roots) = try Self.sources(identity)
        var tls = HTTP2ClientTransport.Posix.TransportSecurity.TLS(
            certificateChain: chain, privateKey: key, serverCertificateVerification: .noHostnameVerification, trustRoots: roots)
        let trust = identity.trust
        tls.customVerificationCallback = { certificates, promise in
            trust.verificationCallback(requiring: [CertificateAuthority.peerOrganization], logger: logger, context: "store client")(certificates, promise)
        }
        return .tls(tls)
    }

    private static func sources(_ identity: TLSIdentity) throws -> ([TLSConfig.CertificateSource], TLSConfig.PrivateKeySource, TLSConfig.TrustRootsSource) {
        (try identity.certificateChain.map { .bytes(Array(try $0.serializeAsPEM().pemString.utf8), format: .pem) },
         .bytes(Array(try identity.privateKey.serializeAsPEM().pemString.utf8), format: .pem),
         .certificates([.bytes(Array(try identity.trust.ca.serializeAsPEM().pemString.utf8), format: .pem)]))
    }
}
