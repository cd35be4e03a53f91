import EtcdAPI
import GRPCCore
import Logging
import RaftRuntime
import ServiceLifecycle

/// The etcd v3 gRPC endpoint of a store member, as a `Service`: the services' methods behind a
/// ``WireServer``.
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
        // etcd's limit: the request limit plus 512 KiB of gRPC overhead; past it gRPC refuses
        // the message, below it and past the request limit the store does.
        let connectionLimits = ConnectionLimits.client
        var limits = WireLimits(messageBytesMax: member.requestBytesMax + 512 * 1024)
        limits.idleTimeoutMs = connectionLimits.idleTimeoutMs
        let server = try await WireServer.bind(
            host: host, port: port, router: Self.router(member: member, leases: leases), limits: limits,
            gate: try ConnectionGate(limits: connectionLimits, name: "client", logger: logger),
            secure: try member.security?.serverSecurer(logger: logger))
        logger.debug("etcd API listening", metadata: ["port": "\(server.port ?? port)"])
        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await server.waitUntilClosed()
            } onGracefulShutdown: {
                server.close()
            }
        } onCancel: {
            server.close()
        }
    }

    /// Every method of the KV, Watch, Lease, Maintenance and Cluster services.
    static func router(member: StoreMember, leases: LeaseKeeper) -> WireRouter {
        var router = WireRouter()
        let store = EmbeddedStore(member: member, leases: leases)
        let kv = KVService(store: store)
        typealias KV = Etcdserverpb_KV.Method
        // Serializable ranges are answered on the event loop; linearizable ones after the barrier.
        // The hot calls run without a task each: the runtime calls back, the connection's event
        // loop makes and sends the answer.
        router.unary(KV.Range.descriptor, inline: { request in request.serializable ? try kv.localRange(request) : nil }, start: kv.range(_:done:))
        router.unary(KV.Put.descriptor, start: kv.put(_:done:))
        router.unary(KV.DeleteRange.descriptor, start: kv.deleteRange(_:done:))
        router.unary(KV.Txn.descriptor, start: kv.txn(_:done:))
        router.unary(KV.Compact.descriptor, kv.compact(request:context:))

        router.bidirectional(Etcdserverpb_Watch.Method.Watch.descriptor, WatchService(member: member).watch(request:response:context:))

        let lease = LeaseService(store: store)
        typealias Lease = Etcdserverpb_Lease.Method
        router.unary(Lease.LeaseGrant.descriptor, lease.leaseGrant(request:context:))
        router.unary(Lease.LeaseRevoke.descriptor, lease.leaseRevoke(request:context:))
        router.bidirectional(Lease.LeaseKeepAlive.descriptor, lease.leaseKeepAlive(request:response:context:))
        router.unary(Lease.LeaseTimeToLive.descriptor, lease.leaseTimeToLive(request:context:))
        router.unary(Lease.LeaseLeases.descriptor, lease.leaseLeases(request:context:))

        let maintenance = MaintenanceService(store: store)
        typealias Maintenance = Etcdserverpb_Maintenance.Method
        router.unary(Maintenance.Alarm.descriptor, maintenance.alarm(request:context:))
        router.unary(Maintenance.Status.descriptor, maintenance.status(request:context:))
        router.unary(Maintenance.Defragment.descriptor, maintenance.defragment(request:context:))
        router.unary(Maintenance.Hash.descriptor, maintenance.hash(request:context:))
        router.unary(Maintenance.HashKV.descriptor, maintenance.hashKV(request:context:))
        router.serverStreaming(Maintenance.Snapshot.descriptor, maintenance.snapshot(request:response:context:))
        router.unary(Maintenance.MoveLeader.descriptor, maintenance.moveLeader(request:context:))
        router.unary(Maintenance.Downgrade.descriptor, maintenance.downgrade(request:context:))

        let cluster = ClusterService(store: store)
        typealias Cluster = Etcdserverpb_Cluster.Method
        router.unary(Cluster.MemberAdd.descriptor, cluster.memberAdd(request:context:))
        router.unary(Cluster.MemberRemove.descriptor, cluster.memberRemove(request:context:))
        router.unary(Cluster.MemberUpdate.descriptor, cluster.memberUpdate(request:context:))
        router.unary(Cluster.MemberList.descriptor, cluster.memberList(request:context:))
        router.unary(Cluster.MemberPromote.descriptor, cluster.memberPromote(request:context:))
        return router
    }
}
