import ClusterPKI
import Crypto
import EtcdAPI
import Foundation
import GRPCCore
import KVStore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import Raft
import RaftRuntime
import ServiceLifecycle
import X509

/// What a joining node sends, over TLS to a control-plane node whose CA it has pinned.
public struct JoinRequest: Codable, Sendable {
    public var token: String
    public var nodeName: String
    public var advertiseAddress: String
    /// A control-plane join (a store member, given the CA key): needs a control-plane token.
    /// Otherwise the joiner is a worker and gets only its node (kubelet) certificate.
    public var controlPlane: Bool
    /// The joiner's public key (PEM); its private key never leaves it.
    public var publicKey: String

    public init(token: String, nodeName: String, advertiseAddress: String, controlPlane: Bool, publicKey: String) {
        self.token = token
        self.nodeName = nodeName
        self.advertiseAddress = advertiseAddress
        self.controlPlane = controlPlane
        self.publicKey = publicKey
    }
}

/// The answer: either `error` (nothing was changed), or the joiner's certificate and what it
/// needs to start its member.
public struct JoinResponse: Codable, Sendable {
    public var error: String?
    public var certificate: String?
    public var caCertificate: String?
    /// The CA's key, for control-plane joins only (they issue their own peer and store-client
    /// certificates, and certificates to later joiners). Never sent to a worker.
    public var caKey: String?
    public var clusterName: String?
    public var clusterToken: String?
    /// name=peerURL of every member, the joiner included (etcd's --initial-cluster).
    public var initialCluster: String?

    public init(error: String) {
        self.error = error
    }

    public init(certificate: String, caCertificate: String, caKey: String?, clusterName: String, clusterToken: String, initialCluster: String?) {
        self.certificate = certificate
        self.caCertificate = caCertificate
        self.caKey = caKey
        self.clusterName = clusterName
        self.clusterToken = clusterToken
        self.initialCluster = initialCluster
    }
}

/// Bootstrap tokens live in the replicated store, so any control-plane node can check them:
/// `/raftkube/bootstrap-tokens/<id>` holds the secret's SHA-256 and the expiry (kubeadm keeps
/// them as Secrets; the secret itself is never stored).
public enum BootstrapTokens {
    public static let prefix = "/raftkube/bootstrap-tokens/"

    public struct Record: Codable, Sendable, Hashable {
        public var secretSHA256: String
        /// Seconds since 1970.
        public var expires: Double
        public var description: String
        /// A control-plane token admits store members (and hands them the CA key); any other
        /// token admits workers only (k3s's server and agent tokens). Nil in records of old.
        public var controlPlane: Bool?

        public var admitsControlPlane: Bool { controlPlane == true }
    }

    /// Default lifetimes: a worker token a day (kubeadm's), a control-plane token two hours
    /// (kubeadm's `--certificate-key` lifetime): it hands over the CA key, so it lives short.
    public static let workerTTLSeconds: Double = 24 * 3600
    public static let controlPlaneTTLSeconds: Double = 2 * 3600

