import APIServer
import APIServerHTTP
import ClusterPKI
import EtcdServer
import Logging
import ServiceLifecycle

/// The API server of a control-plane node: HTTPS on the node's address (port 6443 unless the
/// configuration names another) with its serving certificate from the cluster CA, on the
/// store in this process, authorizing by RBAC; and the bootstrap namespaces and RBAC policy,
/// made once the store has a leader.
public enum APIServerServices {
    public static func make(_ config: NodeConfig, paths: NodePaths, store: EmbeddedStore, authority: CertificateAuthority, logger: Logger) throws -> [any Service] {
        try paths.ensureAPIServerCertificate(ca: authority, name: config.nodeName, address: config.advertiseAddress)
        let identity = try TLSIdentity.load(certificate: paths.apiServerCertificate, key: paths.apiServerKey, trustedCA: paths.caCertificate)
        let storage = ObjectStorage(store: store)
        let address = "\(config.advertiseAddress):\(config.apiServerPort)"
        let authorizer = RBACAuthorizer()
        let handler = APIHandler(storage: storage, serverAddress: address, authorizer: authorizer)
        let server = try APIHTTPServer(APIHTTPServer.Configuration(host: config.advertiseAddress, port: config.apiServerPort, identity: identity),
                                       handler: handler, logger: logger) { port in
            logger.info("API server listening", metadata: ["address": "https://\(config.advertiseAddress):\(port)"])
        }
        return [server, Bootstrap(storage: storage, logger: logger), PolicyFollower(authorizer: authorizer, storage: storage),
                NamespaceCleanup(finalizer: NamespaceFinalizer(handler: handler)),
                KubernetesEndpoints(service: KubernetesService(storage: storage, address: config.advertiseAddress, port: config.apiServerPort))]
    }

    /// The `kubernetes` Service and its Endpoints (this server among the live ones).
    struct KubernetesEndpoints: Service {
        let service: KubernetesService

        func run() async throws {
            await cancelWhenGracefulShutdown {
                await service.run()
            }
        }
    }

    /// Deletes the content of namespaces being deleted, then the namespaces.
    struct NamespaceCleanup: Service {
        let finalizer: NamespaceFinalizer

        func run() async throws {
            await cancelWhenGracefulShutdown {
                await finalizer.run()
            }
        }
    }

    /// Keeps the RBAC authorizer's policy current from the store.
    struct PolicyFollower: Service {
        let authorizer: RBACAuthorizer
        let storage: ObjectStorage

        func run() async throws {
            await cancelWhenGracefulShutdown {
                await authorizer.run(storage)
            }
        }
    }

    /// Makes the bootstrap objects, retrying while the store has no leader, then idles.
    struct Bootstrap: Service {
        let storage: ObjectStorage
        let logger: Logger

        func run() async throws {
            await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    do {
                        try await BootstrapObjects.ensure(storage)
                        return
                    } catch {
                        if ![429, 503, 504].contains((error as? APIError)?.code ?? 0) {
                            logger.warning("cannot make the bootstrap namespaces yet", metadata: ["error": "\(error)"])
                        }
                        try? await Task.sleep(for: .milliseconds(500))
                    }
                }
            }
            try? await gracefulShutdown()
        }
    }
}
