import ClusterPKI
import Crypto
import Foundation
import KVStore
import Logging
import ServiceLifecycle
import Store

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
    public static func create(_ token: BootstrapToken, ttl: Double, description: String, controlPlane: Bool, store: some KeyValueStore) async throws {
        let (key, value) = try entry(token, ttl: ttl, description: description, controlPlane: controlPlane)
        _ = try await store.put(PutRequest(key: key, value: value))
    }

    /// Deletes every token that expired more than `graceSeconds` before `now`; returns their
    /// IDs. The grace lets a joiner that just missed the expiry hear "expired" rather than
    /// "not valid", and an operator see it in `token list`; the record holds only a digest.
    @discardableResult
    public static func purgeExpired(store: some KeyValueStore, now: Date = Date(), graceSeconds: Double = 10) async throws -> [String] {
        let expired = try await list(store: store).filter { now.timeIntervalSince1970 >= $0.record.expires + graceSeconds }.map(\.id)
        for id in expired { try await delete(id: id, store: store) }
        return expired
    }

    public static func delete(id: String, store: some KeyValueStore) async throws {
        _ = try await store.deleteRange(DeleteRangeRequest(key: Array((prefix + id).utf8)))
    }

    /// Every stored token, by ID (linearizable read).
    public static func list(store: some KeyValueStore) async throws -> [(id: String, record: Record)] {
        let end = Array(prefix.utf8.dropLast()) + [UInt8(ascii: "/") + 1]
        let response = try await store.range(RangeRequest(key: Array(prefix.utf8), rangeEnd: end))
        return response.kvs.compactMap { kv in
            guard let record = try? JSONDecoder().decode(Record.self, from: Data(kv.value)) else { return nil }
            return (String(decoding: kv.key.dropFirst(prefix.utf8.count), as: UTF8.self), record)
        }
    }

    /// The stored record of `text` when it is a stored, unexpired token; else what is wrong, in
    /// words for the joiner. An unknown ID and a wrong secret get the same words, and the secret
    /// is compared in constant time, so that neither reveals which IDs exist; only the holder
    /// of the right secret learns that its token expired.
    public static func check(_ text: String, store: some KeyValueStore, now: Date = Date()) async throws -> Result<Record, TokenRefusal> {
        let token: BootstrapToken
        do {
            token = try BootstrapToken(parsing: text)
        } catch {
            return .failure(TokenRefusal("\(error)"))
        }
        let record = try await list(store: store).first(where: { $0.id == token.id })?.record
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
    let store: any KeyValueStore
    let isLeader: @Sendable () -> Bool
    let intervalSeconds: Double
    let logger: Logger

    public init(store: any KeyValueStore, isLeader: @escaping @Sendable () -> Bool, intervalSeconds: Double = 10, logger: Logger) {
        self.store = store
        self.isLeader = isLeader
        self.intervalSeconds = intervalSeconds
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: .milliseconds(Int64(intervalSeconds * 1000)))
            guard isLeader() else { continue }
            do {
                let purged = try await BootstrapTokens.purgeExpired(store: store)
                if !purged.isEmpty { logger.info("deleted expired bootstrap tokens", metadata: ["tokens": "\(purged.joined(separator: ","))"]) }
            } catch {
                logger.debug("cannot purge expired tokens now", metadata: ["error": "\(error)"])
            }
        }
    }
}
