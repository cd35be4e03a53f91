import ClusterHarness
import EtcdServer
import Foundation
import KVStore
import Testing

/// etcdctl's cluster and maintenance commands against real member processes: membership
/// changes (with a fourth process joining), snapshot save, defragment, hashes, leader moves and
/// etcd's request size limits.
@Suite("etcdctl membership and maintenance", .serialized)
struct MembershipMaintenanceTests {
    /// `etcdctl member list` rows: ID, status, name, peer URLs, client URLs, is learner.
    static func members(_ cluster: StoreCluster, endpoints: String? = nil) throws -> [[String]] {
        let result = try cluster.etcdctl(["member", "list"], endpoints: endpoints)
        guard result.status == 0 else { return [] }
        return result.stdout.split(separator: "\n").map { $0.components(separatedBy: ", ") }.filter { $0.count == 6 }
    }

    @Test("member add (learner), a fourth process joins, promote, remove through a follower; bad membership requests refused")
    func membership() throws {
        let cluster = try StoreCluster(name: "members")
        defer { cluster.tearDown() }
        try cluster.start()
        try cluster.waitUntilServing()
        // Every member publishes its name and client URL through the log.
        let published = try eventually {
            let rows = try Self.members(cluster)
            return rows.count == 3 && Set(rows.map { $0[2] }) == ["m1", "m2", "m3"]
                && rows.allSatisfy { row in (1...3).contains { row[4] == "http://127.0.0.1:\(cluster.clientPort($0))" } }
        }
        #expect(published, "member list: \((try? Self.members(cluster)) ?? [])\n\(cluster.diagnostics())")

        let add = try cluster.etcdctl(["member", "add", "m4", "--learner", "--peer-urls=http://127.0.0.1:\(cluster.peerPort(4))"])
        #expect(add.status == 0 && add.output.contains("added to cluster"), "\(add.output)")
        #expect(add.output.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""))
        let unstarted = try #require(try Self.members(cluster).first { $0[3] == "http://127.0.0.1:\(cluster.peerPort(4))" })
        #expect(unstarted[1] == "unstarted" && unstarted[5] == "true", "\(unstarted)")
        let id4 = unstarted[0]

        try cluster.start(4, members: [1, 2, 3, 4], existing: true)
        let endpoint4 = "127.0.0.1:\(cluster.clientPort(4))"
        // The learner catches up (serializable reads are local) and publishes itself.
        let caughtUp = try eventually {
            (try cluster.etcdctl(["get", "ready", "--consistency=s", "--print-value-only"], endpoints: endpoint4)).stdout.contains("yes")
        }
        #expect(caughtUp, "the new member never caught up\n\(cluster.diagnostics())")
        #expect(try eventually { try Self.members(cluster).contains { $0[0] == id4 && $0[2] == "m4" && $0[4] == "http://\(endpoint4)" } })

        // Promotion succeeds once the learner is in sync; promoting a voter is refused.
        var promote = ""
        let promoted = try eventually {
            promote = try cluster.etcdctl(["member", "promote", id4]).output
            return promote.contains("promoted")
        }
        #expect(promoted, "\(promote)")
        let again = try cluster.etcdctl(["member", "promote", id4])
        #expect(again.status != 0 && again.output.contains("etcdserver: can only promote a learner member"), "\(again.output)")
        #expect(try Self.members(cluster).first { $0[0] == id4 }?[5] == "false")

        // Writes through the new voter; reads elsewhere.
        #expect(try cluster.etcdctl(["put", "via4", "yes"], endpoints: endpoint4).status == 0)
        #expect(try cluster.etcdctl(["get", "via4", "--print-value-only"], endpoints: "127.0.0.1:\(cluster.clientPort(1))").stdout.contains("yes"))

        // Remove m2, asking member 4 (a follower forwards to the leader).
        let id2 = try #require(try Self.members(cluster).first { $0[2] == "m2" }?[0])
        let remove = try cluster.etcdctl(["member", "remove", id2], endpoints: endpoint4)
        #expect(remove.status == 0 && remove.output.contains("removed from cluster"), "\(remove.output)")
        cluster.kill(2)
        #expect(try Self.members(cluster, endpoints: endpoint4).map { $0[2] }.sorted() == ["m1", "m3", "m4"])
        let survivors = [1, 3, 4].map { "127.0.0.1:\(cluster.clientPort($0))" }.joined(separator: ",")
        #expect(try eventually { try cluster.etcdctl(["put", "after-remove", "1"], endpoints: survivors).status == 0 })

        // Bad requests: etcd's errors, and the membership does not change.
        let unknown = try cluster.etcdctl(["member", "remove", "1234abcd"], endpoints: survivors)
        #expect(unknown.status != 0 && unknown.output.contains("etcdserver: member not found"), "\(unknown.output)")
        let duplicate = try cluster.etcdctl(["member", "add", "again", "--peer-urls=http://127.0.0.1:\(cluster.peerPort(1))"], endpoints: survivors)
        #expect(duplicate.status != 0 && duplicate.output.contains("etcdserver: Peer URLs already exists"), "\(duplicate.output)")
        let promoteVoter = try cluster.etcdctl(["member", "promote", id4], endpoints: survivors)
        #expect(promoteVoter.status != 0 && promoteVoter.output.contains("can only promote a learner member"))
        #expect(try Self.members(cluster, endpoints: survivors).count == 3)
    }

