import ArgumentParser
import ClusterPKI
import EtcdAPI
import EtcdServer
import Node
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RaftRuntime
import X509

/// Administrator access to the store: the admin config `init` wrote (kubeconfig format), or a
/// node's own certificate when run on a node.
struct AdminAccess: ParsableArguments {
    @Option(help: "The administrator's config written by init (DATA/admin.conf; default $RAFTKUBE_ADMIN_CONFIG, else /var/lib/raftkube/admin.conf).")
    var adminConfig: String?

    @Option(help: "A node's data directory (uses the node's certificate) instead of --admin-config.")
    var dataDir: String?

    @Option(help: "Store endpoint, https://ADDRESS:PORT (default: the admin config's server address, port 2379).")
    var endpoint: String?

    /// The parsed options as a plain value.
    var target: AdminTarget { AdminTarget(adminConfig: adminConfig, dataDir: dataDir, endpoint: endpoint) }

    func withClient<Result: Sendable>(_ address: PeerAddress? = nil, _ body: @Sendable (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Result) async throws -> Result {
        try await target.withClient(address, body)
    }
}

/// Where and as whom to reach the store (an `AdminAccess` after parsing, or made directly).
/// Without `--endpoint`, every member the target knows of is tried in turn (as etcdctl does with
/// several `--endpoints`): the admin config's server or the node's own address first, then the
/// members of the last member list seen, then (on a node) its initial cluster; so status still
/// answers when the node named in the config is down.
struct AdminTarget: Sendable {
    var adminConfig: String?
    var dataDir: String?
    var endpoint: String?

    /// The TLS identity and the endpoints to try, in order.
    func resolve() throws -> (identity: TLSIdentity, endpoints: [PeerAddress]) {
        let explicit = try address(endpoint)
        if let dataDir {
            let config = try NodeConfig.require(dataDir)
            let paths = NodePaths(dataDir: dataDir)
            guard !config.worker, FileManager.default.fileExists(atPath: paths.storeClientCertificate) else {
                throw ValidationError("\(config.nodeName) is a worker: it holds no identity the store accepts; use the admin config (--admin-config)")
            }
            let identity = try TLSIdentity.load(certificate: paths.storeClientCertificate, key: paths.storeClientKey, trustedCA: paths.caCertificate)
            if let explicit { return (identity, [explicit]) }
            let initial = config.initialCluster.split(separator: ",").compactMap { item -> PeerAddress? in
                guard let url = item.split(separator: "=", maxSplits: 1).last, let peer = StoreMember.address(ofURL: String(url)) else { return nil }
                return PeerAddress(host: peer.host, port: config.clientPort)
            }
            let own = PeerAddress(host: config.advertiseAddress, port: config.clientPort)
            return (identity, Self.unique([own] + KnownEndpoints.load(identity) + initial))
        }
        let path = adminConfig ?? ProcessInfo.processInfo.environment["RAFTKUBE_ADMIN_CONFIG"] ?? "/var/lib/raftkube/admin.conf"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ValidationError("cannot read the admin config \(path) (init writes it in its data directory; see --admin-config)")
        }
        func field(_ name: String) throws -> String {
            guard let line = text.split(separator: "\n").first(where: { $0.trimmingCharacters(in: .whitespaces).hasPrefix(name + ":") }),
                  let value = line.split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces)
            else { throw ValidationError("\(path) has no \(name)") }
            return value
        }
        func decoded(_ name: String) throws -> String {
            guard let data = Data(base64Encoded: try field(name)) else { throw ValidationError("\(path): \(name) is not base64") }
            return String(decoding: data, as: UTF8.self)
        }
        let ca = try Certificate(pemEncoded: try decoded("certificate-authority-data"))
        let certificate = try Certificate(pemEncoded: try decoded("client-certificate-data"))
        let key = try Certificate.PrivateKey(pemEncoded: try decoded("client-key-data"))
        let server = try field("server")
        let host = StoreMember.address(ofURL: server)?.host ?? "127.0.0.1"
        let identity = TLSIdentity(trust: ClusterTrust(ca: ca), certificateChain: [certificate], privateKey: key)
        if let explicit { return (identity, [explicit]) }
        return (identity, Self.unique([PeerAddress(host: host, port: 2379)] + KnownEndpoints.load(identity)))
    }

    static func unique(_ addresses: [PeerAddress]) -> [PeerAddress] {
        var seen = Set<String>()
        return addresses.filter { seen.insert("\($0.host):\($0.port)").inserted }
    }

    func address(_ url: String?) throws -> PeerAddress? {
        guard let url else { return nil }
        guard let address = StoreMember.address(ofURL: url) else { throw ValidationError("--endpoint '\(url)' is not https://ADDRESS:PORT") }
        return address
    }

    /// The store's member list (remembered, so that later commands can reach other members).
    func members() async throws -> [Etcdserverpb_Member] {
        let members = try await withClient { client in
            try await Etcdserverpb_Cluster.Client(wrapping: client).memberList(Etcdserverpb_MemberListRequest()).members
        }
        if let identity = try? resolve().identity {
            KnownEndpoints.save(members.flatMap(\.clientUrls).compactMap { StoreMember.address(ofURL: $0) }, for: identity)
        }
        return members
    }

    /// Runs `body` with a client of `target`, or of the first of the resolved endpoints that
    /// can be reached (an unreachable one fails with UNAVAILABLE and the next is tried).
    func withClient<Result: Sendable>(_ target: PeerAddress? = nil, _ body: @Sendable (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Result) async throws -> Result {
        let (identity, endpoints) = try resolve()
        let security = try APISecurity(identity: identity, clientCertificateRequired: true).clientSecurity(logger: Logger(label: "raftkube.cluster"))
        var unreachable: [String] = []
        for endpoint in target.map({ [$0] }) ?? endpoints {
            do {
                return try await withGRPCClient(transport: try .http2NIOPosix(target: StoreMember.target(endpoint), transportSecurity: security)) { client in
                    try await body(client)
                }
            } catch let error as RPCError where error.code == .unavailable && target == nil && !error.message.hasPrefix("etcdserver:") {
                // Not reached (no connection); a member's own answer, such as "etcdserver: no
                // leader", is the answer and is not retried elsewhere.
                unreachable.append("\(endpoint.host):\(endpoint.port) (\(error.message))")
            }
        }
        throw ValidationError("no member of the store could be reached: \(unreachable.joined(separator: "; "))")
    }
}