    static func digest(_ secret: String) -> String {
        SHA256.hash(data: Array(secret.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// The key and value that store `token`, valid for `ttl` seconds from now.
    public static func entry(_ token: BootstrapToken, ttl: Double, description: String, controlPlane: Bool) throws -> (key: [UInt8], value: [UInt8]) {
        let record = Record(secretSHA256: digest(token.secret), expires: Date().timeIntervalSince1970 + ttl, description: description,
                            controlPlane: controlPlane)
        return (Array((prefix + token.id).utf8), Array(try JSONEncoder().encode(record)))
    }

    /// Stores `token`, valid for `ttl` seconds from now.
    public static func create(_ token: BootstrapToken, ttl: Double, description: String, controlPlane: Bool, member: StoreMember) async throws {
        let (key, value) = try entry(token, ttl: ttl, description: description, controlPlane: controlPlane)
        _ = try await member.write(.put(PutRequest(key: key, value: value)))
    }

    /// Deletes every token that expired more than `graceSeconds` before `now`; returns their
    /// IDs. The grace lets a joiner that just missed the expiry hear "expired" rather than
    /// "not valid", and an operator see it in `token list`; the record holds only a digest.
    @discardableResult
    public static func purgeExpired(member: StoreMember, now: Date = Date(), graceSeconds: Double = 10) async throws -> [String] {
        let expired = try await list(member: member).filter { now.timeIntervalSince1970 >= $0.record.expires + graceSeconds }.map(\.id)
        for id in expired { try await delete(id: id, member: member) }
        return expired
    }

    public static func delete(id: String, member: StoreMember) async throws {
        _ = try await member.write(.deleteRange(DeleteRangeRequest(key: Array((prefix + id).utf8))))
    }

    /// Every stored token, by ID (linearizable read).
    public static func list(member: StoreMember) async throws -> [(id: String, record: Record)] {
        try await member.barrier()
        let end = Array(prefix.utf8.dropLast()) + [UInt8(ascii: "/") + 1]
        let result = try member.stateMachine.read { try $0.range(RangeRequest(key: Array(prefix.utf8), rangeEnd: end)) }
        guard case .success(let response) = result else { return [] }
        return response.kvs.compactMap { kv in
            guard let record = try? JSONDecoder().decode(Record.self, from: Data(kv.value)) else { return nil }
            return (String(decoding: kv.key.dropFirst(prefix.utf8.count), as: UTF8.self), record)
        }
    }

    /// The stored record of `text` when it is a stored, unexpired token; else what is wrong, in
    /// words for the joiner. An unknown ID and a wrong secret get the same words, and the secret
    /// is compared in constant time, so that neither reveals which IDs exist; only the holder
    /// of the right secret learns that its token expired.
    public static func check(_ text: String, member: StoreMember, now: Date = Date()) async throws -> Result<Record, TokenRefusal> {
        let token: BootstrapToken
        do {
            token = try BootstrapToken(parsing: text)
        } catch {
            return .failure(TokenRefusal("\(error)"))
        }
        let record = try await list(member: member).first(where: { $0.id == token.id })?.record
        // Compare against a digest even for an unknown ID: the same work either way.
        let stored = record?.secretSHA256 ?? String(repeating: "0", count: 64)
        guard constantTimeEqual(Array(digest(token.secret).utf8), Array(stored.utf8)), let record else {
            return .failure(TokenRefusal("token \(token.id).… is not valid for this cluster (unknown, deleted, or a wrong secret): check it, or make a new one with `raftkube token create` on a control-plane node"))
        }
        guard now.timeIntervalSince1970 < record.expires else {
            return .failure(TokenRefusal("token \(token.id).… expired at \(Date(timeIntervalSince1970: record.expires)): make a new one with `raftkube token create` on a control-plane node", guess: false))
        }
        return .success(record)
    }
}

/// Why a bootstrap token was refused, in words for the joiner.
public struct TokenRefusal: Error, Sendable, CustomStringConvertible {
    public let description: String
    /// Whether the refusal counts as a failed guess (malformed, unknown, wrong secret), as
    /// opposed to the right secret of an expired token.
    public let guess: Bool
    init(_ description: String, guess: Bool = true) {
        self.description = description
        self.guess = guess
    }
}

/// On the leader: deletes expired bootstrap tokens every `intervalSeconds` (kubeadm's token
/// cleaner), so that a token's record outlives its validity only briefly (10-20 s).
public struct TokenJanitor: Service {
    let member: StoreMember
    let intervalSeconds: Double
    let logger: Logger

    public init(member: StoreMember, intervalSeconds: Double = 10, logger: Logger) {
        self.member = member
        self.intervalSeconds = intervalSeconds
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: .milliseconds(Int64(intervalSeconds * 1000)))
            guard member.runtime.observed.withLockedValue({ $0.isLeader }) else { continue }
            do {
                let purged = try await BootstrapTokens.purgeExpired(member: member)
                if !purged.isEmpty { logger.info("deleted expired bootstrap tokens", metadata: ["tokens": "\(purged.joined(separator: ","))"]) }
            } catch {
                logger.debug("cannot purge expired tokens now", metadata: ["error": "\(error)"])
            }
        }
    }
}

/// Answers join requests on a control-plane node: checks the token (failed attempts limited per
/// source address), signs the joiner's node certificate, and for a control-plane join with a
/// control-plane token adds the joiner to the store as a learner and hands it the CA key.
public struct JoinAuthority: Sendable {
    public let member: StoreMember
    public let authority: CertificateAuthority
    public let clusterName: String
    public let clientPort: Int
    public let peerPort: Int
    public let logger: Logger
    let failures: NIOLockedValueBox<FailedAttemptLimiter>

