import ClusterHarness
import EtcdAPI
import Foundation
import KVStore
import Testing

@testable import EtcdServer

/// A range whose result would pass ``KVLimits/rangeResultBytesMax`` (64 MiB), alone or in a txn,
/// fails with RESOURCE_EXHAUSTED on a real member instead of building the response; paged with a
/// limit it is answered (issue 11, item 14).
@Suite("Range result limit", .serialized)
struct RangeLimitTests {
    @Test("A 69 MB range fails with RESOURCE_EXHAUSTED for the lean client, etcdctl and inside a txn; with --limit it is answered")
    func rangeOverTheCap() async throws {
        let cluster = try StoreCluster(name: "rangecap", count: 1)
        defer { cluster.tearDown() }
        try cluster.start()
        try cluster.waitUntilServing()
        let client = try await WireClient.connect(host: "127.0.0.1", port: cluster.clientPort(1))
        // 46 values of 1.5 MB: about 69 MB, past the 64 MiB cap; each put is under --max-request-bytes.
        let value = Data(repeating: 0x76, count: 1_500_000)
        for number in 0..<46 {
            var put = Etcdserverpb_PutRequest()
            put.key = Data(String(format: "big/%02d", number).utf8)
            put.value = value
            let _: Etcdserverpb_PutResponse = try await client.unary("/etcdserverpb.KV/Put", put)
        }
        #expect(46 * (value.count + 46) > KVLimits.default.rangeResultBytesMax)

        var range = Etcdserverpb_RangeRequest()
        range.key = Data("big/".utf8)
        range.rangeEnd = Data("big0".utf8)
        for serializable in [false, true] {
            range.serializable = serializable
            do {
                let _: Etcdserverpb_RangeResponse = try await client.unary("/etcdserverpb.KV/Range", range)
                Issue.record("a range of 69 MB was answered (serializable: \(serializable))")
            } catch let error as WireCallError {
                #expect(error.code == 8 && error.message == KVError.responseTooLarge.message, "\(error)")
            }
        }
        var txn = Etcdserverpb_TxnRequest()
        var write = Etcdserverpb_RequestOp()
        var marker = Etcdserverpb_PutRequest()
        marker.key = Data("marker".utf8)
        marker.value = Data("x".utf8)
        write.requestPut = marker
        var read = Etcdserverpb_RequestOp()
        range.serializable = false
        read.requestRange = range
        txn.success = [write, read]
        do {
            let _: Etcdserverpb_TxnResponse = try await client.unary("/etcdserverpb.KV/Txn", txn)
            Issue.record("a txn with a 69 MB range was answered")
        } catch let error as WireCallError {
            #expect(error.code == 8 && error.message == KVError.responseTooLarge.message, "\(error)")
        }

        let whole = try cluster.etcdctl(["get", "big/", "--prefix", "--keys-only=false"], commandTimeout: 30)
        #expect(whole.status != 0 && whole.output.contains("range response is too large"), "\(whole.output.prefix(500))")
        let paged = try cluster.etcdctl(["get", "big/", "--prefix", "--limit", "10", "--keys-only"], commandTimeout: 30)
        #expect(paged.status == 0 && paged.stdout.split(separator: "\n").filter { !$0.isEmpty }.count == 10, "\(paged.output.prefix(500))")
        let keys = try cluster.etcdctl(["get", "big/", "--prefix", "--keys-only"], commandTimeout: 30)
        #expect(keys.status == 0 && keys.stdout.split(separator: "\n").filter { !$0.isEmpty }.count == 46, "\(keys.output.prefix(500))")
        // The txn wrote nothing.
        let markerRead = try cluster.etcdctl(["get", "marker", "--print-value-only"])
        #expect(markerRead.status == 0 && markerRead.stdout.isEmpty, "\(markerRead.output)")
        await client.close()
    }
}
