import ClusterPKI
import EtcdServer
import Foundation
import Logging
import ServiceLifecycle

/// Runs a node from its saved configuration: on control-plane nodes the store member with
/// mutual TLS everywhere, the join endpoint, the learner promoter, the token janitor, the
/// certificate renewer and the API server; nothing yet on workers. (The executable sets up logging first.)
public enum NodeRunner {
    /// The store member of a control-plane node, from its configuration and its files.
    public static func storeConfiguration(_ config: NodeConfig, paths: NodePaths) -> StoreMemberConfiguration {
        let address = config.advertiseAddress
        var store = StoreMemberConfiguration(name: config.nodeName, dataDirectory: paths.store,
                                             listenClientURL: "https://\(address):\(config.clientPort)",
                                             listenPeerURL: "https://\(address):\(config.peerPort)", initialCluster: config.initialCluster)
        store.bootstrapsCluster = config.initialClusterState == "new"
        store.clusterToken = config.clusterToken
        let tls = StoreMemberConfiguration.TLSFiles(certificate: paths.peerCertificate, key: paths.peerKey, trustedCA: paths.caCertificate)
        store.clientTLS = tls
        store.clientCertificateRequired = true
        store.peerTLS = tls
        return store
    }

    /// Runs the node until SIGTERM/SIGINT; `afterStart` runs once the services are up (what
    /// `init` does on its first start: store the join tokens).
    public static func run(_ config: NodeConfig, dataDir: String, certificateCheckInterval: Duration = CertificateRenewer.defaultInterval,
                           afterStart: (@Sendable (EmbeddedStore, Logger) async -> Void)? = nil) async throws {
        let paths = NodePaths(dataDir: dataDir)
        try PrivateFiles.prepare(dataDir)
        // `raftkube leave` finds the running node by this file.
        try DurableFile.write("\(getpid())\n", to: "\(dataDir)/node.pid", secret: false)
        let logger = Logger(label: "raftkube.node")
        if config.worker {
            logger.info("worker node up; it runs no store member (the kubelet and proxy come later)", metadata: ["node": "\(config.nodeName)"])
            try await ServiceGroup(services: [IdleService()], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
            return
        }
        for (name, expiry) in try CertificateRenewal.renewDue(paths, clusterName: config.clusterName) {
            logger.info("renewed a certificate with fewer than \(CertificateRenewal.renewBeforeDays) days left", metadata: ["certificate": "\(name)", "expires": "\(expiry)"])
        }
        let node = try StoreNode.make(storeConfiguration(config, paths: paths))
        let authority = CertificateAuthority(certificate: try PEMFiles.certificates(paths.caCertificate)[0], privateKey: try PEMFiles.privateKey(paths.caKey))
        let identity = try IdentityFiles(certificate: paths.peerCertificate, key: paths.peerKey, trustedCA: paths.caCertificate, logger: logger)
        let member = node.member
        let join = JoinAuthority(store: node.store, clusterToken: member.clusterToken, authority: authority, clusterName: config.clusterName,
                                 clientPort: config.clientPort, peerPort: config.peerPort, logger: node.logger)
        var services: [any Service] = [
            JoinServer(authority: join, identity: identity, host: config.advertiseAddress, port: config.joinPort),
            AutoPromoter(member: member, votersMax: config.votersMax, logger: node.logger),
            TokenJanitor(store: node.store, isLeader: { member.runtime.observed.withLockedValue { $0.isLeader } }, logger: node.logger),
            CertificateRenewer(paths: paths, clusterName: config.clusterName, interval: certificateCheckInterval, logger: node.logger),
        ]
        services += try APIServerServices.make(config, paths: paths, store: node.store, authority: authority, logger: node.logger)
        if let afterStart { services.append(OneShot(store: node.store, logger: node.logger, body: afterStart)) }
        try await node.run(with: services)
    }

    /// A service that does nothing until shutdown (a worker's placeholder).
    struct IdleService: Service {
        func run() async throws {
            try? await gracefulShutdown()
        }
    }

    /// Runs `body` once after start, then idles until shutdown.
    struct OneShot: Service {
        let store: EmbeddedStore
        let logger: Logger
        let body: @Sendable (EmbeddedStore, Logger) async -> Void
        func run() async throws {
            await body(store, logger)
            try? await gracefulShutdown()
        }
    }
}
