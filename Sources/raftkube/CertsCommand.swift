import ArgumentParser
import ClusterPKI
import EtcdServer
import Foundation
import X509

/// `raftkube certs check-expiration|renew|member-id`: kubeadm's names for looking after a node's
/// certificates. Renewal signs a new certificate for the same key, subject and names with the
/// cluster CA in the data directory (control-plane nodes); a running node reads renewed
/// certificate files for its next connections, and renews those with less than
/// ``CertificateRenewal/renewBeforeDays`` left by itself, at start and then every hour
/// (``CertificateRenewer``).
struct CertsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certs",
        abstract: "Show when a node's certificates expire, renew them, or print a member ID for a peer certificate.",
        subcommands: [CheckExpiration.self, Renew.self, MemberID.self])

    struct CheckExpiration: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "check-expiration", abstract: "List the node's certificates with their expiry and time left.")
        @Option(help: "The node's data directory.")
        var dataDir: String = "/var/lib/raftkube"

        func run() throws {
            let paths = NodePaths(dataDir: dataDir)
            _ = try NodeConfig.require(dataDir)
            let now = Date()
            print(row(["CERTIFICATE", "EXPIRES", "RESIDUAL TIME", "SUBJECT"], widths: [13, 26, 14]))
            for (name, file) in CertificateRenewal.files(paths) + [("ca", paths.caCertificate)] {
                guard let certificate = try? PEMFiles.certificates(file).first else { continue }
                let left = certificate.notValidAfter.timeIntervalSince(now)
                let residual = left <= 0 ? "expired" : left >= 86_400 ? "\(Int(left / 86_400))d" : "\(Int(left / 3_600))h"
                print(row([name, "\(certificate.notValidAfter)", residual, "\(certificate.subject)"], widths: [13, 26, 14]))
            }
        }
    }

    struct Renew: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Renew certificates (all, or the named: peer, store-client, node, admin) with the CA in the data directory; a running node presents them from its next connection on.")
        @Option(help: "The node's data directory.")
        var dataDir: String = "/var/lib/raftkube"
        @Option(help: "Days the renewed certificates are valid.")
        var days: Int = 365
        @Argument(help: "Which certificates: all (the default), or any of peer, store-client, node, admin.")
        var names: [String] = ["all"]

        func run() throws {
            let config = try NodeConfig.require(dataDir)
            let paths = NodePaths(dataDir: dataDir)
            guard !config.worker, FileManager.default.fileExists(atPath: paths.caKey) else {
                throw ValidationError("\(config.nodeName) is a worker: it holds no CA key; its node certificate is renewed by joining again (certificate rotation through the API server comes with the kubelet)")
            }
            guard (1...3650).contains(days) else { throw ValidationError("--days must be 1 to 3650") }
            let known = CertificateRenewal.files(paths).map(\.name)
            let chosen = names == ["all"] ? known : names
            for name in chosen where !known.contains(name) {
                throw ValidationError("no certificate named '\(name)': choose from all, \(known.joined(separator: ", "))")
            }
            let renewed = try CertificateRenewal.renew(paths, names: Set(chosen), days: days, clusterName: config.clusterName)
            for (name, expiry) in renewed { say("renewed \(name): valid until \(expiry)") }
            say("a running node presents them from its next connections on (no restart); connections already open keep the certificates they began with")
        }
    }

    struct MemberID: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "member-id",
            abstract: "Print the member ID a store member with this peer URL and cluster token gets: the ID its peer certificate must name (urn:raftkube:member:<id>).")
        @Option(help: "The member's peer URL, as in --initial-cluster.")
        var peerUrl: String
        @Option(help: "The store's --initial-cluster-token.")
        var initialClusterToken: String = "etcd-cluster"

        func run() throws {
            guard StoreMember.address(ofURL: peerUrl) != nil else { throw ValidationError("--peer-url '\(peerUrl)' is not a URL like https://10.0.0.1:2380") }
            print(String(StoreMember.memberID(peerURL: peerUrl, clusterToken: initialClusterToken), radix: 16))
        }
    }
}

/// Renewal of a control-plane node's own certificates with its CA: the same key, subject and
/// names, a new validity period.
enum CertificateRenewal {
    /// Certificates with fewer days left than this are renewed when a control-plane node starts.
    static let renewBeforeDays = 30

    /// The node's renewable certificates that exist, by name.
    static func files(_ paths: NodePaths) -> [(name: String, path: String)] {
        [("peer", paths.peerCertificate), ("store-client", paths.storeClientCertificate), ("node", paths.nodeCertificate), ("admin", paths.adminCertificate)]
            .filter { FileManager.default.fileExists(atPath: $0.1) }
    }

    /// Renews the named certificates; returns each one's new expiry.
    static func renew(_ paths: NodePaths, names: Set<String>, days: Int, clusterName: String) throws -> [(String, Date)] {
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
    static func reissue(_ old: Certificate, by ca: CertificateAuthority, days: Int) throws -> Certificate {
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
        } else if let organization = organizations.first {
            profile = .client(organization: organization)
        } else {
            throw ValidationError("certificate \"\(old.subject)\" has no organization: not one raftkube issued")
        }
        return try ca.issue(profile: profile, commonName: commonName, dnsNames: dnsNames, ipAddresses: addresses, publicKey: old.publicKey, days: days)
    }

    /// Renews the node's certificates that have fewer than ``renewBeforeDays`` left (on a node
    /// with the CA key); returns what it renewed.
    static func renewDue(_ paths: NodePaths, clusterName: String, now: Date = Date()) throws -> [(String, Date)] {
        guard FileManager.default.fileExists(atPath: paths.caKey) else { return [] }
        let due = files(paths).filter { _, path in
            guard let certificate = try? PEMFiles.certificates(path).first else { return false }
            return certificate.notValidAfter.timeIntervalSince(now) < Double(renewBeforeDays) * 86_400
        }.map(\.name)
        guard !due.isEmpty else { return [] }
        return try renew(paths, names: Set(due), days: 365, clusterName: clusterName)
    }

    /// The text form of a 4- or 16-byte address.
    static func ipAddressText(_ bytes: [UInt8]) -> String? {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = bytes.count == 4 ? AF_INET : bytes.count == 16 ? AF_INET6 : -1
        guard family != -1, bytes.withUnsafeBytes({ inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }) != nil else { return nil }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