    public init(member: StoreMember, authority: CertificateAuthority, clusterName: String, clientPort: Int, peerPort: Int, logger: Logger,
                limiter: FailedAttemptLimiter = FailedAttemptLimiter()) {
        self.member = member
        self.authority = authority
        self.clusterName = clusterName
        self.clientPort = clientPort
        self.peerPort = peerPort
        self.logger = logger
        self.failures = NIOLockedValueBox(limiter)
    }

    /// The common name of a node's (kubelet's) certificate, as Kubernetes names node identities.
    public static func nodeCommonName(_ nodeName: String) -> String { "system:node:\(nodeName)" }

    public func handle(_ request: JoinRequest, source: String) async -> JoinResponse {
        let now = Date().timeIntervalSince1970
        if let wait = failures.withLockedValue({ $0.retryAfter(source: source, now: now) }) {
            logger.warning("join refused", metadata: ["node": "\(request.nodeName)", "source": "\(source)", "reason": "too many failed attempts"])
            return JoinResponse(error: "too many failed join attempts from \(source): try again in \(Int(wait.rounded(.up))) s")
        }
        do {
            let record: BootstrapTokens.Record
            switch try await BootstrapTokens.check(request.token, member: member) {
            case .failure(let refusal):
                if refusal.guess { failures.withLockedValue { $0.recordFailure(source: source, now: now) } }
                logger.warning("join refused", metadata: ["node": "\(request.nodeName)", "source": "\(source)", "reason": "\(refusal)"])
                return JoinResponse(error: refusal.description)
            case .success(let found):
                record = found
            }
            if request.controlPlane && !record.admitsControlPlane {
                logger.warning("join refused", metadata: ["node": "\(request.nodeName)", "source": "\(source)", "reason": "worker token used for a control-plane join"])
                return JoinResponse(error: "this token admits workers only: a control-plane join needs a control-plane token (the control-plane join command `raftkube init` printed, or `raftkube token create --control-plane` on a control-plane node)")
            }
            guard !request.nodeName.isEmpty, request.nodeName.utf8.count <= 63,
                  request.nodeName.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") })
            else {
                return JoinResponse(error: "node name '\(request.nodeName)' must be 1-63 letters, digits, '-' or '.'")
            }
            guard ipAddressBytes(request.advertiseAddress) != nil else {
                return JoinResponse(error: "advertise address '\(request.advertiseAddress)' is not an IPv4 or IPv6 address")
            }
            let publicKey: Certificate.PublicKey
            do {
                publicKey = try Certificate.PublicKey(pemEncoded: request.publicKey)
            } catch {
                return JoinResponse(error: "the public key is not a PEM public key")
            }
            let certificate = try authority.issue(profile: .node, commonName: Self.nodeCommonName(request.nodeName), dnsNames: [request.nodeName, "localhost"],
                                                  ipAddresses: [request.advertiseAddress, "127.0.0.1"], publicKey: publicKey)
            var initialCluster: String?
            if request.controlPlane {
                let peerURL = "https://\(request.advertiseAddress):\(peerPort)"
                let existing = try await member.members()
                if existing.contains(where: { $0.name == request.nodeName }) {
                    return JoinResponse(error: "a member named \(request.nodeName) is already in the cluster: pick another --node-name, or remove it first")
                }
                // One membership change at a time: a join that meets another node's (on this or
                // another control-plane node) waits for it to commit.
                let deadline = ContinuousClock.now + .seconds(30)
                while true {
                    do {
                        try await member.addMember(peerURL: peerURL, learner: true)
                        break
                    } catch let error as RPCError where error.message.contains("not yet committed") && ContinuousClock.now < deadline {
                        try await Task.sleep(for: .milliseconds(200))
                    }
                }
                let members = try await member.members()
                initialCluster = members.map { entry in
                    // A member that has not published its name yet still needs one in the list.
                    let name = entry.peerUrls.contains(peerURL) ? request.nodeName : entry.name.isEmpty ? "member-\(String(entry.id, radix: 16))" : entry.name
                    return "\(name)=\(entry.peerUrls.first ?? "")"
                }.joined(separator: ",")
            }
            logger.info("node joined", metadata: ["node": "\(request.nodeName)", "address": "\(request.advertiseAddress)", "controlPlane": "\(request.controlPlane)"])
            return JoinResponse(
                certificate: try certificate.serializeAsPEM().pemString,
                caCertificate: try authority.certificate.serializeAsPEM().pemString,
                caKey: request.controlPlane ? try authority.privateKey?.serializeAsPEM().pemString : nil,
                clusterName: clusterName, clusterToken: member.clusterToken, initialCluster: initialCluster)
        } catch {
            logger.warning("join failed", metadata: ["node": "\(request.nodeName)", "error": "\(error)"])
            return JoinResponse(error: "the cluster could not add this node: \(error)")
        }
    }
}

extension StoreMember {
    /// Adds a member by peer URL through the Cluster service's MemberAdd (forwarded to the leader).
    func addMember(peerURL: String, learner: Bool) async throws {
        var request = Etcdserverpb_MemberAddRequest()
        request.peerUrls = [peerURL]
        request.isLearner = learner
        let context = ServerContext(descriptor: Etcdserverpb_Cluster.Method.MemberAdd.descriptor, remotePeer: "join", localPeer: "join",
                                    cancellation: ServerContext.RPCCancellationHandle())
        _ = try await ClusterService(member: self).memberAdd(request: request, context: context)
    }
}

/// One JSON document per line, both ways, over TLS: the join endpoint's protocol.
enum JoinWire {
    static let lineBytesMax = 256 << 10

