import APIServer
import ClusterPKI
import Foundation
import Hummingbird
import HummingbirdCore
import HTTPTypes
import HummingbirdHTTP2
import Logging
import NIOCore
import NIOSSL
import Resources
import ServiceLifecycle
import X509

/// The API server's HTTPS listener: Hummingbird 2 with TLS (1.2+, ALPN `h2` and `http/1.1`: kubectl
/// speaks HTTP/2, Python's client HTTP/1.1) around ``APIHandler``. Clients may present a
/// certificate of the cluster CA (the user is its CN, the groups its Os); one from another CA
/// is refused in the handshake; a client without one is anonymous (401 but for /version and
/// health). Bodies are read up to ``APIHandler/bodyBytesMax`` (413 past it), connections
/// capped at ``connectionsMax``.
public struct APIHTTPServer: Service {
    public struct Configuration: Sendable {
        public var host: String
        /// 0: the kernel picks one (``onListening`` reports it).
        public var port: Int
        /// The serving certificate and key, and the CA whose client certificates are accepted.
        public var identity: TLSIdentity
        public var connectionsMax = 2_000
        /// A watch without `timeoutSeconds` ends after a random time between this and twice it
        /// (kube-apiserver's `--min-request-timeout`, 1,800 s), so its clients spread their relists.
        public var watchTimeout: Duration = .seconds(1_800)

        public init(host: String, port: Int, identity: TLSIdentity) {
            self.host = host
            self.port = port
            self.identity = identity
        }
    }

    let application: Application<APIResponder>

    /// `onListening` gets the bound port once the server listens.
    public init(_ configuration: Configuration, handler: APIHandler, logger: Logger, onListening: @escaping @Sendable (Int) async -> Void = { _ in }) throws {
        let identity = configuration.identity
        var tls = try identity.serverConfiguration()
        // Kubernetes' clients (Go's crypto/tls, Python's ssl) speak TLS 1.2 and 1.3.
        tls.minimumTLSVersion = .tlsv12
        // A certificate is optional (bearer tokens come later); one that is presented must be the cluster's.
        tls.certificateVerification = .optionalVerification
        let trust = identity.trust
        let verify: TLSChannelConfiguration.CustomVerificationCallback = { certificates, promise in
            guard let chain = try? certificates.map({ try Certificate(derEncoded: $0.toDERBytes()) }) else {
                logger.warning("refused an API client", metadata: ["reason": "unparsable certificate"])
                return promise.succeed(.failed)
            }
            promise.completeWithTask {
                if let reason = await trust.refusal(of: chain) {
                    logger.warning("refused an API client", metadata: ["reason": "\(reason)"])
                    return .failed
                }
                return .certificateVerified
            }
        }
        let responder = APIResponder(handler: handler, watchTimeout: configuration.watchTimeout, logger: logger)
        application = Application(
            responder: responder,
            server: try .http2Upgrade(tlsChannelConfiguration: TLSChannelConfiguration(tlsConfiguration: tls, customVerificationCallback: verify)),
            configuration: ApplicationConfiguration(address: .hostname(configuration.host, port: configuration.port), serverName: nil,
                                                    availableConnectionsDelegate: MaximumAvailableConnections(configuration.connectionsMax, logger: logger)),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? 0) },
            logger: logger)
    }

    public func run() async throws {
        try await application.run()
    }
}

/// A request's context: the channel it came on (for the client's certificate).
public struct APIRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = CoreRequestContextStorage(source: source)
        channel = source.channel
    }

    public var maxUploadSize: Int { APIHandler.bodyBytesMax }
}

/// HTTP in and out of ``APIHandler``: the user from the connection's certificate, the body read
/// within its limit, the answer as JSON, a watch as JSON lines.
struct APIResponder: HTTPResponder {
    typealias Context = APIRequestContext
    let handler: APIHandler
    let watchTimeout: Duration
    let logger: Logger

