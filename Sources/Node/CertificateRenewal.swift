import ClusterPKI
import Foundation
import Logging
import ServiceLifecycle
import SwiftASN1
import X509

/// Renewal of a control-plane node's own certificates with its CA: the same key, subject and
/// names, a new validity period.
public enum CertificateRenewal {
    /// Certificates with fewer days left than this are renewed when a control-plane node starts.
    public static let renewBeforeDays = 30

    /// The node's renewable certificates that exist, by name.
    public static func files(_ paths: NodePaths) -> [(name: String, path: String)] {
        [("peer", paths.peerCertificate), ("store-client", paths.storeClientCertificate), ("node", paths.nodeCertificate), ("admin", paths.adminCertificate),
         ("apiserver", paths.apiServerCertificate)]
            .filter { FileManager.default.fileExists(atPath: $0.1) }
    }

    /// Renews the named certificates; returns each one's new expiry.
    public static func renew(_ paths: NodePaths, names: Set<String>, days: Int, clusterName: String) throws -> [(String, Date)] {
        let ca = CertificateAuthority(certificate: try PEMFiles.certificates(paths.caCertificate)[0], privateKey: try PEMFiles.privateKey(paths.caKey))
        var renewed: [(String, Date)] = []
        for (name, path) in files(paths) where names.contains(name) {
            let old = try PEMFiles.certificates(path)[0]
            let certificate = try reissue(old, by: ca, days: days)
            try PEMFiles.write([certificate], to: path)
            if name == "admin" {
                // admin.conf embeds the certificate: write it anew with the renewed one.
                let server = (try? String(contentsOfFile: paths.adminConfig, encoding: .utf8))?
                    .split(separator: "\n").first { $0.trimmingCharacters(in: .whitespaces).hasPrefix("server:") }
                    .map { $0.split(separator: ":", maxSplits: 1)[1].trimmingCharacters(in: .whitespaces) } ?? "https://127.0.0.1:6443"
                try DurableFile.write(AdminConfig.kubeconfig(clusterName: clusterName, server: server, ca: ca.certificate, certificate: certificate,
                                                             key: try PEMFiles.privateKey(paths.adminKey)), to: paths.adminConfig, secret: true)
            }
            renewed.append((name, certificate.notValidAfter))
        }
        return renewed
    }

    /// A certificate like `old` (subject, key, names, role), valid for `days` from now.
    public static func reissue(_ old: Certificate, by ca: CertificateAuthority, days: Int) throws -> Certificate {
        let organizations = ClusterTrust.organizations(of: old)
        let commonName = old.subject.flatMap { $0.filter { $0.type == .RDNAttributeType.commonName }.map { String(describing: $0.value) } }.first ?? ""
        let names = try? old.extensions.subjectAlternativeNames
        var dnsNames: [String] = []
        var addresses: [String] = []
        for name in names ?? SubjectAlternativeNames([]) {
            switch name {
            case .dnsName(let dns): dnsNames.append(dns)
            case .ipAddress(let bytes): if let text = ipAddressText(Array(bytes.bytes)) { addresses.append(text) }
            default: break
            }
        }
        let profile: CertificateAuthority.Profile
        if organizations.contains(CertificateAuthority.peerOrganization), let member = CertificateAuthority.memberID(of: old) {
            profile = .peer(memberID: member)
        } else if organizations.contains(CertificateAuthority.storeClientOrganization), let member = CertificateAuthority.memberID(of: old) {
            profile = .storeClient(memberID: member)
        } else if organizations.contains(CertificateAuthority.nodeOrganization) {
            profile = .node
        } else if organizations.contains(CertificateAuthority.apiServerOrganization) {
            profile = .apiServer
        } else if let organization = organizations.first {
            profile = .client(organization: organization)
        } else {
            throw NodeError("certificate \"\(old.subject)\" has no organization: not one raftkube issued")
        }
        return try ca.issue(profile: profile, commonName: commonName, dnsNames: dnsNames, ipAddresses: addresses, publicKey: old.publicKey, days: days)
    }

    /// Renews the node's certificates that have fewer than ``renewBeforeDays`` left (on a node
    /// with the CA key); returns what it renewed.
    public static func renewDue(_ paths: NodePaths, clusterName: String, now: Date = Date()) throws -> [(String, Date)] {
        guard FileManager.default.fileExists(atPath: paths.caKey) else { return [] }
        let due = files(paths).filter { _, path in
            guard let certificate = try? PEMFiles.certificates(path).first else { return false }
            return certificate.notValidAfter.timeIntervalSince(now) < Double(renewBeforeDays) * 86_400
        }.map(\.name)
        guard !due.isEmpty else { return [] }
        return try renew(paths, names: Set(due), days: 365, clusterName: clusterName)
    }

    /// The text form of a 4- or 16-byte address.
    public static func ipAddressText(_ bytes: [UInt8]) -> String? {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = bytes.count == 4 ? AF_INET : bytes.count == 16 ? AF_INET6 : -1
        guard family != -1, bytes.withUnsafeBytes({ inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }) != nil else { return nil }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Renews a control-plane node's certificates while it runs, before fewer than
/// ``CertificateRenewal/renewBeforeDays`` remain (kubeadm renews only on upgrades; a node that
/// runs for a year would otherwise lose its peers). The listeners read their certificate files
/// again when they change (``IdentityFiles``): the next connection presents the renewed one.
public struct CertificateRenewer: Service {
    public static let defaultInterval: Duration = .seconds(3_600)
    let paths: NodePaths
    let clusterName: String
    let interval: Duration
    let logger: Logger

    public init(paths: NodePaths, clusterName: String, interval: Duration, logger: Logger) {
        self.paths = paths
        self.clusterName = clusterName
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard !Task.isCancelled else { return }
                do {
                    for (name, expiry) in try CertificateRenewal.renewDue(paths, clusterName: clusterName) {
                        logger.info("renewed a certificate with fewer than \(CertificateRenewal.renewBeforeDays) days left", metadata: ["certificate": "\(name)", "expires": "\(expiry)"])
                    }
                } catch {
                    logger.error("cannot renew the node's certificates; retrying at the next check", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}
