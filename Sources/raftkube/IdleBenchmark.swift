import ArgumentParser
import EtcdAPI
import Foundation
import GRPCCore
import NIOConcurrencyHelpers

extension Bench {
    /// Idle load for memory measurements: `--watchers` watches (spread over `--conns`
    /// connections, one watch stream each, every watch on its own key) and `--leases` leases
    /// granted, then held for `--hold` seconds while whoever runs it reads the members' RSS
    /// (cluster/bench-idle does, for raftkube and etcd side by side). Prints when everything is
    /// in place, so a script knows when to measure.
    struct Idle: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Opens --watchers idle watches and grants --leases leases, then holds them for --hold seconds.")
        @OptionGroup var load: EtcdLoadOptions

        @Option(help: "Watches in all, each on its own key.")
        var watchers: Int = 10_000

        @Option(help: "Leases to grant (TTL one hour).")
        var leases: Int = 10_000

        @Option(help: "Seconds to hold everything open after it is in place.")
        var hold: Int = 10

        func run() async throws {
            guard watchers >= 0, leases >= 0, hold >= 0 else { throw ValidationError("--watchers, --leases and --hold must not be negative") }
            let load = self.load
            let (watcherCount, leaseCount, holdSeconds) = (watchers, leases, hold)
            let created = NIOLockedValueBox(0)
            let started = ContinuousClock.now
            // Leases through the lean unary client: grpc-swift's client stalled against etcd 3.4
            // after about 200 sequential unary calls on one connection (it opened a second
            // connection and sent nothing on it), so the script waited forever.
            try await load.withWireClients { unaryClients in
                try await load.withClients { clients in
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        // One watch stream per connection, carrying its share of the watches.
                        for (index, client) in clients.enumerated() {
                            let share = watcherCount / clients.count + (index < watcherCount % clients.count ? 1 : 0)
                            guard share > 0 else { continue }
                            group.addTask {
                                try await Etcdserverpb_Watch.Client(wrapping: client).watch { writer in
                                    for number in 0..<share {
                                        var create = Etcdserverpb_WatchRequest()
                                        create.createRequest = .with { $0.key = load.key(index * 1_000_000 + number, prefix: "idle") }
                                        try await writer.write(create)
                                    }
                                    try await Task.sleep(for: .seconds(holdSeconds + 3_600))
                                } onResponse: { responses in
                                    for try await response in responses.messages {
                                        if response.canceled { throw ValidationError("watch refused: \(response.cancelReason)") }
                                        if response.created { created.withLockedValue { $0 += 1 } }
                                    }
                                }
                            }
                        }
                        // Leases from --clients callers.
                        let next = NIOLockedValueBox(0)
                        for caller in 0..<load.clients {
                            group.addTask {
                                let client = unaryClients[caller % unaryClients.count]
                                while next.withLockedValue({ value -> Bool in defer { value += 1 }; return value < leaseCount }) {
                                    let _: Etcdserverpb_LeaseGrantResponse = try await client.unary(
                                        "/etcdserverpb.Lease/LeaseGrant", Etcdserverpb_LeaseGrantRequest.with { $0.ttl = 3_600 })
                                }
                            }
                        }
                        while created.withLockedValue({ $0 }) < watcherCount || next.withLockedValue({ $0 }) < leaseCount + load.clients {
                            try await Task.sleep(for: .milliseconds(50))
                        }
                        let seconds = Double((ContinuousClock.now - started).components.seconds)
                        // Unbuffered: the script waiting for this line reads a file.
                        FileHandle.standardOutput.write(Data("idle: \(watcherCount) watchers and \(leaseCount) leases in place after ~\(Int(seconds)) s; holding \(holdSeconds) s\n".utf8))
                        try await Task.sleep(for: .seconds(holdSeconds))
                        group.cancelAll()
                    }
                }
            }
        }
    }
}
