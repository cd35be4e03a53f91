import ClusterHarness
import EtcdAPI
import Foundation
import GRPCCore
import Testing

/// etcd's space quota and NOSPACE alarm on real member processes, driven with etcdctl as an
/// operator would: writes past `--quota-backend-bytes` raise the alarm for the whole cluster,
/// and compaction, defragment and `alarm disarm` clear it.
@Suite("Space quota and the NOSPACE alarm", .serialized)
struct QuotaAlarmTests {
    static let quotaBytes = 2 << 20

    /// The revision in an etcdctl JSON answer's header.
    static func revision(_ json: String) -> Int? {
        json.firstMatch(of: /"revision":(\d+)/).flatMap { Int($0.output.1) }
    }

    @Test("Past a 2 MiB quota puts fail with etcd's error and raise NOSPACE on every member (alarm list, endpoint status); deletes still run; compact + defrag + alarm disarm clear it and writes work again")
    func quotaAlarm() throws {
        let cluster = try StoreCluster(name: "quota")
        cluster.extraArguments = ["--quota-backend-bytes", "\(Self.quotaBytes)"]
        defer { cluster.tearDown() }
        try cluster.start()
        try cluster.waitUntilServing()

        // 100 KiB values through one member until the quota refuses one (about 20 fit).
        let value = String(repeating: "q", count: 100 << 10)
        var refusal = ""
        var written = 0
        for number in 0..<60 {
            let put = try cluster.etcdctl(["put", "big-\(number)"], endpoints: cluster.endpoint(1), input: value)
            if put.status != 0 {
                refusal = put.output
                break
            }
            written += 1
        }
        #expect(refusal.contains("etcdserver: mvcc: database space exceeded"), "after \(written) puts: \(refusal)")
        #expect(written >= 5 && written < 60, "\(written) puts before the refusal")

        // The alarm is replicated: every member lists it and refuses even a tiny put; status
        // shows it in its errors column.
        for member in 1...3 {
            let listed = try eventually(10) {
                try cluster.etcdctl(["alarm", "list"], endpoints: cluster.endpoint(member)).stdout.contains("alarm:NOSPACE")
            }
            let list = try cluster.etcdctl(["alarm", "list"], endpoints: cluster.endpoint(member)).output
            #expect(listed, "member \(member): \(list)")
            let small = try cluster.etcdctl(["put", "small", "x"], endpoints: cluster.endpoint(member))
            #expect(small.status != 0 && small.output.contains("database space exceeded"), "member \(member): \(small.output)")
            let grant = try cluster.etcdctl(["lease", "grant", "60"], endpoints: cluster.endpoint(member))
            #expect(grant.status != 0 && grant.output.contains("database space exceeded"), "member \(member): \(grant.output)")
        }
        let status = try cluster.etcdctl(["endpoint", "status", "-w", "table"])
        #expect(status.stdout.contains("alarm:NOSPACE"), "\(status.output)")

        // Space is won back as etcd's operators do it: delete, compact, defragment, disarm.
        let deleted = try cluster.etcdctl(["del", "big-", "--prefix"])
        #expect(deleted.status == 0 && deleted.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "\(written)", "\(deleted.output)")
        let revision = try #require(Self.revision(try cluster.etcdctl(["get", "ready", "-w", "json"]).stdout))
        let compact = try cluster.etcdctl(["compact", "\(revision)", "--physical"])
        #expect(compact.status == 0, "\(compact.output)")
        let defrag = try cluster.etcdctl(["defrag", "--cluster"])
        #expect(defrag.status == 0 && defrag.output.components(separatedBy: "Finished defragmenting").count == 4, "\(defrag.output)")
        let disarm = try cluster.etcdctl(["alarm", "disarm"])
        #expect(disarm.status == 0 && disarm.stdout.contains("alarm:NOSPACE"), "\(disarm.output)")
        for member in 1...3 {
            #expect(try eventually(10) { try cluster.etcdctl(["alarm", "list"], endpoints: cluster.endpoint(member)).stdout.isEmpty })
            let put = try cluster.etcdctl(["put", "after-\(member)", "x"], endpoints: cluster.endpoint(member))
            #expect(put.status == 0, "member \(member): \(put.output)")
        }
        #expect(try cluster.etcdctl(["get", "after-", "--prefix", "--keys-only"]).stdout.split(separator: "\n").filter { !$0.isEmpty }.count == 3)

        // A disarm while still over the quota is raised again by the next write that adds data.
        for number in 0..<60 {
            if try cluster.etcdctl(["put", "again-\(number)"], endpoints: cluster.endpoint(2), input: value).status != 0 { break }
        }
        #expect(try eventually(10) { try cluster.etcdctl(["alarm", "list"]).stdout.contains("alarm:NOSPACE") })
        _ = try cluster.etcdctl(["alarm", "disarm"])
        let refusedAgain = try cluster.etcdctl(["put", "again-more"], endpoints: cluster.endpoint(2), input: value)
        #expect(refusedAgain.status != 0 && refusedAgain.output.contains("database space exceeded"), "\(refusedAgain.output)")
        #expect(try eventually(10) { try cluster.etcdctl(["alarm", "list"]).stdout.contains("alarm:NOSPACE") })
    }

    @Test("Alarm requests with an unknown action or type are refused with INVALID_ARGUMENT and raise nothing; activating NONE changes nothing")
    func badAlarmRequests() async throws {
        let cluster = try StoreCluster(name: "alarm-bad", count: 1)
        defer { cluster.tearDown() }
        try cluster.start()
        try cluster.waitUntilServing()
        try await withEtcdClient(port: cluster.clientPort(1)) { client in
            let maintenance = Etcdserverpb_Maintenance.Client(wrapping: client)
            var unknownAction = Etcdserverpb_AlarmRequest()
            unknownAction.action = .UNRECOGNIZED(7)
            unknownAction.alarm = .nospace
            let badAction = unknownAction
            let actionError = await rpcError { _ = try await maintenance.alarm(badAction) }
            #expect(actionError?.code == .invalidArgument, "\(String(describing: actionError))")
            var unknownType = Etcdserverpb_AlarmRequest()
            unknownType.action = .activate
            unknownType.memberID = 1
            unknownType.alarm = .UNRECOGNIZED(9)
            let badType = unknownType
            let typeError = await rpcError { _ = try await maintenance.alarm(badType) }
            #expect(typeError?.code == .invalidArgument, "\(String(describing: typeError))")
            var none = Etcdserverpb_AlarmRequest()
            none.action = .activate
            none.memberID = 1
            none.alarm = .none
            let noneAnswer = try await maintenance.alarm(none)
            #expect(noneAnswer.alarms.isEmpty)
            var list = Etcdserverpb_AlarmRequest()
            list.action = .get
            #expect(try await maintenance.alarm(list).alarms.isEmpty)
        }
        #expect(try cluster.etcdctl(["put", "still", "writable"]).status == 0)
    }
}
