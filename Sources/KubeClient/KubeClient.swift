import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Resources

/// A Kubernetes API client (client-go's role for raftkube's CLI, scheduler, controllers and
/// kubelet): requests over HTTPS (HTTP/2 when the server offers it) with the kubeconfig's
/// client certificate or bearer token, Kubernetes `Status` errors as ``KubeError``, and
/// **failover among API servers**: every control-plane node serves, so a request that cannot
/// reach one server is sent to the next (the kubeconfig's server first, then those the
/// cluster's `kubernetes` Endpoints list, learned by ``learnServers()``).
public final class KubeClient: Sendable {
    public let namespace: String
    let http: HTTPClient
    let token: String?
    /// The servers in the order tried; the one that answered last comes first.
    let servers: NIOLockedValueBox<[String]>
    /// A response body larger than this is refused (a list of 150,000 pods is far below it).
    public static let bodyBytesMax = 512 << 20
    public static let requestTimeout: TimeAmount = .seconds(60)

    public init(_ config: KubeConfig.Resolved, extraServers: [String] = []) throws {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        if let ca = config.certificateAuthority {
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(ca.utf8)))
        }
        if config.insecureSkipTLSVerify { tls.certificateVerification = .none }
        if let certificate = config.clientCertificate, let key = config.clientKey {
            tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certificate.utf8)).map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(key.utf8), format: .pem))
        }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls, redirectConfiguration: .disallow,
                                                     timeout: .init(connect: .seconds(3), read: nil))
        configuration.httpVersion = .automatic
        http = HTTPClient(eventLoopGroupProvider: .shared(MultiThreadedEventLoopGroup.singleton), configuration: configuration)
        token = config.token
        namespace = config.namespace
        var list = [KubeClient.normalized(config.server)]
        for server in extraServers.map(KubeClient.normalized) where !list.contains(server) { list.append(server) }
        servers = NIOLockedValueBox(list)
    }

    /// Builds a client from the kubeconfig chosen as kubectl chooses it.
    public convenience init(kubeconfig: String? = nil, context: String? = nil, fallbacks: [String] = [], extraServers: [String] = []) throws {
        try self.init(try KubeConfig.load(explicit: kubeconfig, fallbacks: fallbacks).resolved(context: context), extraServers: extraServers)
    }

    deinit {
        try? http.syncShutdown()
    }

    public func shutdown() async throws {
        try await http.shutdown()
    }

    static func normalized(_ server: String) -> String {
        server.hasSuffix("/") ? String(server.dropLast()) : server
    }

    /// The servers, in the order the next request tries them.
    public var knownServers: [String] { servers.withLockedValue { $0 } }

    /// Adds the API servers of the cluster's `kubernetes` Endpoints (every live API server) to
    /// those tried; returns the list.
    @discardableResult
    public func learnServers() async throws -> [String] {
        let endpoints = try await get(.endpoints, name: "kubernetes", namespace: "default")
        var found: [String] = []
        for subset in endpoints["subsets"]?.arrayValue ?? [] {
            let port = subset["ports"]?.arrayValue?.first?["port"]?.integerValue ?? 6443
            for address in subset["addresses"]?.arrayValue ?? [] {
                guard let ip = address["ip"]?.stringValue else { continue }
                found.append(ip.contains(":") ? "https://[\(ip)]:\(port)" : "https://\(ip):\(port)")
            }
        }
        return servers.withLockedValue { list in
            for server in found where !list.contains(server) { list.append(server) }
            return list
        }
    }

    // MARK: Requests

    public struct Response: Sendable {
        public var status: Int
        public var headers: [(String, String)]
        public var body: [UInt8]

        public var json: JSONValue {
            get throws { try JSONDecoder().decode(JSONValue.self, from: Data(body)) }
        }

        public func header(_ name: String) -> String? {
            headers.first { $0.0.lowercased() == name.lowercased() }?.1
        }

        /// The server's `Warning` headers' texts (unknown fields dropped, ...).
        public var warnings: [String] {
            headers.filter { $0.0.lowercased() == "warning" }.map { value in
                // `299 - "text"`: the text between the quotes.
                let text = value.1
                guard let start = text.firstIndex(of: "\""), let end = text.lastIndex(of: "\""), start < end else { return text }
                return String(text[text.index(after: start)..<end])
            }
        }
    }

    /// One request; a status of 400 or more is thrown as the server's `Status` (``KubeError``).
    public func request(_ method: HTTPMethod, _ path: String, query: [(String, String)] = [], body: [UInt8]? = nil,
                        contentType: String = "application/json", accept: String = "application/json",
                        timeout: TimeAmount = KubeClient.requestTimeout) async throws -> Response {
        let response = try await send(method, path, query: query, body: body, contentType: contentType, accept: accept, timeout: timeout)
        let bytes = try await response.body.collect(upTo: KubeClient.bodyBytesMax)
        let result = Response(status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) }, body: Array(buffer: bytes))
        if result.status >= 400 { throw KubeError(status: result.status, body: result.body) }
        return result
    }

    /// Sends the request to the first server that can be reached. A server is skipped only when
    /// no connection to it could be made (the request was never sent), so a create is never sent twice.
    func send(_ method: HTTPMethod, _ path: String, query: [(String, String)], body: [UInt8]?, contentType: String, accept: String,
              timeout: TimeAmount) async throws -> HTTPClientResponse {
        let candidates = knownServers
        var failures: [String] = []
        for server in candidates {
            var request = HTTPClientRequest(url: server + path + KubeClient.queryString(query))
            request.method = method
            request.headers.add(name: "Accept", value: accept)
            request.headers.add(name: "User-Agent", value: "raftkube-client/0.1")
            if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
            if let body {
                request.headers.add(name: "Content-Type", value: contentType)
                request.body = .bytes(ByteBuffer(bytes: body))
            }
            do {
                let response = try await http.execute(request, timeout: timeout)
                if server != candidates.first {
                    servers.withLockedValue { list in
                        list.removeAll { $0 == server }
                        list.insert(server, at: 0)
                    }
                }
                return response
            } catch where KubeClient.isConnectFailure(error) {
                failures.append("\(server): \(error)")
                continue
            } catch {
                throw KubeError(transport: "\(method) \(server)\(path): \(error)")
            }
        }
        throw KubeError(transport: "no API server could be reached (\(failures.joined(separator: "; ")))")
    }

    /// Errors that mean the request never left: nothing was sent, another server may be tried.
    static func isConnectFailure(_ error: any Error) -> Bool {
        if error is NIOConnectionError { return true }
        if let error = error as? HTTPClientError, error == .connectTimeout || error == .tlsHandshakeTimeout { return true }
        if case ChannelError.connectTimeout = error { return true }
        if let error = error as? IOError, [ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, ETIMEDOUT].contains(error.errnoCode) { return true }
        if error is NIOSSLError { return true }
        return false
    }

    static func queryString(_ query: [(String, String)]) -> String {
        guard !query.isEmpty else { return "" }
        var allowed = CharacterSet.urlQueryAllowed
        allowed.remove(charactersIn: "&=+,;:/?#[]@!$'()*")
        return "?" + query.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0.1)" }.joined(separator: "&")
    }
}

