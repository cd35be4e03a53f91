import ArgumentParser
import EtcdAPI
import EtcdServer
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import NIOConcurrencyHelpers

/// Load against any etcd v3 endpoint (raftkube store or etcd itself), in the shape of etcd's own
/// `benchmark` tool: `--clients` concurrent callers over `--conns` gRPC connections, `--total`
/// requests, keys of `--key-size` and values of `--val-size` bytes. Prints requests per second
/// and latency percentiles on one line, so that runs against both servers compare side by side.
struct EtcdLoadOptions: ParsableArguments {
    @Option(help: "Comma-separated host:port client endpoints; connections are spread over them.")
    var endpoints: String = "127.0.0.1:2379"

    @Option(help: "Concurrent callers.")
    var clients: Int = 16

    @Option(help: "gRPC connections shared by the callers.")
    var conns: Int = 4

    @Option(help: "Requests in all.")
    var total: Int = 10_000

    @Option(help: "Bytes per key.")
    var keySize: Int = 8

    @Option(help: "Bytes per value.")
    var valSize: Int = 256

    func validate() throws {
        guard clients > 0, conns > 0, total > 0, keySize > 0, valSize >= 0 else {
            throw ValidationError("--clients, --conns, --total and --key-size must be positive, --val-size not negative")
        }
        guard keySize >= 8 else { throw ValidationError("--key-size must be at least 8 (keys are numbered)") }
        guard !addresses.isEmpty, addresses.count == endpoints.split(separator: ",").count else {
            throw ValidationError("--endpoints: give host:port pairs, e.g. 127.0.0.1:2379,127.0.0.1:2381")
        }
    }

    var addresses: [(host: String, port: Int)] {
        endpoints.split(separator: ",").compactMap { item in
            let url = item.contains("://") ? String(item) : "http://\(item)"
            return StoreMember.address(ofURL: url).map { ($0.host, $0.port) }
        }
    }

    /// Key `number`, zero-padded to the key size.
    func key(_ number: Int, prefix: String = "k") -> Data {
        let digits = String(number)
        let padding = max(0, keySize - prefix.count - digits.count)
        return Data((prefix + String(repeating: "0", count: padding) + digits).utf8)
    }

    var value: Data { Data(repeating: UInt8(ascii: "v"), count: valSize) }

    /// Runs `body` with `conns` connected clients.
    func withClients<Result: Sendable>(_ body: @Sendable ([GRPCClient<HTTP2ClientTransport.Posix>]) async throws -> Result) async throws -> Result {
        var clients: [GRPCClient<HTTP2ClientTransport.Posix>] = []
        let targets = addresses
        for index in 0..<conns {
            let target = targets[index % targets.count]
            clients.append(GRPCClient(transport: try .http2NIOPosix(target: .dns(host: target.host, port: target.port), transportSecurity: .plaintext)))
        }
        let connected = clients
        return try await withThrowingTaskGroup(of: Void.self, returning: Result.self) { group in
            for client in connected { group.addTask { try await client.runConnections() } }
            defer { for client in connected { client.beginGracefulShutdown() } }
            return try await body(connected)
        }
    }

    /// Runs `body` with `conns` connections of the lean unary client (``WireClient``), which
    /// costs the machine a fraction of grpc-swift's CPU per call; the watch load, a stream, uses
    /// grpc-swift.
    func withWireClients<Result: Sendable>(_ body: @Sendable ([WireClient]) async throws -> Result) async throws -> Result {
        var clients: [WireClient] = []
        let targets = addresses
        do {
            for index in 0..<conns {
                let target = targets[index % targets.count]
                clients.append(try await WireClient.connect(host: target.host, port: target.port))
            }
            let result = try await body(clients)
            for client in clients { await client.close() }
            return result
        } catch {
            for client in clients { await client.close() }
            throw error
        }
    }

