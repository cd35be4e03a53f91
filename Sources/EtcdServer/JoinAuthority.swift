import ClusterPKI
import Foundation
import Logging
import NIOConcurrencyHelpers
import Store
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

/// Answers join requests on a control-plane node: checks the token (failed attempts limited per
/// source address), signs the joiner's node certificate, and for a control-plane join with a
/// control-plane token adds the joiner to the store as a learner and hands it the CA key.
public struct JoinAuthority: Sendable {
    public let store: any KeyValueStore
    /// Mixed into member IDs (the store's `--initial-cluster-token`), handed to joiners.
    public let clusterToken: String
    public let authority: CertificateAuthority
    public let clusterName: String
    public let clientPort: Int
    public let peerPort: Int
    public let logger: Logger
    let failures: NIOLockedValueBox<FailedAttemptLimiter>

    public init(store: any KeyValueStore, clusterToken: String, authority: CertificateAuthority, clusterName: String, clientPort: Int, peerPort: Int,
                logger: Logger, limiter: FailedAttemptLimiter = FailedAttemptLimiter()) {
        self.store = store
        self.clusterToken = clusterToken
        self.authority = authority
        self.clusterName = clusterName
        self.clientPort = clientPort
        self.peerPort = peerPort
        self.logger = logger
        self.failures = NIOLockedValueBox(limiter)
    }

    /// The common name of a node's (kubelet's) certificate, as Kubernetes names node identities.
    public static func nodeCommonName(_ nodeName: String) -> String { "system:node:\(nodeName)" }

    /// Adds a learner at `peerURL`; returns the members after. One membership change at a time:
    /// a join that meets another node's (on this or another control-plane node) waits for it
    /// to commit, for up to 30 s.
    static func addLearner(peerURL: String, store: any KeyValueStore) async throws -> [ClusterMember] {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            do {
                return try await store.addMember(peerURLs: [peerURL], learner: true).members
            } catch {
                guard error == .membershipChangeInProgress, ContinuousClock.now < deadline else { throw error }
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    public func handle(_ request: JoinRequest, source: String) async -> JoinResponse {
        let now = Date().timeIntervalSince1970
        if let wait = failures.withLockedValue({ $0.retryAfter(source: source, now: now) }) {
            logger.warning("join refused", metadata: ["node": "\(request.nodeName)", "source": "\(source)", "reason": "too many failed attempts"])
            return JoinResponse(error: "too many failed join attempts from \(source): try again in \(Int(wait.rounded(.up))) s")
        }
        do {
            let record: BootstrapTokens.Record
            switch try await BootstrapTokens.check(request.token, store: store) {
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
                let existing = try await store.members(linearizable: true)
                if existing.contains(where: { $0.name == request.nodeName }) {
                    return JoinResponse(error: "a member named \(request.nodeName) is already in the cluster: pick another --node-name, or remove it first")
                }
                // One membership change at a time: a join that meets another node's (on this or
                // another control-plane node) waits for it to commit.
                let members = try await Self.addLearner(peerURL: peerURL, store: store)
                initialCluster = members.map { entry in
                    // A member that has not published its name yet still needs one in the list.
                    let name = entry.peerURLs.contains(peerURL) ? request.nodeName : entry.name.isEmpty ? "member-\(String(entry.id, radix: 16))" : entry.name
                    return "\(name)=\(entry.peerURLs.first ?? "")"
                }.joined(separator: ",")
            }
            logger.info("node joined", metadata: ["node": "\(request.nodeName)", "address": "\(request.advertiseAddress)", "controlPlane": "\(request.controlPlane)"])
            return JoinResponse(
                certificate: try certificate.serializeAsPEM().pemString,
                caCertificate: try authority.certificate.serializeAsPEM().pemString,
                caKey: request.controlPlane ? try authority.privateKey?.serializeAsPEM().pemString : nil,
                clusterName: clusterName, clusterToken: clusterToken, initialCluster: initialCluster)
        } catch {
            logger.warning("join failed", metadata: ["node": "\(request.nodeName)", "error": "\(error)"])
            return JoinResponse(error: "the cluster could not add this node: \(error)")
        }
    }
}
