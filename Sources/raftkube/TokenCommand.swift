import ArgumentParser
import ClusterPKI
import Crypto
import EtcdAPI
import EtcdServer
import Node
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RaftRuntime
import X509

/// `raftkube token create|list|delete`: bootstrap tokens, kept in the store. Runs on a
/// control-plane node: it signs itself a short-lived administrator certificate with the cluster
/// CA in the data directory and talks to the local store over mutual TLS.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Create, list or delete bootstrap tokens (on a control-plane node).",
        subcommands: [Create.self, List.self, Delete.self])

    struct Location: ParsableArguments {
        @Option(help: "The node's data directory.")
        var dataDir: String = "/var/lib/raftkube"
    }

    /// Runs `body` with a KV client of the local store.
    static func withStore<Result: Sendable>(_ dataDir: String, _ body: @Sendable (NodeConfig, Etcdserverpb_KV.Client<HTTP2ClientTransport.Posix>) async throws -> Result) async throws -> Result {
        guard let config = try NodeConfig.load(dataDir) else { throw ValidationError("\(dataDir) holds no node: run this on a control-plane node (see --data-dir)") }
        let paths = NodePaths(dataDir: dataDir)
        guard !config.worker, FileManager.default.fileExists(atPath: paths.caKey) else {
            throw ValidationError("\(config.nodeName) is a worker: tokens are managed on control-plane nodes")
        }
        let ca = CertificateAuthority(certificate: try PEMFiles.certificates(paths.caCertificate)[0], privateKey: try PEMFiles.privateKey(paths.caKey))
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let certificate = try ca.issue(profile: .client(organization: CertificateAuthority.adminOrganization), commonName: "raftkube-token", publicKey: key.publicKey, days: 1)
        let identity = TLSIdentity(trust: ClusterTrust(ca: ca.certificate), certificateChain: [certificate], privateKey: key)
        let security = try APISecurity(identity: identity, clientCertificateRequired: true).clientSecurity(logger: Logger(label: "raftkube.token"))
        let target = StoreMember.target(PeerAddress(host: config.advertiseAddress, port: config.clientPort))
        return try await withGRPCClient(transport: try .http2NIOPosix(target: target, transportSecurity: security)) { client in
            try await body(config, Etcdserverpb_KV.Client(wrapping: client))
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a bootstrap token and print the join command that uses it.")
        @OptionGroup var location: Location
        @Option(help: "Lifetime, e.g. 24h, 30m, 10s (default 24h for a worker token, 2h for a control-plane token).")
        var ttl: String?
        @Option(help: "What the token is for.")
        var description: String = ""
        @Flag(help: "A token that admits control-plane nodes (store members, which receive the CA key); without it the token admits workers only.")
        var controlPlane = false

        func run() async throws {
            let seconds: Double
            if let ttl {
                guard let duration = StoreNode.duration(ttl), duration > .zero else { throw ValidationError("--ttl: '\(ttl)' is not a duration like 24h or 30m") }
                seconds = Double(duration.components.seconds)
            } else {
                seconds = controlPlane ? BootstrapTokens.controlPlaneTTLSeconds : BootstrapTokens.workerTTLSeconds
            }
            let token = BootstrapToken()
            let (key, value) = try BootstrapTokens.entry(token, ttl: seconds, description: description, controlPlane: controlPlane)
            let config = try await TokenCommand.withStore(location.dataDir) { config, kv in
                var put = Etcdserverpb_PutRequest()
                put.key = Data(key)
                put.value = Data(value)
                _ = try await kv.put(put)
                return config
            }
            print(token)
            print("raftkube join \(config.advertiseAddress):\(config.joinPort) --token \(token) --ca-cert-hash \(config.caHash)\(controlPlane ? " --control-plane" : "")")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List bootstrap tokens (IDs and expiry; secrets are not stored).")
        @OptionGroup var location: Location

        func run() async throws {
            let rows = try await TokenCommand.withStore(location.dataDir) { _, kv in
                var range = Etcdserverpb_RangeRequest()
                range.key = Data(BootstrapTokens.prefix.utf8)
                range.rangeEnd = Data(BootstrapTokens.prefix.utf8.dropLast() + [UInt8(ascii: "/") + 1])
                return try await kv.range(range).kvs.map { ($0.key, $0.value) }
            }
            print("ID      ADMITS         EXPIRES                        DESCRIPTION")
            for (key, value) in rows {
                guard let record = try? JSONDecoder().decode(BootstrapTokens.Record.self, from: value) else { continue }
                let id = String(decoding: key.dropFirst(BootstrapTokens.prefix.utf8.count), as: UTF8.self)
                let expires = Date(timeIntervalSince1970: record.expires)
                let admits = record.admitsControlPlane ? "control-plane" : "workers      "
                print("\(id)  \(admits)  \(expires)\(expires < Date() ? " (expired)" : "")  \(record.description)")
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a bootstrap token by its ID (the part before the dot).")
        @OptionGroup var location: Location
        @Argument(help: "Token ID, or the whole token.")
        var id: String

        func run() async throws {
            let tokenID = String(id.split(separator: ".").first ?? "")
            guard tokenID.count == 6 else { throw ValidationError("'\(id)' is not a token ID ([a-z0-9]{6}) or token") }
            let deleted = try await TokenCommand.withStore(location.dataDir) { _, kv in
                var delete = Etcdserverpb_DeleteRangeRequest()
                delete.key = Data((BootstrapTokens.prefix + tokenID).utf8)
                return try await kv.deleteRange(delete).deleted
            }
            guard deleted > 0 else {
                print("no token \(tokenID)")
                throw ExitCode(1)
            }
            print("deleted token \(tokenID)")
        }
    }
}
