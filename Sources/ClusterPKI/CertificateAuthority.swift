import Crypto
import Foundation
import SwiftASN1
import X509

/// The cluster's certificate authority: one self-signed P-256 CA that signs every node's and
/// client's certificate. Nodes trust only it (mutual TLS on every connection), and joiners pin it
/// by ``hash`` before they send anything secret, as kubeadm's `--discovery-token-ca-cert-hash`.
public struct CertificateAuthority: Sendable {
    public let certificate: Certificate
    /// Present where certificates are issued (control-plane nodes); nil where they are only checked.
    public let privateKey: Certificate.PrivateKey?

    /// Organization of store members' peer certificates: the peer port accepts only these, and
    /// each names its member ID (``memberID(of:)``) so that a connection speaks for one member.
    public static let peerOrganization = "raftkube:peers"
    /// Organization of the store clients that API servers use (kube-apiserver's etcd client).
    public static let storeClientOrganization = "raftkube:store-clients"
    /// Organization of administrator client certificates (Kubernetes' superuser group).
    public static let adminOrganization = "system:masters"
    /// Organization of node (kubelet) certificates, as Kubernetes names it: every node has one,
    /// a worker has nothing else. Neither the peer port nor the store API accepts it.
    public static let nodeOrganization = "system:nodes"
    /// Organization of API servers' serving certificates (server authentication only: such a
    /// certificate is no client of anything).
    public static let apiServerOrganization = "raftkube:apiservers"
    /// The organizations the store's client API (etcd v3) accepts: members forwarding to each
    /// other, API servers and the administrator; nothing else reads or writes the store.
    public static let storeAPIOrganizations: Set<String> = [peerOrganization, storeClientOrganization, adminOrganization]
    /// The URN prefix of the subject alternative name that binds a peer certificate to its member.
    public static let memberURNPrefix = "urn:raftkube:member:"

    public init(certificate: Certificate, privateKey: Certificate.PrivateKey?) {
        self.certificate = certificate
        self.privateKey = privateKey
    }