    struct LineDecoder: ByteToMessageDecoder {
        typealias InboundOut = ByteBuffer
        mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
            guard let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
                if buffer.readableBytes > lineBytesMax { throw JoinError("request larger than \(lineBytesMax) bytes") }
                return .needMoreData
            }
            let length = newline - buffer.readerIndex
            context.fireChannelRead(wrapInboundOut(buffer.readSlice(length: length)!))
            buffer.moveReaderIndex(forwardBy: 1)
            return .continue
        }
    }
}

public struct JoinError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Serves join requests on a control-plane node (TLS with the node's certificate and the CA in
/// the chain, so that the joiner can check the CA against its pinned hash; no client
/// certificate: the token is the joiner's credential).
public struct JoinServer: Service {
    let authority: JoinAuthority
    let identity: any IdentityProvider
    let host: String
    let port: Int

    public init(authority: JoinAuthority, identity: any IdentityProvider, host: String, port: Int) {
        self.authority = authority
        self.identity = identity
        self.host = host
        self.port = port
    }

    final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let authority: JoinAuthority
        init(authority: JoinAuthority) { self.authority = authority }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let line = unwrapInboundIn(data)
            let channel = context.channel
            let authority = self.authority
            // Failed attempts are counted per address, not per connection.
            let source = context.remoteAddress?.ipAddress ?? "unknown"
            Task {
                let response: JoinResponse
                if let request = try? JSONDecoder().decode(JoinRequest.self, from: Data(line.readableBytesView)) {
                    response = await authority.handle(request, source: source)
                } else {
                    response = JoinResponse(error: "malformed join request (raftkube join sends JSON with token, nodeName, advertiseAddress, controlPlane, publicKey)")
                }
                var bytes = (try? JSONEncoder().encode(response)) ?? Data()
                bytes.append(UInt8(ascii: "\n"))
                try? await channel.writeAndFlush(ByteBuffer(bytes: bytes))
                try? await channel.close()
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }

    public func run() async throws {
        let contexts = try TLSContextCache(identity) { identity in
            var configuration = try identity.serverConfiguration()
            configuration.certificateChain = try (identity.certificateChain + [identity.trust.ca]).map {
                .certificate(try NIOSSLCertificate(bytes: Array(try $0.serializeAsPEM().pemString.utf8), format: .pem))
            }
            configuration.certificateVerification = .none
            return try NIOSSLContext(configuration: configuration)
        }
        let authority = self.authority
        let gate = try ConnectionGate(limits: .join, name: "join", logger: Logger(label: "raftkube.join"))
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: try contexts.current().context))
                    try gate.admit(channel, secured: true)
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(JoinWire.LineDecoder()))
                    try channel.pipeline.syncOperations.addHandler(Handler(authority: authority))
                }
            }
            .bind(host: host, port: port).get()
        try await withGracefulShutdownHandler {
            try await channel.closeFuture.get()
        } onGracefulShutdown: {
            channel.close(promise: nil)
        }
    }
}