    @Test("member update moves a member's peer URL; restarted on the new port it keeps its ID and rejoins")
    func memberUpdate() throws {
        let cluster = try StoreCluster(name: "update")
        defer { cluster.tearDown() }
        try cluster.start()
        try cluster.waitUntilServing()
        let id3 = try #require(try Self.members(cluster).first { $0[2] == "m3" }?[0])
        // A port of this cluster's block that no member uses.
        let newPort = cluster.clientPort(9) + 1
        let update = try cluster.etcdctl(["member", "update", id3, "--peer-urls=http://127.0.0.1:\(newPort)"])
        #expect(update.status == 0 && update.output.contains("updated in cluster"), "\(update.output)")
        cluster.kill(3)
        cluster.movedPeerPorts[3] = newPort
        try cluster.start(3)
        let endpoint3 = "127.0.0.1:\(cluster.clientPort(3))"
        // Writes after the restart reach member 3 only through its new peer address.
        // m3 may have led: a write forwarded to it before m1 and m2 elect a new leader is lost
        // (etcd's clients see the same timeout), so write until one is acknowledged.
        let written = try eventually {
            try cluster.etcdctl(["put", "after-move", "yes"], endpoints: "127.0.0.1:\(cluster.clientPort(1))", commandTimeout: 3).status == 0
        }
        #expect(written, "\(cluster.diagnostics())")
        let rejoined = try eventually {
            try cluster.etcdctl(["get", "after-move", "--consistency=s", "--print-value-only"], endpoints: endpoint3).stdout.contains("yes")
        }
        #expect(rejoined, "member 3 did not rejoin on its new peer URL\n\(cluster.diagnostics())")
        let row = try #require(try Self.members(cluster).first { $0[0] == id3 })
        #expect(row[2] == "m3" && row[3] == "http://127.0.0.1:\(newPort)", "\(row)")
        #expect(try Self.members(cluster).count == 3)
        let unknown = try cluster.etcdctl(["member", "update", "1234abcd", "--peer-urls=http://127.0.0.1:1"])
        #expect(unknown.status != 0 && unknown.output.contains("etcdserver: member not found"), "\(unknown.output)")
    }