    /// Runs `operation(client, number)` `total` times from `clients` concurrent callers and
    /// reports throughput and latency.
    func measure(_ name: String, operation: @escaping @Sendable (WireClient, Int) async throws -> Void) async throws -> LoadResult {
        let total = self.total
        let callers = clients
        return try await withWireClients { connections in
            let next = NIOLockedValueBox(0)
            let started = ContinuousClock.now
            let latencies = try await withThrowingTaskGroup(of: [Double].self, returning: [Double].self) { group in
                for caller in 0..<callers {
                    group.addTask {
                        let client = connections[caller % connections.count]
                        var mine: [Double] = []
                        while true {
                            let number = next.withLockedValue { value -> Int in
                                defer { value += 1 }
                                return value
                            }
                            guard number < total else { return mine }
                            let begin = ContinuousClock.now
                            try await operation(client, number)
                            mine.append((ContinuousClock.now - begin).milliseconds)
                        }
                    }
                }
                var all: [Double] = []
                for try await part in group { all += part }
                return all
            }
            return LoadResult(name: name, seconds: (ContinuousClock.now - started).milliseconds / 1000, latenciesMs: latencies)
        }
    }

    /// Runs `call`, once more if the client dropped its connection under it. grpc-swift's client
    /// closes a connection that receives 200 RST_STREAM frames in 10 s (its rapid-reset guard),
    /// and etcd 3.4's gRPC server ends many unary calls with one, so a busy connection to etcd is
    /// dropped every couple of hundred calls; the retried call's latency includes the reconnect,
    /// and the count is reported.
    static func retryingDroppedConnection(_ retries: NIOLockedValueBox<Int>, _ call: () async throws -> Void) async throws {
        var attempt = 0
        while true {
            do {
                return try await call()
            } catch let error as RPCError where error.code == .unavailable && attempt < 100 {
                // Until the client has its new connection ("subchannel isn't ready").
                if attempt == 0 { retries.withLockedValue { $0 += 1 } }
                attempt += 1
                try await Task.sleep(for: .milliseconds(1))
            }
        }
    }
}

struct LoadResult {
    var name: String
    var seconds: Double
    var latenciesMs: [Double]
    var retries = 0

    func percentile(_ fraction: Double) -> Double {
        let sorted = latenciesMs.sorted()
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))]
    }

    var line: String {
        let rate = Double(latenciesMs.count) / max(seconds, 1e-9)
        func ms(_ value: Double) -> String { String(format: "%.2f", value) }
        return "\(name): requests=\(latenciesMs.count) seconds=\(String(format: "%.2f", seconds)) requests-per-second=\(Int(rate)) p50-ms=\(ms(percentile(0.5))) p90-ms=\(ms(percentile(0.9))) p99-ms=\(ms(percentile(0.99))) reconnects=\(retries)"
    }
}

extension Duration {
    var milliseconds: Double {
        Double(components.seconds) * 1_000 + Double(components.attoseconds) / 1e15
    }
}

extension Bench {
    struct Put: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Puts of distinct keys against an etcd v3 endpoint.")
        @OptionGroup var load: EtcdLoadOptions

