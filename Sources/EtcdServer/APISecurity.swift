import ClusterPKI
import GRPCNIOTransportHTTP2
import Logging
import NIOCore
import NIOSSL

/// TLS for the etcd API: the member's certificate, the cluster CA it trusts, and whether clients
/// must present a certificate of the cluster (etcd's `--client-cert-auth`). Members use the same
/// identity as clients when they forward requests to the leader.
public struct APISecurity: Sendable {
    public let identity: TLSIdentity
    public let clientCertificateRequired: Bool
    let chain: [TLSConfig.CertificateSource]
    let key: TLSConfig.PrivateKeySource
    let roots: TLSConfig.TrustRootsSource

    public init(identity: TLSIdentity, clientCertificateRequired: Bool) throws {
        self.identity = identity
        self.clientCertificateRequired = clientCertificateRequired
        chain = try identity.certificateChain.map { .bytes(Array(try $0.serializeAsPEM().pemString.utf8), format: .pem) }
        key = .bytes(Array(try identity.privateKey.serializeAsPEM().pemString.utf8), format: .pem)
        roots = .certificates([.bytes(Array(try identity.trust.ca.serializeAsPEM().pemString.utf8), format: .pem)])
    }

    /// The server side: adds TLS 1.2+ (as etcd; ALPN `h2`) to an accepted connection, client
    /// certificates checked by ``ClusterTrust``: only the roles that may use the store
    /// (``CertificateAuthority/storeAPIOrganizations``: members, API servers, administrators);
    /// a node's (kubelet's) or worker's certificate is refused, as Kubernetes keeps etcd to
    /// kube-apiserver.
    func serverSecurer(logger: Logger) throws -> @Sendable (any Channel) throws -> Void {
        var configuration = try identity.serverConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.certificateVerification = clientCertificateRequired ? .noHostnameVerification : .none
        configuration.applicationProtocols = ["h2"]
        let context = try NIOSSLContext(configuration: configuration)
        let trust = identity.trust
        return { channel in
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(
                context: context, customVerificationCallbackWithMetadata: trust.verificationCallback(requiring: CertificateAuthority.storeAPIOrganizations, logger: logger, context: "etcd API client")))
        }
    }

    /// The client side, for a member (or an administrator) calling a member: only a store member
    /// of the cluster (a peer certificate) answers.
    public func clientSecurity(logger: Logger) -> HTTP2ClientTransport.Posix.TransportSecurity {
        var tls = HTTP2ClientTransport.Posix.TransportSecurity.TLS(
            certificateChain: chain, privateKey: key, serverCertificateVerification: .noHostnameVerification, trustRoots: roots)
        let trust = identity.trust
        tls.customVerificationCallback = { certificates, promise in
            trust.verificationCallback(requiring: [CertificateAuthority.peerOrganization], logger: logger, context: "store client")(certificates, promise)
        }
        return .tls(tls)
    }
}