    /// A new CA named after the cluster, valid for `years`.
    public static func create(clusterName: String, now: Date = Date(), years: Int = 10) throws -> CertificateAuthority {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let name = try DistinguishedName {
            OrganizationName("raftkube")
            CommonName("raftkube-ca \(clusterName)")
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: key.publicKey,
            notValidBefore: now.addingTimeInterval(-300),
            notValidAfter: now.addingTimeInterval(Double(years) * 365 * 86_400),
            issuer: name,
            subject: name,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: key.publicKey)
            },
            issuerPrivateKey: key)
        return CertificateAuthority(certificate: certificate, privateKey: key)
    }

    /// What a certificate is for.
    public enum Profile: Sendable, Hashable {
        /// A store member: serves the peer port, the store API and the join port, connects to
        /// peers, and forwards requests to the leader. Bound to its member ID.
        case peer(memberID: UInt64)
        /// A control-plane node's API server as a client of the store (`raftkube:store-clients`),
        /// bound to the node's member like its peer certificate: when the member is removed from
        /// the cluster, the store refuses both.
        case storeClient(memberID: UInt64)
        /// A node's kubelet (`system:nodes`): serves and connects, but is accepted by neither the
        /// peer port nor the store API. A worker node holds only this.
        case node
        /// A control-plane node's API server, serving HTTPS (port 6443) under the node's names and
        /// addresses and the `kubernetes` Service's.
        case apiServer
        /// A client such as the administrator: `organization` is its group.
        case client(organization: String)
    }

    /// Signs a certificate for `publicKey`. Node certificates name their host names and addresses
    /// as subject alternative names (the TLS clients check them).
    public func issue(
        profile: Profile, commonName: String, dnsNames: [String] = [], ipAddresses: [String] = [],
        publicKey: Certificate.PublicKey, now: Date = Date(), days: Int = 365
    ) throws -> Certificate {
        guard let privateKey else { throw PKIError.cannotIssue("this node holds no CA key; ask a control-plane node") }
        let organization: String
        let usages: [ExtendedKeyUsage.Usage]
        var names: [GeneralName] = dnsNames.map { .dnsName($0) }
        switch profile {
        case .peer(let memberID):
            guard memberID != 0 else { throw PKIError.invalid("a peer certificate needs a member ID other than 0") }
            organization = Self.peerOrganization
            usages = [.serverAuth, .clientAuth]
            names.append(.uniformResourceIdentifier(Self.memberURNPrefix + String(memberID, radix: 16)))
        case .storeClient(let memberID):
            guard memberID != 0 else { throw PKIError.invalid("a store-client certificate needs a member ID other than 0") }
            organization = Self.storeClientOrganization
            usages = [.clientAuth]
            names.append(.uniformResourceIdentifier(Self.memberURNPrefix + String(memberID, radix: 16)))
        case .node:
            organization = Self.nodeOrganization
            usages = [.serverAuth, .clientAuth]
        case .apiServer:
            organization = Self.apiServerOrganization
            usages = [.serverAuth]
        case .client(let group):
            organization = group
            usages = [.clientAuth]
        }
        let subject = try DistinguishedName {
            OrganizationName(organization)
            CommonName(commonName)
        }
        for address in ipAddresses {
            guard let bytes = ipAddressBytes(address) else { throw PKIError.invalid("\(address) is not an IPv4 or IPv6 address") }
            names.append(.ipAddress(ASN1OctetString(contentBytes: bytes[...])))
        }
        let alternativeNames = names
        return try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: publicKey,
            notValidBefore: now.addingTimeInterval(-300),
            notValidAfter: now.addingTimeInterval(Double(days) * 86_400),
            issuer: certificate.subject,
            subject: subject,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true, keyEncipherment: true))
                try ExtendedKeyUsage(usages)
                SubjectKeyIdentifier(hash: publicKey)
                AuthorityKeyIdentifier(keyIdentifier: try certificate.extensions.subjectKeyIdentifier?.keyIdentifier)
                if !alternativeNames.isEmpty { SubjectAlternativeNames(alternativeNames) }
            },
            issuerPrivateKey: privateKey)
    }

    /// The member ID a peer certificate is bound to (its `urn:raftkube:member:<hex>` name), nil
    /// when it names none or more than one.
    public static func memberID(of certificate: Certificate) -> UInt64? {
        guard let names = try? certificate.extensions.subjectAlternativeNames else { return nil }
        let ids = names.compactMap { name -> UInt64? in
            guard case .uniformResourceIdentifier(let uri) = name, uri.hasPrefix(memberURNPrefix) else { return nil }
            let hex = uri.dropFirst(memberURNPrefix.count)
            guard (1...16).contains(hex.count) else { return nil }
            return UInt64(hex, radix: 16)
        }
        guard ids.count == 1, let id = ids.first, id != 0 else { return nil }
        return id
    }

    /// `sha256:<hex>` of the CA's DER SubjectPublicKeyInfo: kubeadm's CA certificate hash, the
    /// same as `openssl x509 -pubkey -in ca.crt | openssl pkey -pubin -outform der | sha256sum`.
    public var hash: String { Self.hash(of: certificate) }

    public static func hash(of certificate: Certificate) -> String {
        var serializer = DER.Serializer()
        // Serializing a key that was parsed or made here cannot fail; an empty input would give
        // a hash no CA has, so a failure could only make a join refuse, never accept.
        try? serializer.serialize(certificate.publicKey)
        return "sha256:" + SHA256.hash(data: serializer.serializedBytes).map { String(format: "%02x", $0) }.joined()
    }

    /// Checks the shape of a `--ca-cert-hash` value.
    public static func validateHash(_ text: String) throws {
        let hex = text.dropFirst("sha256:".count)
        guard text.hasPrefix("sha256:"), hex.count == 64, hex.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else {
            throw PKIError.invalid("--ca-cert-hash must be sha256: followed by 64 lowercase hex digits (the join command printed by `raftkube init` has it)")
        }
    }
}

extension SubjectKeyIdentifier {
    /// The key identifier as RFC 5280 4.2.1.2 method 1: SHA-1 of the public key bits.
    init(hash publicKey: Certificate.PublicKey) {
        self.init(keyIdentifier: ArraySlice(Insecure.SHA1.hash(data: Array(publicKey.subjectPublicKeyInfoBytes))))
    }
}

/// The 4 or 16 bytes of an IPv4 or IPv6 address in text form, nil when it is neither.
public func ipAddressBytes(_ text: String) -> [UInt8]? {
    var v4 = in_addr()
    if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
    var v6 = in6_addr()
    if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
    return nil
}

/// Why a PKI operation failed, in words a user can act on.
public enum PKIError: Error, Sendable, Hashable, CustomStringConvertible {
    case invalid(String)
    case cannotIssue(String)
    case unreadable(path: String, reason: String)

    public var description: String {
        switch self {
        case .invalid(let reason), .cannotIssue(let reason): reason
        case .unreadable(let path, let reason): "cannot read \(path): \(reason)"
        }
    }
}
