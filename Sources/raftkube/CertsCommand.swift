import ArgumentParser
import ClusterPKI
import EtcdServer
import Node
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
