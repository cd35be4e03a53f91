import Glibc
import Logging
import NIOConcurrencyHelpers
import NIOSSL
import X509

/// Where a listener or a dialer takes the certificate and key for a new connection.
public protocol IdentityProvider: Sendable {
    /// The identity to present now, and a number that changes whenever the identity does.
    func currentIdentity() -> (identity: TLSIdentity, generation: Int)
}

extension TLSIdentity: IdentityProvider {
    /// A fixed identity: always itself.
    public func currentIdentity() -> (identity: TLSIdentity, generation: Int) { (self, 0) }
}

/// A TLS identity read from its PEM files, and read again when they change: a certificate
/// renewed while the node runs (by its own renewal timer or by `raftkube certs renew`) is
/// presented on the next connection, without a restart, as etcd reads its certificate files
/// again for new handshakes. Connections already open keep the certificate they started with
/// (it is still valid: renewal happens with 30 days left).
///
/// A change is seen by the files' inode, size and modification time (renewal writes by rename,
/// so a reader sees the old file or the new one), looked at no more than once per
/// `recheckInterval`: callers ask for every connection and every request a follower forwards,
/// and need not pay two `stat`s each time. Files that do not load (a key that does not
/// match, a certificate being replaced in two steps) leave the identity as it was, with a
/// warning, until they change again.
public final class IdentityFiles: IdentityProvider {
    public let certificatePath: String
    public let keyPath: String
    public let trustedCAPath: String
    private let revocation: (@Sendable (Certificate) -> String?)?
    private let recheckInterval: Duration
    private let logger: Logger

    private struct Stamp: Equatable {
        var inode: UInt64
        var size: Int64
        var seconds: Int
        var nanoseconds: Int
    }

    private struct State {
        var identity: TLSIdentity
        var generation: Int
        var stamps: [Stamp?]
        /// When the files were last looked at.
        var checkedAt: ContinuousClock.Instant
        /// The stamps of files that did not load, so they are not parsed again for every connection.
        var refused: [Stamp?]?
    }

    private let state: NIOLockedValueBox<State>

    /// Loads the identity; throws when the files do not make one (as ``TLSIdentity/load(certificate:key:trustedCA:)``).
    public init(certificate: String, key: String, trustedCA: String, revocation: (@Sendable (Certificate) -> String?)? = nil,
                recheckInterval: Duration = .seconds(1), logger: Logger) throws {
        certificatePath = certificate
        keyPath = key
        trustedCAPath = trustedCA
        self.revocation = revocation
        self.recheckInterval = recheckInterval
        self.logger = logger
        let stamps = Self.stamps(certificate, key)
        let identity = try Self.load(certificate: certificate, key: key, trustedCA: trustedCA, revocation: revocation)
        state = NIOLockedValueBox(State(identity: identity, generation: 0, stamps: stamps, checkedAt: .now))
    }

    public func currentIdentity() -> (identity: TLSIdentity, generation: Int) {
        let now = ContinuousClock.now
        let recent = state.withLockedValue { state in now - state.checkedAt < recheckInterval ? (state.identity, state.generation) : nil }
        if let recent { return recent }
        let stamps = Self.stamps(certificatePath, keyPath)
        return state.withLockedValue { state in
            state.checkedAt = now
            guard stamps != state.stamps, stamps != state.refused else { return (state.identity, state.generation) }
            do {
                state.identity = try Self.load(certificate: certificatePath, key: keyPath, trustedCA: trustedCAPath, revocation: revocation)
                state.generation += 1
                state.stamps = stamps
                state.refused = nil
                logger.info("loaded a changed certificate for new connections", metadata: [
                    "certificate": "\(certificatePath)", "serial": "\(state.identity.certificateChain[0].serialNumber)",
                    "expires": "\(state.identity.certificateChain[0].notValidAfter)",
                ])
            } catch {
                state.refused = stamps
                logger.warning("a changed certificate or key does not load; new connections keep the one loaded before", metadata: [
                    "certificate": "\(certificatePath)", "reason": "\(error)",
                ])
            }
            return (state.identity, state.generation)
        }
    }

    private static func load(certificate: String, key: String, trustedCA: String, revocation: (@Sendable (Certificate) -> String?)?) throws -> TLSIdentity {
        let identity = try TLSIdentity.load(certificate: certificate, key: key, trustedCA: trustedCA)
        return revocation.map { identity.revoking($0) } ?? identity
    }

    private static func stamps(_ paths: String...) -> [Stamp?] {
        paths.map { path in
            var status = stat()
            guard stat(path, &status) == 0 else { return nil }
            return Stamp(inode: UInt64(status.st_ino), size: Int64(status.st_size), seconds: status.st_mtim.tv_sec, nanoseconds: status.st_mtim.tv_nsec)
        }
    }
}

/// The NIOSSL context for a provider's current identity, made again only when the identity
/// changes: a listener or dialer asks for it once per connection.
public final class TLSContextCache: Sendable {
    private let provider: any IdentityProvider
    private let make: @Sendable (TLSIdentity) throws -> NIOSSLContext
    private let cached: NIOLockedValueBox<(generation: Int, context: NIOSSLContext, identity: TLSIdentity)>

    /// Makes the first context at once, so that a bad configuration fails at start.
    public init(_ provider: any IdentityProvider, make: @escaping @Sendable (TLSIdentity) throws -> NIOSSLContext) throws {
        self.provider = provider
        self.make = make
        let (identity, generation) = provider.currentIdentity()
        cached = NIOLockedValueBox((generation, try make(identity), identity))
    }

    /// The context for the current identity, and that identity (whose trust checks the other side).
    public func current() throws -> (context: NIOSSLContext, identity: TLSIdentity) {
        let (identity, generation) = provider.currentIdentity()
        return try cached.withLockedValue { cached in
            if cached.generation != generation {
                cached = (generation, try make(identity), identity)
            }
            return (cached.context, cached.identity)
        }
    }
}
