import ClusterHarness
import EtcdAPI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCProtobuf
import Testing

/// Watch behaviour etcdctl 3.4 cannot show: progress notifications (periodic, for watches created
/// with progress_notify, and on request), seen through a gRPC client of the etcd API; and a
/// watch that lives through a leader change, through etcdctl.
@Suite("Watch progress and leader changes", .serialized)
struct WatchProgressTests {
    @Test("progress_notify watches hear the revision when idle; a progress request is answered after the events it vouches for")
    func progressNotifications() async throws {
        let cluster = try StoreCluster(name: "progress")
        cluster.extraArguments = ["--experimental-watch-progress-notify-interval", "300ms"]
        defer { cluster.tearDown() }
        try cluster.start()
        try cluster.waitUntilServing()
        let port = cluster.clientPort(2)
        let responses = try await withGRPCClient(
            transport: .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
        ) { client in
            try await Etcdserverpb_Watch.Client(wrapping: client).watch { writer in
                var create = Etcdserverpb_WatchRequest()
                create.createRequest = .with {
                    $0.key = Data("p/".utf8)
                    $0.rangeEnd = Data("p0".utf8)
                    $0.progressNotify = true
                }
                try await writer.write(create)
                try await Task.sleep(for: .milliseconds(500))
                _ = try cluster.etcdctl(["put", "p/a", "1"])
                _ = try cluster.etcdctl(["put", "elsewhere", "2"])
                try await Task.sleep(for: .seconds(2))
                var progress = Etcdserverpb_WatchRequest()
                progress.progressRequest = Etcdserverpb_WatchProgressRequest()
                try await writer.write(progress)
                try await Task.sleep(for: .milliseconds(700))
            } onResponse: { stream in
                var collected: [Etcdserverpb_WatchResponse] = []
                for try await message in stream.messages { collected.append(message) }
                return collected
            }
        }
        let created = try #require(responses.first)
        #expect(created.created && !created.canceled)
        let eventIndex = try #require(responses.firstIndex { !$0.events.isEmpty }, "no event: \(responses)")
        let eventRevision = responses[eventIndex].events[0].kv.modRevision
        #expect(responses[eventIndex].events.map { String(decoding: $0.kv.key, as: UTF8.self) } == ["p/a"])
        let periodic = responses.filter { $0.events.isEmpty && !$0.created && $0.watchID == created.watchID }
        #expect(periodic.count >= 3, "periodic progress notifications: \(periodic.count)")
        // A progress notification never promises a revision whose events were not yet sent.
        for (index, response) in responses.enumerated() where response.events.isEmpty && !response.created {
            #expect(index > eventIndex ? response.header.revision >= eventRevision : response.header.revision < eventRevision)
        }
        // The requested one covers the later write outside the watched range too.
        let requested = try #require(responses.last { $0.watchID == -1 }, "no answer to the progress request")
        #expect(requested.events.isEmpty && requested.header.revision == eventRevision + 1)
    }

    @Test("A watch on a follower sees every acknowledged write, once and in order, across the leader's SIGKILL")
    func watchAcrossLeaderChange() throws {
        let cluster = try StoreCluster(name: "watchlc")
        defer { cluster.tearDown() }
        try cluster.start()
        try cluster.waitUntilServing()
        let status = try cluster.etcdctl(["endpoint", "status"]).stdout.split(separator: "\n").map { $0.components(separatedBy: ", ") }
        let leaderEndpoint = try #require(status.first { $0.count > 4 && $0[4] == "true" }?[0])
        let leader = try #require((1...3).first { "127.0.0.1:\(cluster.clientPort($0))" == leaderEndpoint })
        let others = (1...3).filter { $0 != leader }
        let finish = try cluster.etcdctlInBackground(["watch", "lc/", "--prefix"], seconds: 16, endpoints: "127.0.0.1:\(cluster.clientPort(others[0]))")
        Thread.sleep(forTimeInterval: 1.5)
        var acknowledged: [String] = []
        for index in 0..<5 where try cluster.etcdctl(["put", "lc/\(index)", "v"]).status == 0 {
            acknowledged.append("lc/\(index)")
        }
        cluster.kill(leader)
        let survivors = others.map { "127.0.0.1:\(cluster.clientPort($0))" }.joined(separator: ",")
        for index in 5..<10 {
            let deadline = Date().addingTimeInterval(8)
            while Date() < deadline {
                if try cluster.etcdctl(["put", "lc/\(index)", "v"], endpoints: survivors, commandTimeout: 3).status == 0 {
                    acknowledged.append("lc/\(index)")
                    break
                }
            }
        }
        #expect(acknowledged.count == 10, "writes after the leader's death: \(acknowledged)")
        let lines = finish().split(separator: "\n").map(String.init)
        let seen = lines.indices.filter { lines[$0] == "PUT" && $0 + 1 < lines.count }.map { lines[$0 + 1] }
        #expect(Set(seen).count == seen.count, "an event was delivered twice: \(seen)")
        // Every acknowledged write, in write order (a timed-out put may also appear: it may have applied).
        #expect(seen.filter { acknowledged.contains($0) } == acknowledged, "\(seen)")

        // A watch resumed from a revision sees everything from it: here from lc/5's.
        let fields = try cluster.etcdctl(["get", "lc/5", "-w", "fields"], endpoints: survivors).stdout
        let revision = try #require(fields.split(separator: "\n").first { $0.hasPrefix("\"ModRevision\"") }.flatMap { Int($0.split(separator: ":").last!.trimmingCharacters(in: .whitespaces)) })
        let resumed = try cluster.etcdctlInBackground(["watch", "lc/", "--prefix", "--rev=\(revision)"], seconds: 3, endpoints: survivors)()
        let resumedLines = resumed.split(separator: "\n").map(String.init)
        let replayed = resumedLines.indices.filter { resumedLines[$0] == "PUT" && $0 + 1 < resumedLines.count }.map { resumedLines[$0 + 1] }
        #expect(replayed.filter { acknowledged.contains($0) } == Array(acknowledged.suffix(5)), "\(replayed)")
    }
}
