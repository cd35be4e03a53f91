import ClusterHarness
import EtcdAPI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Testing

@testable import KVStore

/// Issue 11, items 8 and 10, against a real 3-member store: inputs that bea4cd2 turned into a
/// dead cluster. Each test fails on bea4cd2 (members exit) and passes now.
@Suite("Inputs that must not crash a member", .serialized)
struct CrashInputTests {
    typealias Client = GRPCClient<HTTP2ClientTransport.Posix>

    /// Every call is bounded: a member that died must fail the test, not hang it.
    static var callOptions: CallOptions {
        var options = CallOptions.defaults
        options.timeout = .seconds(15)
        return options
    }

    static func status(_ client: Client) async throws -> Etcdserverpb_StatusResponse {
        try await Etcdserverpb_Maintenance.Client(wrapping: client).status(Etcdserverpb_StatusRequest(), options: Self.callOptions)
    }

    /// The member (1-based) that leads, with every member's Raft ID.
    static func roles(_ cluster: StoreCluster) async throws -> (leader: Int, ids: [Int: UInt64], term: UInt64, index: UInt64) {
        var ids: [Int: UInt64] = [:]
        var leaderID: UInt64 = 0
        var term: UInt64 = 0
        var index: UInt64 = 0
        for member in 1...cluster.count {
            let status = try await withEtcdClient(port: cluster.clientPort(member)) { try await Self.status($0) }
            ids[member] = status.header.memberID
            leaderID = status.leader
            term = status.raftTerm
            index = max(index, status.raftIndex)
        }
        let leader = try #require(ids.first { $0.value == leaderID }?.key)
        return (leader, ids, term, index)
    }

    /// Every member answers a linearizable read with the same value, and the same hash of the
    /// keyspace at the same revision.
    static func expectEveryMemberServesAndAgrees(_ cluster: StoreCluster, key: String, value: String) async throws {
        let revision = try await withEtcdClient(port: cluster.clientPort(1)) { client in
            try await Etcdserverpb_KV.Client(wrapping: client).put(.with {
                $0.key = Data(key.utf8)
                $0.value = Data(value.utf8)
            }, options: Self.callOptions).header.revision
        }
        var hashes: Set<UInt32> = []
        for member in 1...cluster.count {
            #expect(cluster.isRunning(member), "m\(member) died:\n\(cluster.diagnostics())")
            let (read, hash) = try await withEtcdClient(port: cluster.clientPort(member)) { client in
                let read = try await Etcdserverpb_KV.Client(wrapping: client).range(.with { $0.key = Data(key.utf8) }, options: Self.callOptions)
                let hash = try await Etcdserverpb_Maintenance.Client(wrapping: client).hashKV(.with { $0.revision = revision }, options: Self.callOptions)
                return (read, hash.hash)
            }
            #expect(read.kvs.first.map { String(decoding: $0.value, as: UTF8.self) } == value, "m\(member)")
            hashes.insert(hash)
        }
        #expect(hashes.count == 1, "members disagree at revision \(revision): \(hashes)")
    }

