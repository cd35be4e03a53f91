import Foundation
import Yams

/// A kubeconfig file (kubectl's format): clusters, users, contexts and the current context.
/// Parsed with Yams; the fields raftkube's clients use are read, the rest is ignored as kubectl
/// ignores what it does not know.
public struct KubeConfig: Sendable, Equatable {
    public struct Cluster: Sendable, Equatable {
        public var server: String
        /// PEM of the CA that signs the servers' certificates (the file's `-data` or the file named).
        public var certificateAuthority: String?
        public var insecureSkipTLSVerify = false
        /// The name the server's certificate is checked against, when not the URL's host.
        public var tlsServerName: String?
    }

    public struct User: Sendable, Equatable {
        public var clientCertificate: String?
        public var clientKey: String?
        public var token: String?
    }

    public struct Context: Sendable, Equatable {
        public var cluster: String
        public var user: String
        public var namespace: String?
    }

    public var clusters: [String: Cluster] = [:]
    public var users: [String: User] = [:]
    public var contexts: [String: Context] = [:]
    public var currentContext: String?
    /// The file it came from (relative paths inside it are read from its directory).
    public var path: String?

    public init() {}

    /// What a client needs from the chosen context: where, as whom, trusting what.
    public struct Resolved: Sendable, Equatable {
        public var server: String
        public var certificateAuthority: String?
        public var insecureSkipTLSVerify: Bool
        public var tlsServerName: String?
        public var clientCertificate: String?
        public var clientKey: String?
        public var token: String?
        public var namespace: String
    }

    /// The context `name` (the current context by default) with its cluster and user.
    public func resolved(context name: String? = nil) throws -> Resolved {
        guard let contextName = name ?? currentContext, !contextName.isEmpty else {
            throw KubeConfigError("\(path ?? "the kubeconfig") has no current-context; name one with --context")
        }
        guard let context = contexts[contextName] else { throw KubeConfigError("context \"\(contextName)\" is not in \(path ?? "the kubeconfig")") }
        guard let cluster = clusters[context.cluster] else { throw KubeConfigError("cluster \"\(context.cluster)\" of context \"\(contextName)\" is not in \(path ?? "the kubeconfig")") }
        let user = users[context.user] ?? User()
        return Resolved(server: cluster.server, certificateAuthority: cluster.certificateAuthority, insecureSkipTLSVerify: cluster.insecureSkipTLSVerify,
                        tlsServerName: cluster.tlsServerName, clientCertificate: user.clientCertificate, clientKey: user.clientKey,
                        token: user.token, namespace: context.namespace ?? "default")
    }

    /// Parses `text`; files named inside it are read relative to `path`'s directory.
    public static func parse(_ text: String, path: String? = nil) throws -> KubeConfig {
        let node: Any?
        do { node = try Yams.load(yaml: text) } catch { throw KubeConfigError("\(path ?? "kubeconfig") is not YAML: \(error)") }
        guard let root = node as? [String: Any] else { throw KubeConfigError("\(path ?? "kubeconfig") is not a kubeconfig (no mapping at its top)") }
        let base = path.map { URL(fileURLWithPath: $0).deletingLastPathComponent().path } ?? FileManager.default.currentDirectoryPath
        func named(_ key: String, _ inner: String) throws -> [(String, [String: Any])] {
            guard let list = root[key] else { return [] }
            guard let entries = list as? [Any] else { throw KubeConfigError("\(key) in \(path ?? "kubeconfig") is not a list") }
            return try entries.map { entry in
                guard let entry = entry as? [String: Any], let name = entry["name"] as? String else {
                    throw KubeConfigError("an entry of \(key) in \(path ?? "kubeconfig") has no name")
                }
                return (name, entry[inner] as? [String: Any] ?? [:])
            }
        }
        /// The PEM in `key-data` (base64) or in the file `key` names.
        func pem(_ fields: [String: Any], _ key: String) throws -> String? {
            if let data = fields["\(key)-data"] as? String {
                guard let decoded = Data(base64Encoded: data.filter { !$0.isWhitespace }), let text = String(data: decoded, encoding: .utf8) else {
                    throw KubeConfigError("\(key)-data in \(path ?? "kubeconfig") is not base64 of PEM")
                }
                return text
            }
            guard let file = fields[key] as? String, !file.isEmpty else { return nil }
            let full = file.hasPrefix("/") ? file : "\(base)/\(file)"
            do { return try String(contentsOfFile: full, encoding: .utf8) } catch { throw KubeConfigError("cannot read \(key) \(full): \(error.localizedDescription)") }
        }
        var config = KubeConfig()
        config.path = path
        config.currentContext = root["current-context"] as? String
        for (name, fields) in try named("clusters", "cluster") {
            guard let server = fields["server"] as? String, !server.isEmpty else { throw KubeConfigError("cluster \"\(name)\" has no server") }
            config.clusters[name] = Cluster(server: server, certificateAuthority: try pem(fields, "certificate-authority"),
                                            insecureSkipTLSVerify: fields["insecure-skip-tls-verify"] as? Bool ?? false,
                                            tlsServerName: fields["tls-server-name"] as? String)
        }
        for (name, fields) in try named("users", "user") {
            var token = fields["token"] as? String
            if token == nil, let file = fields["tokenFile"] as? String {
                token = try? String(contentsOfFile: file.hasPrefix("/") ? file : "\(base)/\(file)", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            }
            config.users[name] = User(clientCertificate: try pem(fields, "client-certificate"), clientKey: try pem(fields, "client-key"), token: token)
        }
        for (name, fields) in try named("contexts", "context") {
            guard let cluster = fields["cluster"] as? String else { throw KubeConfigError("context \"\(name)\" names no cluster") }
            config.contexts[name] = Context(cluster: cluster, user: fields["user"] as? String ?? "", namespace: fields["namespace"] as? String)
        }
        return config
    }

    /// The file to use, as kubectl chooses it: `explicit`, else the first file of `$KUBECONFIG`
    /// that exists, else `~/.kube/config`, else the node's admin config (`fallbacks`).
    public static func locate(explicit: String?, environment: [String: String] = ProcessInfo.processInfo.environment,
                              fallbacks: [String] = []) throws -> String {
        if let explicit, !explicit.isEmpty {
            guard FileManager.default.fileExists(atPath: explicit) else { throw KubeConfigError("kubeconfig \(explicit) does not exist") }
            return explicit
        }
        var candidates: [String] = []
        if let list = environment["KUBECONFIG"], !list.isEmpty { candidates += list.split(separator: ":").map(String.init) }
        if let home = environment["HOME"], !home.isEmpty { candidates.append("\(home)/.kube/config") }
        candidates += fallbacks
        if let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) { return found }
        throw KubeConfigError("no kubeconfig: pass --kubeconfig, set KUBECONFIG, or write ~/.kube/config (looked at \(candidates.joined(separator: ", ")))")
    }

    public static func load(explicit: String?, fallbacks: [String] = []) throws -> KubeConfig {
        let path = try locate(explicit: explicit, fallbacks: fallbacks)
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch { throw KubeConfigError("cannot read \(path): \(error.localizedDescription)") }
        return try parse(text, path: path)
    }
}

public struct KubeConfigError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