/// The joiner's side: checks the server's CA against the pinned hash during the TLS handshake,
/// before anything is sent, then sends the request and reads the answer.
public enum JoinClient {
    final class ResponseHandler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let promise: EventLoopPromise<ByteBuffer>
        init(promise: EventLoopPromise<ByteBuffer>) { self.promise = promise }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { promise.succeed(unwrapInboundIn(data)) }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            promise.fail(error)
            context.close(promise: nil)
        }
        func channelInactive(context: ChannelHandlerContext) { promise.fail(JoinError("the server closed the connection without an answer")) }
    }

    public static func join(host: String, port: Int, caHash: String, request: JoinRequest) async throws -> JoinResponse {
        let pinned = NIOLockedValueBox<String?>(nil)
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .noHostnameVerification
        let context = try NIOSSLContext(configuration: configuration)
        let group = MultiThreadedEventLoopGroup.singleton
        let promise = group.next().makePromise(of: ByteBuffer.self)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let handler = try NIOSSLClientHandler(context: context, serverHostname: nil) { certificates, verification in
                            verification.succeed(Self.checkPinned(certificates, caHash: caHash, refusal: pinned))
                        }
                        try channel.pipeline.syncOperations.addHandler(handler)
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(JoinWire.LineDecoder()))
                        try channel.pipeline.syncOperations.addHandler(ResponseHandler(promise: promise))
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            throw JoinError("cannot reach \(host):\(port): \(error)")
        }
        defer { channel.close(promise: nil) }
        var bytes = try JSONEncoder().encode(request)
        bytes.append(UInt8(ascii: "\n"))
        do {
            try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
            let line = try await promise.futureResult.get()
            return try JSONDecoder().decode(JoinResponse.self, from: Data(line.readableBytesView))
        } catch {
            if let refusal = pinned.withLockedValue({ $0 }) { throw JoinError(refusal) }
            throw JoinError("the join with \(host):\(port) failed: \(error)")
        }
    }

    /// Accepts the server only if its chain ends in a CA with the pinned hash that signed the
    /// server's certificate; records why not otherwise.
    static func checkPinned(_ certificates: [NIOSSLCertificate], caHash: String, refusal: NIOLockedValueBox<String?>) -> NIOSSLVerificationResult {
        guard certificates.count >= 2,
              let chain = try? certificates.map({ try Certificate(derEncoded: try $0.toDERBytes()) }),
              let ca = chain.last, let leaf = chain.first
        else {
            refusal.withLockedValue { $0 = "the server did not present its CA certificate: it is not a raftkube control-plane node's join port; nothing was sent" }
            return .failed
        }
        let hash = CertificateAuthority.hash(of: ca)
        guard hash == caHash else {
            refusal.withLockedValue { $0 = "the server's CA has hash \(hash), not the pinned \(caHash): wrong address, another cluster, or someone in between; nothing was sent" }
            return .failed
        }
        guard ca.publicKey.isValidSignature(leaf.signature, for: leaf) else {
            refusal.withLockedValue { $0 = "the server's certificate is not signed by the pinned CA; nothing was sent" }
            return .failed
        }
        return .certificateVerified
    }
}

/// On the leader: promotes learners that have caught up while there are fewer voters than
/// `votersMax` (the first control-plane nodes become voters; later ones stay learners).
public struct AutoPromoter: Service {
    let member: StoreMember
    let votersMax: Int
    let logger: Logger

    public init(member: StoreMember, votersMax: Int, logger: Logger) {
        self.member = member
        self.votersMax = votersMax
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: .seconds(1))
            guard member.runtime.observed.withLockedValue({ $0.isLeader }), let status = try? await member.runtime.status() else { continue }
            guard status.membership.voters.count < votersMax else { continue }
            for learner in status.membership.learners.sorted() {
                // Only a learner that is running and has caught up: promoting one that never
                // started would count a dead voter toward the quorum.
                guard let replication = status.replication[learner], replication.recentlyActive, replication.match > 0,
                      replication.match + 100 >= status.commitIndex
                else { continue }
                do {
                    try await member.runtime.promote(learner)
                    logger.info("promoted a learner to voter", metadata: ["member": "\(String(learner, radix: 16))"])
                } catch {
                    logger.debug("cannot promote yet", metadata: ["member": "\(String(learner, radix: 16))", "error": "\(error)"])
                }
                break
            }
        }
    }
}