    @Test("snapshot save gives a whole SQLite copy; defrag, hashkv, move-leader; oversized requests refused with etcd's errors")
    func maintenance() throws {
        let cluster = try StoreCluster(name: "maint")
        defer { cluster.tearDown() }
        try cluster.start()
        try cluster.waitUntilServing()
        for index in 0..<40 { #expect(try cluster.etcdctl(["put", "k\(index)", String(repeating: "v", count: 2_000)]).status == 0) }
        #expect(try cluster.etcdctl(["del", "k3"]).status == 0)

        // `snapshot save` streams the database of one member into a file that opens as a store.
        let file = cluster.root + "/backup.db"
        let saved = try cluster.etcdctl(["snapshot", "save", file], endpoints: "127.0.0.1:\(cluster.clientPort(2))")
        #expect(saved.status == 0 && saved.output.contains("Snapshot saved at \(file)"), "\(saved.output)")
        // The copy it streamed from is gone.
        let left = (FileManager.default.enumerator(atPath: "\(cluster.root)/m2")?.allObjects as? [String] ?? []).filter { $0.contains(".copy-") }
        #expect(left.isEmpty, "\(left)")
        // The file is the database and its SHA-256, as etcd lays it out; the database opens as a store.
        let contents = try [UInt8](Data(contentsOf: URL(fileURLWithPath: file)))
        let database = try #require(SnapshotFile.database(from: contents), "the snapshot's checksum does not match")
        #expect(database.starts(with: Array("SQLite format 3\u{0}".utf8)))
        var corrupted = contents
        corrupted[100] ^= 1
        #expect(SnapshotFile.database(from: corrupted) == nil)
        try Data(database).write(to: URL(fileURLWithPath: file + ".sqlite"))
        let restored = try KVStore.open(path: file + ".sqlite")
        let range = try restored.range(RangeRequest(key: Array("k".utf8), rangeEnd: Array("l".utf8), countOnly: true))
        #expect(try range.get().count == 39)
        restored.close()

        let defrag = try cluster.etcdctl(["defrag"])
        #expect(defrag.output.components(separatedBy: "Finished defragmenting etcd member").count - 1 == 3, "\(defrag.output)")
        let hashes = try cluster.etcdctl(["endpoint", "hashkv"]).stdout.split(separator: "\n").compactMap { $0.split(separator: ", ").last }
        #expect(hashes.count == 3 && Set(hashes).count == 1, "\(hashes)")

        // Move the leadership to a follower, asking any member.
        let status = try cluster.etcdctl(["endpoint", "status"]).stdout.split(separator: "\n").map { $0.components(separatedBy: ", ") }
        let leader = try #require(status.first { $0.count > 4 && $0[4] == "true" })
        let follower = try #require(status.first { $0.count > 4 && $0[4] == "false" })
        let move = try cluster.etcdctl(["move-leader", follower[1]])
        #expect(move.status == 0 && move.output.contains("Leadership transferred from \(leader[1]) to \(follower[1])"), "\(move.output)")
        let moved = try eventually(10) {
            try cluster.etcdctl(["endpoint", "status"], endpoints: follower[0]).stdout.contains(", true,")
        }
        #expect(moved)

        // etcd's limits: 1.5 MiB per request, 2 MiB per gRPC message. Nothing oversized is written.
        let fits = try cluster.etcdctl(["put", "big"], input: String(repeating: "b", count: 1_000_000))
        #expect(fits.status == 0, "\(fits.output)")
        let tooLarge = try cluster.etcdctl(["put", "big"], input: String(repeating: "c", count: 1_700_000))
        #expect(tooLarge.status != 0 && tooLarge.output.contains("etcdserver: request is too large"), "\(tooLarge.output.suffix(300))")
        let pastTransport = try cluster.etcdctl(["put", "big"], input: String(repeating: "d", count: 3_000_000))
        #expect(pastTransport.status != 0, "\(pastTransport.output.suffix(300))")
        let value = try cluster.etcdctl(["get", "big", "--print-value-only"]).stdout
        #expect(value.hasPrefix("bbbb") && !value.contains("c") && !value.contains("d"))
    }
}
