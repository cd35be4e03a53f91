import Foundation

/// The API servers a client learned (the cluster's `kubernetes` Endpoints), kept in a small
/// file per kubeconfig server (`~/.kube/cache/raftkube/`), so that a command still finds a
/// server when the one its kubeconfig names is down.
public struct ServerMemory: Sendable {
    public let path: String
    /// Learned again when older than this.
    public static let freshFor: TimeInterval = 300

    public init?(server: String, environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let home = environment["HOME"], !home.isEmpty else { return nil }
        let name = server.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" ? $0 : "_" }
        path = "\(home)/.kube/cache/raftkube/\(String(name)).servers"
    }

    public init(path: String) {
        self.path = path
    }

    public func load() -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map(String.init).filter { $0.hasPrefix("https://") && $0.count < 300 }.prefix(64).map { $0 }
    }

    public var isFresh: Bool {
        guard let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date else { return false }
        return Date().timeIntervalSince(modified) < ServerMemory.freshFor
    }

    public func save(_ servers: [String]) {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try? (servers.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    }
}
