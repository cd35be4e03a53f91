import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import ServiceLifecycle

/// The etcd v3 gRPC endpoint of a store member, as a `Service`.
public struct EtcdGRPCServer: Service {
    let member: StoreMember
    let leases: LeaseKeeper
    let host: String
    let port: Int
    let logger: Logger

    public init(member: StoreMember, leases: LeaseKeeper, host: String, port: Int, logger: Logger) {
        self.member = member
        self.leases = leases
        self.host = host
        self.port = port
        self.logger = logger
    }

    public func run() async throws {
        let server = GRPCServer(
            transport: .http2NIOPosix(
                address: .ipv4(host: host, port: port), transportSecurity: member.security?.serverSecurity(logger: logger) ?? .plaintext,
                // etcd's limit: the request limit plus 512 KiB of gRPC overhead; past it gRPC
                // refuses the message, below it and past the request limit the store does.
                config: .defaults { $0.rpc.maxRequestPayloadSize = member.requestBytesMax + 512 * 1024 }),
            services: [
                KVService(member: member), WatchService(member: member), LeaseService(member: member, keeper: leases),
                MaintenanceService(member: member), ClusterService(member: member),
            ])
        try await withGracefulShutdownHandler {
            try await server.serve()
        } onGracefulShutdown: {
            server.beginGracefulShutdown()
        }
    }
}
