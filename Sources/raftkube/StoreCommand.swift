import ArgumentParser
import ClusterPKI
import EtcdServer
import Node
import KVStore
import Foundation
import Logging
import NIOConcurrencyHelpers
import Raft
import X509
import RaftRuntime
import ServiceLifecycle

/// `raftkube store`: one member of the etcd-compatible replicated store, bootstrapped statically
/// the way etcd is (`--initial-cluster`). Restarting with the same data directory resumes.
struct StoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "Run a member of the etcd-compatible replicated store (etcd v3 gRPC API).")

    @Option(help: "This member's name, as listed in --initial-cluster.")
    var name: String

    @Option(help: "Data directory (the Raft log in raft/, the keyspace in kv.sqlite).")
    var dataDir: String

    @Option(help: "URL to serve the etcd v3 API on, e.g. http://127.0.0.1:2379.")
    var listenClientUrls: String

    @Option(help: "URL for peer traffic, e.g. http://127.0.0.1:2380.")
    var listenPeerUrls: String

    @Option(help: "Comma-separated name=peer-URL of every initial member, in the same order on every member.")
    var initialCluster: String

    @Option(help: "new (bootstrap the listed members) or existing.")
    var initialClusterState: String = "new"

    @Option(help: "Client URL to tell other members and clients (default: --listen-client-urls).")
    var advertiseClientUrls: String?

    @Option(help: "Peer URL to tell other members (default: --listen-peer-urls); must be this member's entry in --initial-cluster.")
    var initialAdvertisePeerUrls: String?

    @Option(help: "Mixed into member and cluster IDs, so that two clusters never share them.")
    var initialClusterToken: String = "etcd-cluster"

    @Option(help: "How often idle watches created with progress_notify hear the revision, e.g. 10m, 5s, 500ms.")
    var experimentalWatchProgressNotifyInterval: String = "10m"

    @Option(help: "Applied entries between snapshots of the keyspace (etcd's --snapshot-count).")
    var snapshotCount: UInt64 = 100_000

    @Option(help: "Database size in bytes past which writes that add data are refused and the NOSPACE alarm is raised (etcd's --quota-backend-bytes; 0: 2 GiB; at most 7 GiB, under the 8 GiB a snapshot may have; negative: no quota, which lets a database outgrow what a snapshot can carry).")
    var quotaBackendBytes: Int64 = 0

    @Option(help: "Milliseconds per Raft tick.")
    var heartbeatInterval: Int = 100

    @Option(help: "TLS certificate (PEM) for the etcd API; client URLs are then https.")
    var certFile: String?

    @Option(help: "Private key (PEM) of --cert-file.")
    var keyFile: String?

    @Option(help: "CA certificate (PEM) that client certificates must chain to.")
    var trustedCaFile: String?

    @Flag(inversion: .prefixedNo, help: "Require a client certificate issued by --trusted-ca-file on the etcd API (the default with https client URLs; --no-client-cert-auth lets anyone who reaches the port in).")
    var clientCertAuth: Bool?

    @Flag(help: "Allow plain http:// URLs on addresses other than loopback (anyone on the network can then read and write the store, or pose as a peer).")
    var insecurePlaintext = false

    @Option(help: "TLS certificate (PEM) for peer traffic; peer URLs are then https and peers must present a node certificate of the same CA.")
    var peerCertFile: String?

    @Option(help: "Private key (PEM) of --peer-cert-file.")
    var peerKeyFile: String?

    @Option(help: "CA certificate (PEM) that peer certificates must chain to.")
    var peerTrustedCaFile: String?

    /// Logs go to standard error at info level; set up once per process.
    static func bootstrapLogging() {
        LoggingOnce.bootstrap
    }

    /// The certificate/key/CA option triple as files, nil when none is given; a partial triple
    /// is a usage error.
    static func tlsFiles(certificate: String?, key: String?, ca: String?, options: String) throws -> StoreMemberConfiguration.TLSFiles? {
        guard let certificate, let key, let ca else {
            if certificate != nil || key != nil || ca != nil { throw ValidationError("\(options) go together: give all three or none") }
            return nil
        }
        return StoreMemberConfiguration.TLSFiles(certificate: certificate, key: key, trustedCA: ca)
    }

    /// The member these flags describe.
    func configuration() throws -> StoreMemberConfiguration {
        guard ["new", "existing"].contains(initialClusterState) else { throw ValidationError("--initial-cluster-state must be new or existing") }
        guard let progressInterval = StoreNode.duration(experimentalWatchProgressNotifyInterval), progressInterval > .zero else {
            throw ValidationError("--experimental-watch-progress-notify-interval: '\(experimentalWatchProgressNotifyInterval)' is not a duration like 10m, 5s or 500ms")
        }
        var configuration = StoreMemberConfiguration(name: name, dataDirectory: dataDir, listenClientURL: listenClientUrls,
                                                     listenPeerURL: listenPeerUrls, initialCluster: initialCluster)
        configuration.advertiseClientURL = advertiseClientUrls
        configuration.advertisePeerURL = initialAdvertisePeerUrls
        configuration.bootstrapsCluster = initialClusterState == "new"
        configuration.clusterToken = initialClusterToken
        configuration.watchProgressNotifyInterval = progressInterval
        configuration.snapshotCount = snapshotCount
        configuration.quotaBackendBytes = quotaBackendBytes
        configuration.heartbeatIntervalMs = heartbeatInterval
        configuration.clientTLS = try Self.tlsFiles(certificate: certFile, key: keyFile, ca: trustedCaFile, options: "--cert-file, --key-file and --trusted-ca-file")
        configuration.clientCertificateRequired = clientCertAuth
        configuration.peerTLS = try Self.tlsFiles(certificate: peerCertFile, key: peerKeyFile, ca: peerTrustedCaFile,
                                                  options: "--peer-cert-file, --peer-key-file and --peer-trusted-ca-file")
        configuration.insecurePlaintext = insecurePlaintext
        return configuration
    }

    func run() async throws {
        let configuration = try configuration()
        Self.bootstrapLogging()
        let node: StoreNode
        do {
            node = try StoreNode.make(configuration)
        } catch let error as NodeError {
            throw ValidationError(error.description)
        }
        try await node.run()
    }
}

/// `LoggingSystem.bootstrap` may run only once per process.
enum LoggingOnce {
    static let bootstrap: Void = LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = .info
        return handler
    }
}