    /// Item 8: the Raft index is public, so a client can grant, with explicit IDs, every ID the
    /// store would generate at the coming indexes, then ask for a generated one. bea4cd2 hit
    /// `preconditionFailure` on that entry on every replica (and again on every replay).
    @Test("The lease-ID attack on a 3-member store: refused with etcd's error, every member keeps serving and agrees")
    func leaseIDAttack() async throws {
        let cluster = try StoreCluster(name: "leaseattack")
        defer { cluster.tearDown() }
        try cluster.start()
        try cluster.waitUntilServing()
        let roles = try await Self.roles(cluster)
        let window: UInt64 = 8
        // Indexes the ID-less grants will land on, once the explicit grants (one index each) are in.
        let first = roles.index + window * UInt64(KVStore.generatedLeaseIDAttemptsMax) + 1
        let candidates = (first..<first + window).flatMap { KVStore.generatedLeaseIDCandidates(index: $0) }
        let port = cluster.clientPort(roles.leader)
        try await withEtcdClient(port: port) { client in
            let lease = Etcdserverpb_Lease.Client(wrapping: client)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<4 {
                    group.addTask {
                        for (position, id) in candidates.enumerated() where position % 4 == worker {
                            _ = try await lease.leaseGrant(.with { $0.ttl = 600; $0.id = id }, options: Self.callOptions)
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        // Generated grants until the window is passed: those inside it find every candidate taken.
        let (refusals, granted) = try await withEtcdClient(port: port) { client in
            var refusals: [RPCError] = []
            var granted = 0
            let lease = Etcdserverpb_Lease.Client(wrapping: client)
            for _ in 0..<(3 * window) {
                do {
                    _ = try await lease.leaseGrant(.with { $0.ttl = 600 }, options: Self.callOptions)
                    granted += 1
                } catch let error as RPCError {
                    refusals.append(error)
                }
                if try await Self.status(client).raftIndex >= first + window { break }
            }
            return (refusals, granted)
        }
        #expect(!refusals.isEmpty, "no generated grant landed in the attacked window (index drifted)")
        for refusal in refusals {
            #expect(refusal.code == .failedPrecondition && refusal.message == "etcdserver: lease already exists", "\(refusal)")
        }
        print("lease attack: \(candidates.count) explicit grants, \(refusals.count) refused and \(granted) generated grants")
        try await Self.expectEveryMemberServesAndAgrees(cluster, key: "after-attack", value: "alive")
        // And a restart replays the refused entries without trouble.
        let restarted = roles.leader % cluster.count + 1
        cluster.kill(restarted)
        try cluster.start(restarted)
        #expect(eventually(20) { (try? cluster.etcdctl(["get", "after-attack"], endpoints: cluster.endpoint(restarted)))?.stdout.contains("alive") == true })
        try await Self.expectEveryMemberServesAndAgrees(cluster, key: "after-restart", value: "alive")
    }

    /// Item 10: a snapshot message whose store image is garbage, or an SQLite file that passes
    /// SQLite's checks but breaks the store's invariants. bea4cd2 persisted it, then failed (or
    /// trapped in `KVStore.loadState`) restoring it, and again on every restart.
    @Test("A snapshot from a peer that the store cannot take is refused: the member stays up, restarts, and keeps its data")
    func badSnapshotFromAPeer() async throws {
        let cluster = try StoreCluster(name: "badsnap")
        defer { cluster.tearDown() }
        try cluster.start()
        try cluster.waitUntilServing()
        #expect(try cluster.etcdctl(["put", "kept", "value"]).status == 0)
        let roles = try await Self.roles(cluster)
        let target = roles.leader % cluster.count + 1
        let leaderID = try #require(roles.ids[roles.leader])
        let targetID = try #require(roles.ids[target])
        let voters = roles.ids.values.sorted()

        // An SQLite image of our schema whose revision is 0: SQLite's checks pass.
        let directory = NSTemporaryDirectory() + "badsnap-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let forged = try KVStore.open(path: directory + "/kv.sqlite")
        _ = try forged.apply([(index: 1, request: .put(PutRequest(key: Array("forged".utf8), value: [1])))])
        try forged.database.execute("UPDATE meta SET value = 0 WHERE name = 'current_revision'; UPDATE meta SET value = \(Int64.max / 4) WHERE name = 'applied_index'")
        let brokenInvariants = try forged.snapshotData()
        forged.close()
        let garbage = Array("SQLite format 3".utf8) + [0] + [UInt8](repeating: 0xA5, count: 4096)

        for image in [garbage, brokenInvariants] {
            let message = PeerFrames.message(.snapshot, from: leaderID, to: targetID, term: roles.term, snapshot: PeerFrames.RawSnapshot(
                index: roles.index + 100_000, term: roles.term, voters: voters,
                data: PeerFrames.runtimeSnapshot(stateMachineData: image)))
            try await PeerFrames.send(PeerFrames.batch([message]), port: cluster.peerPort(target))
        }
        try await Task.sleep(for: .milliseconds(500))
        #expect(cluster.isRunning(target), "m\(target) died:\n\(cluster.diagnostics())")
        let log = (try? String(contentsOfFile: "\(cluster.root)/m\(target).log", encoding: .utf8)) ?? ""
        #expect(log.contains("snapshot refused"), "the refusal was not logged")
        try await Self.expectEveryMemberServesAndAgrees(cluster, key: "after-snapshot", value: "alive")

        // Nothing of the snapshot was made durable: the member restarts with its own data.
        cluster.kill(target)
        try cluster.start(target)
        #expect(eventually(20) { (try? cluster.etcdctl(["get", "kept"], endpoints: cluster.endpoint(target)))?.stdout.contains("value") == true },
                "m\(target) after restart:\n\(cluster.diagnostics())")
        #expect(cluster.isRunning(target))
        let forgedKey = try cluster.etcdctl(["get", "forged"], endpoints: cluster.endpoint(target))
        #expect(!forgedKey.stdout.contains("forged"))
        try await Self.expectEveryMemberServesAndAgrees(cluster, key: "after-restart", value: "alive")
    }
}
