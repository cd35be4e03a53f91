import ClusterHarness
import Foundation
import Testing

/// Debian's etcdctl 3.4 against a 3-member raftkube store of separate processes.
@Suite("etcdctl against raftkube store", .serialized)
struct EtcdctlTests {
    @Test("A scripted etcdctl session: put, get (prefix, rev, limit, sort, keys-only), del, txn, status, members, health, compaction")
    func etcdctlSession() throws {
        #expect(FileManager.default.isExecutableFile(atPath: "/usr/bin/etcdctl"), "etcdctl is missing: apt-get install etcd-client (.ci/run does)")
        let cluster = try StoreCluster(name: "etcdctl")
        defer { cluster.tearDown() }
        try cluster.start()
        try cluster.waitUntilServing()

        func run(_ arguments: String..., endpoints: String? = nil, input: String? = nil) throws -> String {
            let (status, output, _) = try cluster.etcdctl(arguments, endpoints: endpoints, input: input)
            #expect(status == 0, "etcdctl \(arguments.joined(separator: " ")) failed: \(output)")
            return output.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        #expect(try run("put", "foo", "bar") == "OK")
        // Written through one member, read from another.
        #expect(try run("get", "foo", endpoints: "127.0.0.1:\(cluster.clientPort(3))") == "foo\nbar")
        for (key, value) in [("fruit/apple", "red"), ("fruit/banana", "yellow"), ("fruit/cherry", "dark")] {
            #expect(try run("put", key, value) == "OK")
        }
        #expect(try run("get", "fruit/", "--prefix", "--keys-only") == "fruit/apple\n\nfruit/banana\n\nfruit/cherry")
        #expect(try run("get", "fruit/", "--prefix", "--limit=2") == "fruit/apple\nred\nfruit/banana\nyellow")
        #expect(try run("get", "fruit/", "--prefix", "--sort-by=VALUE", "--order=DESCEND", "--print-value-only") == "yellow\nred\ndark")
        // etcdctl 3.4 has no --count-only; the count comes back in every range response.
        #expect(try run("get", "fruit/", "--prefix", "--limit=1", "-w", "fields").contains("\"Count\" : 3"))
        // History: foo was written at revision 3 (1 is the empty store, 2 the readiness probe).
        #expect(try run("put", "foo", "baz") == "OK")
        #expect(try run("get", "foo", "--rev=3") == "foo\nbar")
        #expect(try run("get", "foo") == "foo\nbaz")
        #expect(try run("del", "fruit/", "--prefix") == "3")
        #expect(try run("get", "fruit/", "--prefix").isEmpty)
        // A compare-and-set that holds, and one that does not.
        #expect(try run("txn", input: "value(\"foo\") = \"baz\"\n\nput foo qux\n\nput foo never\n\n").hasPrefix("SUCCESS"))
        #expect(try run("txn", input: "value(\"foo\") = \"baz\"\n\nput foo never\n\nget foo\n\n") == "FAILURE\n\nfoo\nqux")
        // Status and members from every endpoint: one leader, three members.
        let status = try run("endpoint", "status", "-w", "table")
        // Only the leader's row says true (no member is a learner).
        #expect(status.split(separator: "\n").filter { $0.contains("true") }.count == 1, "exactly one leader expected: \(status)")
        let members = try run("member", "list")
        #expect(members.split(separator: "\n").count == 3)
        #expect(try run("endpoint", "health").components(separatedBy: "is healthy").count - 1 == 3)
        // --cluster finds every member's client URL through the member list.
        let clusterHealth = try run("endpoint", "health", "--cluster", endpoints: "127.0.0.1:\(cluster.clientPort(2))")
        #expect((1...3).allSatisfy { clusterHealth.contains("http://127.0.0.1:\(cluster.clientPort($0)) is healthy") }, "\(clusterHealth)")
        #expect(try run("endpoint", "status", "--cluster", endpoints: "127.0.0.1:\(cluster.clientPort(1))").split(separator: "\n").count == 3)
        // Compaction: reads below it fail with etcd's error.
        let revision = try run("get", "foo", "-w", "fields").split(separator: "\n").first { $0.contains("\"Revision\"") }.map { $0.split(separator: ":").last!.trimmingCharacters(in: .whitespaces) }
        let current = try #require(revision.flatMap { Int($0) })
        #expect(try run("compact", "\(current)") == "compacted revision \(current)")
        let old = try cluster.etcdctl(["get", "foo", "--rev=3"])
        #expect(old.status != 0)
        #expect(old.output.contains("etcdserver: mvcc: required revision has been compacted"))
    }

    @Test("etcdctl watch: history from a revision with prev-kv, live events, a compacted start is cancelled")
    func watch() throws {
        let cluster = try StoreCluster(name: "watch")
        defer { cluster.tearDown() }
        try cluster.start()
        try cluster.waitUntilServing()
        // Revision 2 is the readiness probe; these are 3 and 4.
        #expect(try cluster.etcdctl(["put", "w/a", "1"]).status == 0)
        #expect(try cluster.etcdctl(["put", "w/b", "2"]).status == 0)
        let finish = try cluster.etcdctlInBackground(["watch", "w/", "--prefix", "--rev=3", "--prev-kv"], seconds: 5, endpoints: "127.0.0.1:\(cluster.clientPort(2))")
        Thread.sleep(forTimeInterval: 1.5)
        #expect(try cluster.etcdctl(["put", "w/a", "3"]).status == 0)
        #expect(try cluster.etcdctl(["del", "w/b"]).status == 0)
        #expect(try cluster.etcdctl(["put", "elsewhere", "9"]).status == 0)
        let output = finish().split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        // Replayed history, then the live put (with its previous value) and delete; nothing outside the prefix.
        #expect(Array(output.prefix(13)) == ["PUT", "w/a", "1", "PUT", "w/b", "2", "PUT", "w/a", "1", "w/a", "3", "DELETE", "w/b"], "\(output)")
        #expect(!output.contains("elsewhere"))
        // After compaction, a watch from before it is cancelled with etcd's reason.
        #expect(try cluster.etcdctl(["compact", "5"]).status == 0)
        let compacted = try cluster.etcdctl(["watch", "w/", "--prefix", "--rev=3"])
        #expect(compacted.status != 0)
        #expect(compacted.output.contains("required revision has been compacted"))
    }

    @Test("etcdctl leases: grant, attach, time-to-live with keys, list, keep-alive on the leader, expiry, revoke")
    func leases() throws {
        let cluster = try StoreCluster(name: "lease")
        defer { cluster.tearDown() }
        try cluster.start()
        try cluster.waitUntilServing()
        func leaseID(_ output: String) -> String? {
            output.split(separator: " ").dropFirst().first.map(String.init)
        }
        // Long enough for the next few etcdctl calls on a loaded machine, short enough to watch expire.
        let short = try #require(leaseID(try cluster.etcdctl(["lease", "grant", "8"]).output))
        #expect(try cluster.etcdctl(["put", "--lease=\(short)", "ephemeral", "1"]).status == 0)
        let ttl = try cluster.etcdctl(["lease", "timetolive", short, "--keys"]).output
        #expect(ttl.contains("granted with TTL(8s)") && ttl.contains("attached keys([ephemeral])"), "\(ttl)")
        #expect(try cluster.etcdctl(["lease", "list"]).output.contains(short))
        // Keep-alive goes to the leader, which keeps time for leases.
        let status = try cluster.etcdctl(["endpoint", "status"]).output
        let leader = try #require(status.split(separator: "\n").first { $0.contains(", true,") }.map { String($0.split(separator: ",")[0]) })
        let kept = try cluster.etcdctl(["lease", "keep-alive", "--once", short], endpoints: leader)
        #expect(kept.output.contains("keepalived with TTL(8)"), "\(kept.output)")
        // Through a follower, keep-alives are forwarded to the leader over the one connection the
        // follower keeps to it (not a connection per keep-alive).
        let forwardedLease = try #require(leaseID(try cluster.etcdctl(["lease", "grant", "60"]).output))
        let leaderPort = try #require(leader.split(separator: ":").last.flatMap { Int($0) })
        for member in 1...3 where cluster.clientPort(member) != leaderPort {
            for _ in 0..<4 {
                let forwarded = try cluster.etcdctl(["lease", "keep-alive", "--once", forwardedLease], endpoints: "127.0.0.1:\(cluster.clientPort(member))")
                #expect(forwarded.output.contains("keepalived with TTL(60)"), "\(forwarded.output)")
            }
            let pid = try #require(cluster.processIdentifier(member))
            #expect(Self.establishedConnections(pid: pid, toPort: leaderPort) == 1, "member \(member)'s connections to the leader")
        }
        // Without keep-alives the lease expires within its TTL (plus the check interval) and takes its key.
        var expired = false
        for _ in 0..<80 where !expired {
            Thread.sleep(forTimeInterval: 0.25)
            expired = try cluster.etcdctl(["get", "ephemeral"]).output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        }
        #expect(expired, "the key of an expired lease is still there")
        #expect(try cluster.etcdctl(["lease", "timetolive", short]).output.contains("already expired"))
        // Revoking deletes the attached keys at once.
        let long = try #require(leaseID(try cluster.etcdctl(["lease", "grant", "100"]).output))
        #expect(try cluster.etcdctl(["put", "--lease=\(long)", "k2", "v"]).status == 0)
        #expect(try cluster.etcdctl(["lease", "revoke", long]).output.contains("revoked"))
        #expect(try cluster.etcdctl(["get", "k2"]).output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
        let unknown = try cluster.etcdctl(["lease", "revoke", "1234"])
        #expect(unknown.status != 0 && unknown.output.contains("requested lease not found"))
    }

    /// Established TCP connections (IPv4) of process `pid` to local port `port`: its sockets'
    /// inodes from /proc/PID/fd, matched in /proc/net/tcp.
    static func establishedConnections(pid: Int32, toPort port: Int) -> Int {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        let inodes = Set(fds.compactMap { fd -> String? in
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"),
                  target.hasPrefix("socket:[") else { return nil }
            return String(target.dropFirst(8).dropLast())
        })
        // Read to the end: /proc files report size 0, and String(contentsOfFile:) stops early.
        let table = String(decoding: FileHandle(forReadingAtPath: "/proc/\(pid)/net/tcp")?.readDataToEndOfFile() ?? Data(), as: UTF8.self)
        let hex = String(port, radix: 16, uppercase: true)
        let remote = ":" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
        return table.split(separator: "\n").dropFirst().filter { line in
            let fields = line.split(separator: " ")
            return fields.count > 9 && fields[2].hasSuffix(remote) && fields[3] == "01" && inodes.contains(String(fields[9]))
        }.count
    }

    @Test("Bad requests get etcd's errors and change nothing")
    func badRequests() throws {
        let cluster = try StoreCluster(name: "bad")
        defer { cluster.tearDown() }
        try cluster.start()
        try cluster.waitUntilServing()
        let future = try cluster.etcdctl(["get", "ready", "--rev=999"])
        #expect(future.status != 0)
        #expect(future.output.contains("etcdserver: mvcc: required revision is a future revision"))
        let ignoreMissing = try cluster.etcdctl(["put", "nokey", "--ignore-value"])
        #expect(ignoreMissing.status != 0)
        #expect(ignoreMissing.output.contains("etcdserver: key not found"))
        let unknownLease = try cluster.etcdctl(["put", "k", "v", "--lease=1234"])
        #expect(unknownLease.status != 0)
        #expect(unknownLease.output.contains("etcdserver: requested lease not found"))
        // Nothing above wrote: only the readiness probe exists.
        #expect(try cluster.etcdctl(["get", "", "--prefix", "--keys-only"]).output.trimmingCharacters(in: .whitespacesAndNewlines) == "ready")
    }

    /// The throughput verdict says every one of etcdctl's writes went through at its rate; the
    /// slowest-request and deviation verdicts are timings of a debug build on a shared 2-core
    /// machine (a clean-clone CI run saw one 2.3 s request), so they are printed, not asserted:
    /// performance is measured by cluster/bench-etcd, with a release build.
    @Test("etcdctl check perf --load=s: all of its writes go through at 150 writes/s from 50 clients, with no errors")
    func checkPerf() throws {
        let cluster = try StoreCluster(name: "perf")
        defer { cluster.tearDown() }
        try cluster.start()
        try cluster.waitUntilServing()
        let result = try cluster.etcdctl(["check", "perf", "--load=s"], commandTimeout: 120)
        let verdict = result.stdout.split(separator: "\n").filter { $0.hasPrefix("PASS") || $0.hasPrefix("FAIL") }
        #expect(verdict.contains { $0.hasPrefix("PASS: Throughput is") }, "\(verdict.joined(separator: "\n"))\n\(result.output.suffix(300))")
        #expect(!result.output.contains("Error") && !result.output.contains("\"level\":\"warn\""), "\(result.output.suffix(600))")
        print("check perf --load=s: \(verdict.joined(separator: "; "))")
    }

    @Test("Acknowledged writes survive the SIGKILL of the leader")
    func writesSurviveLeaderKill() throws {
        let cluster = try StoreCluster(name: "kill")
        defer { cluster.tearDown() }
        try cluster.start()
        try cluster.waitUntilServing()
        for value in 0..<20 { #expect(try cluster.etcdctl(["put", "k\(value)", "v\(value)"]).status == 0) }
        let table = try cluster.etcdctl(["endpoint", "status"]).output
        let leaderLine = table.split(separator: "\n").first { $0.contains(", true,") }
        let leaderPort = try #require(leaderLine.flatMap { $0.split(separator: ",").first }.flatMap { Int($0.split(separator: ":").last!) })
        let leader = try #require((1...3).first { cluster.clientPort($0) == leaderPort })
        cluster.kill(leader)
        let survivors = (1...3).filter { $0 != leader }.map { "127.0.0.1:\(cluster.clientPort($0))" }.joined(separator: ",")
        var written = false
        for _ in 0..<50 where !written {
            written = (try? cluster.etcdctl(["put", "after", "kill"], endpoints: survivors))?.status == 0
            if !written { Thread.sleep(forTimeInterval: 0.2) }
        }
        #expect(written, "the surviving majority never accepted a write")
        let keys = try cluster.etcdctl(["get", "k", "--prefix", "--keys-only"], endpoints: survivors).output.split(separator: "\n").filter { !$0.isEmpty }
        #expect(keys.count == 20)
        try cluster.start(leader)
        var caughtUp = false
        for _ in 0..<50 where !caughtUp {
            caughtUp = (try? cluster.etcdctl(["get", "after", "--consistency=s", "--print-value-only"], endpoints: "127.0.0.1:\(cluster.clientPort(leader))"))?.output.contains("kill") == true
            if !caughtUp { Thread.sleep(forTimeInterval: 0.2) }
        }
        #expect(caughtUp, "the restarted member did not catch up")
    }
}
