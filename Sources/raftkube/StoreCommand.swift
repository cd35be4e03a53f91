import ArgumentParser
import EtcdServer
import Foundation
import Logging
import Raft
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

    @Option(help: "Milliseconds per Raft tick.")
    var heartbeatInterval: Int = 100

    struct Endpoint {
        var host: String
        var port: Int
    }

    static func endpoint(_ url: String, option: String) throws -> Endpoint {
        var text = Substring(url)
        for scheme in ["http://", "https://"] where text.hasPrefix(scheme) { text = text.dropFirst(scheme.count) }
        guard let address = PeerAddress(String(text.split(separator: "/").first ?? "")) else {
            throw ValidationError("\(option): '\(url)' is not a URL like http://127.0.0.1:2379")
        }
        return Endpoint(host: address.host, port: address.port)
    }

    func run() async throws {
        guard ["new", "existing"].contains(initialClusterState) else { throw ValidationError("--initial-cluster-state must be new or existing") }
        let client = try Self.endpoint(listenClientUrls, option: "--listen-client-urls")
        let peer = try Self.endpoint(listenPeerUrls, option: "--listen-peer-urls")
        var names: [NodeID: String] = [:]
        var peerURLs: [NodeID: String] = [:]
        var peers: [NodeID: PeerAddress] = [:]
        var myID: NodeID?
        for (position, item) in initialCluster.split(separator: ",").enumerated() {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw ValidationError("--initial-cluster: '\(item)' is not name=URL") }
            let id = NodeID(position + 1)
            let endpoint = try Self.endpoint(parts[1], option: "--initial-cluster")
            names[id] = parts[0]
            peerURLs[id] = parts[1]
            peers[id] = PeerAddress(host: endpoint.host, port: endpoint.port)
            if parts[0] == name { myID = id }
        }
        guard let id = myID else { throw ValidationError("--name \(name) is not in --initial-cluster") }
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .info
            return handler
        }
        var logger = Logger(label: "raftkube.store")
        logger[metadataKey: "member"] = "\(name)"
        let watches = WatchBroker()
        let stateMachine = try KVStateMachine(path: dataDir + "/kv.sqlite") { events, revision in
            watches.publish(events, revision: revision)
        }
        var configuration = RuntimeConfiguration(
            id: id, dataDirectory: dataDir + "/raft", listen: PeerAddress(host: peer.host, port: peer.port),
            peers: peers, bootstrap: initialClusterState == "new")
        configuration.heartbeatIntervalMs = heartbeatInterval
        let runtime = RaftRuntime(configuration: configuration, stateMachine: stateMachine, logger: logger)
        // The cluster ID is derived from the initial member list, so every member agrees on it.
        let clusterID = initialCluster.utf8.reduce(UInt64(0xCBF2_9CE4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x0000_0100_0000_01B3 }
        let member = StoreMember(runtime: runtime, stateMachine: stateMachine, watches: watches, clusterID: clusterID, names: names, peerURLs: peerURLs, clientURLs: [id: listenClientUrls])
        let leases = LeaseKeeper(member: member, extensionMs: Int64(heartbeatInterval * 10))
        let api = EtcdGRPCServer(member: member, leases: leases, host: client.host, port: client.port)
        let group = ServiceGroup(services: [runtime, leases, api], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
    }
}
