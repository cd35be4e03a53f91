import ClusterPKI
import GRPCNIOTransportHTTP2
import Logging
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

    /// The server side: TLS 1.2+ as etcd, client certificates checked by ``ClusterTrust`` (any
    /// certificate of the cluster: administrators' and nodes').
    func serverSecurity(logger: Logger) -> HTTP2ServerTransport.Posix.TransportSecurity {
        var tls = HTTP2ServerTransport.Posix.TransportSecurity.TLS(
            certificateChain: chain, privateKey: key,
            clientCertificateVerification: clientCertificateRequired ? .noHostnameVerification : .noVerification,
            trustRoots: roots, requireALPN: false)
        let trust = identity.trust
        tls.customVerificationCallback = { certificates, promise in
            trust.verificationCallback(requiring: nil, logger: logger, context: "etcd API client")(certificates, promise)
        }
        return .tls(tls)
    }

    /// The client side, for a member calling another member: only a node of the cluster answers.
    public func clientSecurity(logger: Logger) -> HTTP2ClientTransport.Posix.TransportSecurity {
        var tls = HTTP2ClientTransport.Posix.TransportSecurity.TLS(
            certificateChain: chain, privateKey: key, serverCertificateVerification: .noHostnameVerification, trustRoots: roots)
        let trust = identity.trust
        tls.customVerificationCallback = { certificates, promise in
            trust.verificationCallback(requiring: CertificateAuthority.nodeOrganization, logger: logger, context: "forwarding to the leader")(certificates, promise)
        }
        return .tls(tls)
    }
}