/// What a request to the API server ended in: the server's `Status` (code, reason, message,
/// the fields at fault), or a transport failure (code 0).
public struct KubeError: Error, CustomStringConvertible, Sendable {
    public var code: Int
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `Expired`, `Forbidden`, ...
    public var reason: String
    public var message: String
    public var status: JSONValue?

    public init(code: Int, reason: String, message: String, status: JSONValue? = nil) {
        self.code = code
        self.reason = reason
        self.message = message
        self.status = status
    }

    init(status code: Int, body: [UInt8]) {
        let value = try? JSONDecoder().decode(JSONValue.self, from: Data(body))
        if let value, value["kind"]?.stringValue == "Status" {
            self.init(code: code, reason: value["reason"]?.stringValue ?? "", message: value["message"]?.stringValue ?? "", status: value)
        } else {
            let text = String(decoding: body.prefix(1_000), as: UTF8.self)
            self.init(code: code, reason: "", message: text.isEmpty ? "the server answered \(code)" : text)
        }
    }

    init(transport message: String) {
        self.init(code: 0, reason: "Unreachable", message: message)
    }

    public var isNotFound: Bool { code == 404 }
    public var isConflict: Bool { code == 409 && reason == "Conflict" }
    public var isAlreadyExists: Bool { code == 409 && reason == "AlreadyExists" }
    /// 410: the version asked for was compacted; list again.
    public var isExpired: Bool { code == 410 }

    /// The fields the server named as wrong (`details.causes[].field`).
    public var fields: [String] {
        status?["details"]?["causes"]?.arrayValue?.compactMap { $0["field"]?.stringValue } ?? []
    }

    public var description: String {
        code == 0 ? message : "Error from server (\(reason.isEmpty ? String(code) : reason)): \(message)"
    }
}