/// The client endpoints of the last member list a command saw, kept per cluster (by its CA) in
/// `~/.cache/raftkube`, so that a command still finds a member when the one it knows is down.
enum KnownEndpoints {
    static func path(for identity: TLSIdentity) -> String {
        let home = ProcessInfo.processInfo.environment["HOME"] ?? "/root"
        return "\(home)/.cache/raftkube/store-endpoints-\(CertificateAuthority.hash(of: identity.trust.ca).dropFirst("sha256:".count).prefix(16))"
    }

    static func load(_ identity: TLSIdentity) -> [PeerAddress] {
        guard let text = try? String(contentsOfFile: path(for: identity), encoding: .utf8) else { return [] }
        return text.split(separator: "\n").prefix(64).compactMap { StoreMember.address(ofURL: String($0)) }
    }

    /// Best effort: a command works without the cache, so a failure to write it is ignored.
    static func save(_ endpoints: [PeerAddress], for identity: TLSIdentity) {
        guard !endpoints.isEmpty else { return }
        try? DurableFile.write(endpoints.map { "https://\($0.host):\($0.port)" }.joined(separator: "\n") + "\n", to: path(for: identity), secret: false)
    }
}

/// Columns padded to `widths` (the last one unpadded).
func row(_ cells: [String], widths: [Int]) -> String {
    cells.enumerated().map { index, cell in
        index < widths.count ? cell.padding(toLength: max(widths[index], cell.count), withPad: " ", startingAt: 0) : cell
    }.joined(separator: " ")
}

struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Show the cluster's members and their Raft state; promote learners; remove members.",
        subcommands: [Members.self, Status.self, Promote.self, Remove.self])

    /// The member named `name` (a node name, or a hex ID as `members` prints it).
    static func member(_ name: String, access: AdminAccess) async throws -> Etcdserverpb_Member {
        let members = try await access.target.members()
        guard let member = members.first(where: { $0.name == name || String($0.id, radix: 16) == name.lowercased() }) else {
            throw ValidationError("no member named '\(name)' (raftkube cluster members lists them: \(members.map { $0.name.isEmpty ? String($0.id, radix: 16) : $0.name }.sorted().joined(separator: ", ")))")
        }
        return member
    }

    /// Runs a membership request, with the store's refusal as the command's error.
    static func change<Result: Sendable>(_ access: AdminAccess, _ body: @Sendable (Etcdserverpb_Cluster.Client<HTTP2ClientTransport.Posix>) async throws -> Result) async throws -> Result {
        do {
            return try await access.withClient { client in try await body(Etcdserverpb_Cluster.Client(wrapping: client)) }
        } catch let error as RPCError {
            throw ValidationError(error.message)
        }
    }

    struct Promote: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a learner a voter (control-plane nodes past --voters-max stay learners until promoted).")
        @OptionGroup var access: AdminAccess
        @Argument(help: "The learner's node name (or hex member ID).")
        var name: String

        func run() async throws {
            let member = try await ClusterCommand.member(name, access: access)
            guard member.isLearner else { throw ValidationError("\(name) is a voter already") }
            let request = Etcdserverpb_MemberPromoteRequest.with { $0.id = member.id }
            _ = try await ClusterCommand.change(access) { try await $0.memberPromote(request) }
            say("\(name) (\(String(member.id, radix: 16))) is a voter")
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a member that cannot leave by itself (its machine is gone); on a running node use `raftkube leave`.")
        @OptionGroup var access: AdminAccess
        @Argument(help: "The member's node name (or hex member ID).")
        var name: String

        func run() async throws {
            let member = try await ClusterCommand.member(name, access: access)
            let request = Etcdserverpb_MemberRemoveRequest.with { $0.id = member.id }
            _ = try await ClusterCommand.change(access) { try await $0.memberRemove(request) }
            say("\(name) (\(String(member.id, radix: 16))) is no longer a member; stop its node (it comes back only by joining again with a new data directory)")
        }
    }

    struct Members: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the members: name, ID, role, peer and client URLs.")
        @OptionGroup var access: AdminAccess

        func run() async throws {
            let members = try await access.target.members()
            print(row(["NAME", "ID", "ROLE", "PEER", "CLIENT"], widths: [15, 17, 8, 28]))
            for member in members.sorted(by: { $0.name < $1.name }) {
                print(row([member.name.isEmpty ? "(unstarted)" : member.name, String(member.id, radix: 16), member.isLearner ? "learner" : "voter",
                           member.peerUrls.joined(separator: ","), member.clientUrls.joined(separator: ",")], widths: [15, 17, 8, 28]))
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Each member's role, term, leader, commit and applied index, and lag behind the leader.")
        @OptionGroup var access: AdminAccess

        func run() async throws {
            let members = try await access.target.members()
            var rows: [(Etcdserverpb_Member, Etcdserverpb_StatusResponse?)] = []
            for member in members {
                guard let url = member.clientUrls.first, let address = StoreMember.address(ofURL: url) else {
                    rows.append((member, nil))
                    continue
                }
                let status = try? await access.withClient(address) { client in
                    try await Etcdserverpb_Maintenance.Client(wrapping: client).status(Etcdserverpb_StatusRequest())
                }
                rows.append((member, status))
            }
            let leaderCommit = rows.compactMap { $0.1 }.first { $0.leader == $0.header.memberID }?.raftIndex
            let widths = [15, 9, 26, 6, 17, 8, 8]
            print(row(["NAME", "ROLE", "ADDRESS", "TERM", "LEADER", "COMMIT", "APPLIED", "LAG"], widths: widths))
            for (member, status) in rows.sorted(by: { $0.0.name < $1.0.name }) {
                let name = member.name.isEmpty ? "(unstarted)" : member.name
                let address = member.clientUrls.first ?? "-"
                guard let status else {
                    print(row([name, member.isLearner ? "learner" : "voter", address, "unreachable"], widths: widths))
                    continue
                }
                let role = status.leader == member.id ? "leader" : member.isLearner ? "learner" : "follower"
                let lag = leaderCommit.map { String(Int64($0) - Int64(status.raftAppliedIndex)) } ?? "?"
                print(row([name, role, address, String(status.raftTerm), String(status.leader, radix: 16), String(status.raftIndex),
                           String(status.raftAppliedIndex), lag], widths: widths))
            }
        }
    }
}

/// `raftkube leave`: hands leadership over if this node leads, removes it from the store's
/// members, stops its node process, and marks its data directory as left.
struct LeaveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "leave",
        abstract: "Take this node out of the cluster: transfer leadership if it leads, remove its member, stop it.")

    @Option(help: "The node's data directory.")
    var dataDir: String = "/var/lib/raftkube"

    func run() async throws {
        let config = try NodeConfig.require(dataDir)
        // This node's own member, and no other: its status says which member is leaving.
        let own = AdminTarget(dataDir: dataDir, endpoint: "https://\(config.advertiseAddress):\(config.clientPort)")
        if !config.worker {
            let (id, leader) = try await own.withClient { client in
                let status = try await Etcdserverpb_Maintenance.Client(wrapping: client).status(Etcdserverpb_StatusRequest())
                return (status.header.memberID, status.leader)
            }
            if id == leader {
                let target = try await own.members().first { $0.id != id && !$0.isLearner }?.id
                if let target {
                    say("[leave] \(config.nodeName) leads: handing leadership to \(String(target, radix: 16))")
                    let move = Etcdserverpb_MoveLeaderRequest.with { $0.targetID = target }
                    _ = try await own.withClient { client in try await Etcdserverpb_Maintenance.Client(wrapping: client).moveLeader(move) }
                }
            }
            say("[leave] removing member \(String(id, radix: 16)) (\(config.nodeName))")
            let remove = Etcdserverpb_MemberRemoveRequest.with { $0.id = id }
            _ = try await own.withClient { client in try await Etcdserverpb_Cluster.Client(wrapping: client).memberRemove(remove) }
        }
        if let text = try? String(contentsOfFile: "\(dataDir)/node.pid", encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0 {
            say("[leave] stopping the node (pid \(pid))")
            kill(pid, SIGTERM)
            for _ in 0..<100 where kill(pid, 0) == 0 { try await Task.sleep(for: .milliseconds(100)) }
        }
        guard rename(NodeConfig.path(dataDir), NodeConfig.leftPath(dataDir)) == 0 else {
            throw ValidationError("cannot mark \(dataDir) as left: errno \(errno)")
        }
        say("[leave] \(config.nodeName) has left \(config.clusterName); \(dataDir) keeps its files (remove them, or join again with another data directory)")
    }
}