        func run() async throws {
            let load = self.load
            let value = load.value
            let result = try await load.measure("put") { client, number in
                var request = Etcdserverpb_PutRequest()
                request.key = load.key(number)
                request.value = value
                let _: Etcdserverpb_PutResponse = try await client.unary("/etcdserverpb.KV/Put", request)
            }
            print(result.line)
        }
    }

    struct Range: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Gets of one key (linearizable or serializable) against an etcd v3 endpoint.")
        @OptionGroup var load: EtcdLoadOptions

        @Option(help: "l (linearizable) or s (serializable).")
        var consistency: String = "l"

        func validate() throws {
            guard ["l", "s"].contains(consistency) else { throw ValidationError("--consistency must be l or s") }
        }

        func run() async throws {
            let load = self.load
            let serializable = consistency == "s"
            try await load.withWireClients { clients in
                var put = Etcdserverpb_PutRequest()
                put.key = load.key(0, prefix: "r")
                put.value = load.value
                let _: Etcdserverpb_PutResponse = try await clients[0].unary("/etcdserverpb.KV/Put", put)
            }
            let result = try await load.measure("range-\(consistency)") { client, _ in
                var request = Etcdserverpb_RangeRequest()
                request.key = load.key(0, prefix: "r")
                request.serializable = serializable
                let response: Etcdserverpb_RangeResponse = try await client.unary("/etcdserverpb.KV/Range", request)
                guard response.kvs.count == 1 else { throw ValidationError("the range key is missing") }
            }
            print(result.line)
        }
    }

    struct Txn: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Compare-and-put transactions of distinct keys against an etcd v3 endpoint.")
        @OptionGroup var load: EtcdLoadOptions

        func run() async throws {
            let load = self.load
            let value = load.value
            let result = try await load.measure("txn") { client, number in
                // If the key was never written (version 0), put it; else read it.
                var request = Etcdserverpb_TxnRequest()
                var compare = Etcdserverpb_Compare()
                compare.key = load.key(number, prefix: "t")
                compare.target = .version
                compare.result = .equal
                compare.version = 0
                request.compare = [compare]
                var put = Etcdserverpb_PutRequest()
                put.key = compare.key
                put.value = value
                var success = Etcdserverpb_RequestOp()
                success.requestPut = put
                var range = Etcdserverpb_RangeRequest()
                range.key = compare.key
                var failure = Etcdserverpb_RequestOp()
                failure.requestRange = range
                request.success = [success]
                request.failure = [failure]
                let _: Etcdserverpb_TxnResponse = try await client.unary("/etcdserverpb.KV/Txn", request)
            }
            print(result.line)
        }
    }

    struct Watch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Watch delivery: --watchers streams watch one prefix while --total puts are made; latency is put start to event arrival at every watcher.")
        @OptionGroup var load: EtcdLoadOptions

        @Option(help: "Watch streams (each with one watch on the prefix).")
        var watchers: Int = 100

        func run() async throws {
            guard watchers > 0 else { throw ValidationError("--watchers must be positive") }
            let load = self.load
            let watcherCount = watchers
            let prefix = Data("w".utf8)
            // Put start times by key number, and event arrival latencies.
            let starts = NIOLockedValueBox([Int: ContinuousClock.Instant]())
            let latencies = NIOLockedValueBox([Double]())
            let ready = NIOLockedValueBox(0)
            let retries = NIOLockedValueBox(0)
            let total = load.total
            let started = ContinuousClock.now
            try await load.withClients { clients in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for watcher in 0..<watcherCount {
                        group.addTask {
                            let client = Etcdserverpb_Watch.Client(wrapping: clients[watcher % clients.count])
                            try await client.watch { writer in
                                var create = Etcdserverpb_WatchRequest()
                                create.createRequest = .with {
                                    $0.key = prefix
                                    $0.rangeEnd = Data("x".utf8)
                                }
                                try await writer.write(create)
                                // Keep the stream open until every event has arrived.
                                while latencies.withLockedValue({ $0.count }) < total * watcherCount {
                                    try await Task.sleep(for: .milliseconds(50))
                                }
                            } onResponse: { responses in
                                var seen = 0
                                for try await response in responses.messages {
                                    if response.created { ready.withLockedValue { $0 += 1 } }
                                    let now = ContinuousClock.now
                                    for event in response.events {
                                        let number = Int(String(decoding: event.kv.key.dropFirst(), as: UTF8.self)) ?? -1
                                        if let start = starts.withLockedValue({ $0[number] }) {
                                            latencies.withLockedValue { $0.append((now - start).milliseconds) }
                                        }
                                        seen += 1
                                    }
                                    if seen >= total { return }
                                }
                            }
                        }
                    }
                    while ready.withLockedValue({ $0 }) < watcherCount { try await Task.sleep(for: .milliseconds(20)) }
                    // Puts from --clients callers; each records its start before it is sent.
                    let next = NIOLockedValueBox(0)
                    for caller in 0..<load.clients {
                        group.addTask {
                            let kv = Etcdserverpb_KV.Client(wrapping: clients[caller % clients.count])
                            while true {
                                let number = next.withLockedValue { value -> Int in
                                    defer { value += 1 }
                                    return value
                                }
                                guard number < total else { return }
                                var put = Etcdserverpb_PutRequest()
                                put.key = load.key(number, prefix: "w")
                                put.value = load.value
                                starts.withLockedValue { $0[number] = ContinuousClock.now }
                                try await EtcdLoadOptions.retryingDroppedConnection(retries) { _ = try await kv.put(put) }
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            let result = LoadResult(name: "watch(\(watcherCount) watchers)", seconds: (ContinuousClock.now - started).milliseconds / 1000,
                                    latenciesMs: latencies.withLockedValue { $0 }, retries: retries.withLockedValue { $0 })
            print(result.line.replacingOccurrences(of: "requests", with: "events"))
        }
    }
}