    func respond(to request: Request, context: APIRequestContext) async throws -> Response {
        let user = await Self.user(of: context.channel)
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: APIHandler.bodyBytesMax)
        } catch {
            return Self.response(.error(.tooLarge))
        }
        let query = QueryString.parse(request.uri.query ?? "")
        let contentType = request.headers[.contentType].map { String($0.split(separator: ";")[0]).trimmingCharacters(in: .whitespaces).lowercased() }
        let api = APIRequest(method: request.method.rawValue, path: request.uri.path, query: query,
                             body: Array(buffer: body), contentType: contentType, accept: request.headers[.accept])
        let answer = await handler.handle(api, as: user)
        if case .watch(let watch, let initial, let encoder) = answer {
            let timeout = Int(query["timeoutSeconds"] ?? "").flatMap { $0 > 0 ? Duration.seconds($0) : nil }
                ?? watchTimeout + .seconds(Int.random(in: 0...Int(watchTimeout.components.seconds)))
            return Self.watchResponse(watch, initial: initial, encoder: encoder, timeout: timeout)
        }
        return Self.response(answer)
    }

    /// The user named by the client certificate of the connection (the TLS handshake checked it
    /// against the cluster CA); nil without one.
    static func user(of channel: any Channel) async -> UserInfo? {
        // An HTTP/1.1 request comes on the connection's channel, which holds the TLS handler; an
        // HTTP/2 stream's channel is a child of it (the connection's parent is the listener).
        let presented: NIOSSLCertificate?
        if let own = try? await channel.nioSSL_peerCertificate().get() {
            presented = own
        } else {
            presented = try? await channel.parent?.nioSSL_peerCertificate().get()
        }
        guard let presented, let der = try? presented.toDERBytes(),
              let certificate = try? Certificate(derEncoded: der)
        else { return nil }
        let name = certificate.subject.flatMap { $0.filter { $0.type == .RDNAttributeType.commonName } }.map { String(describing: $0.value) }.first ?? ""
        guard !name.isEmpty else { return nil }
        return UserInfo(name: name, groups: ClusterTrust.organizations(of: certificate))
    }

    static let json: HTTPFields = [.contentType: "application/json"]

    static func response(_ answer: APIResponse) -> Response {
        switch answer {
        case .object(let status, let value, let warnings):
            var headers = json
            for warning in warnings {
                // RFC 7234's form, as kube-apiserver sends it: 299 - "text".
                headers.append(HTTPField(name: .init("Warning")!, value: "299 - \"\(warning.replacingOccurrences(of: "\"", with: "\\\""))\""))
            }
            return Response(status: .init(code: status), headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: value.jsonBytes)))
        case .text(let status, let text):
            return Response(status: .init(code: status), headers: [.contentType: "text/plain; charset=utf-8"], body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
        case .watch(let watch, _, _):
            watch.cancel()
            return response(.error(.internalError("a watch answered where none was asked for")))
        }
    }

    /// A watch as Kubernetes streams it: one `{"type","object"}` per line, flushed as each comes;
    /// an error (410 Expired) as a last `ERROR` line; the stream ends after `timeout`.
    static func watchResponse(_ watch: ObjectWatch, initial: [ObjectEvent], encoder: WatchEncoder, timeout: Duration) -> Response {
        Response(status: .ok, headers: json, body: ResponseBody { writer in
            var encoder = encoder
            let timer = Task {
                try? await Task.sleep(for: timeout)
                watch.cancel()
            }
            defer {
                timer.cancel()
                watch.cancel()
            }
            for event in initial { try await writer.write(line(encoder.encode(event))) }
            do {
                for try await event in watch { try await writer.write(line(encoder.encode(event))) }
            } catch let error as APIError {
                try await writer.write(line(ObjectEvent.errorObject(error)))
            }
            try await writer.finish(nil)
        })
    }

    static func line(_ value: JSONValue) -> ByteBuffer {
        var buffer = ByteBuffer(bytes: value.jsonBytes)
        buffer.writeInteger(UInt8(ascii: "\n"))
        return buffer
    }
}
