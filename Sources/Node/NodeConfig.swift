import ClusterPKI
import Crypto
import Foundation
import X509

/// A node's identity and settings, kept in `DATA/node.json` by `init` and `join` so that
/// `raftkube start` brings the same node back with no flags.
public struct NodeConfig: Codable, Sendable {
    public var clusterName: String
    /// The store's `--initial-cluster-token` (member IDs derive from it).
    public var clusterToken: String
    public var nodeName: String
    public var advertiseAddress: String
    public var clientPort: Int
    public var peerPort: Int
    public var joinPort: Int
    public var worker: Bool
    /// name=peerURL of the members the store starts with, and whether it bootstraps them.
    public var initialCluster: String
    public var initialClusterState: String
    /// The CA this node belongs to: a data directory of another cluster is refused.
    public var caHash: String
    public var votersMax: Int
    /// The API server's HTTPS port (nil in configurations written before it: 6443).
    public var apiPort: Int?
    public var apiServerPort: Int { apiPort ?? 6443 }

    public init(clusterName: String, clusterToken: String, nodeName: String, advertiseAddress: String, clientPort: Int, peerPort: Int,
                joinPort: Int, worker: Bool, initialCluster: String, initialClusterState: String, caHash: String, votersMax: Int) {
        self.clusterName = clusterName
        self.clusterToken = clusterToken
        self.nodeName = nodeName
        self.advertiseAddress = advertiseAddress
        self.clientPort = clientPort
        self.peerPort = peerPort
        self.joinPort = joinPort
        self.worker = worker
        self.initialCluster = initialCluster
        self.initialClusterState = initialClusterState
        self.caHash = caHash
        self.votersMax = votersMax
    }

    public static func path(_ dataDir: String) -> String { "\(dataDir)/node.json" }
    /// Where `leave` moves `node.json`, so that the node is not started again.
    public static func leftPath(_ dataDir: String) -> String { path(dataDir) + ".left" }

    /// The node in `dataDir`, or why there is none to run or act for (it left; never made).
    public static func require(_ dataDir: String) throws -> NodeConfig {
        if let config = try load(dataDir) { return config }
        if FileManager.default.fileExists(atPath: leftPath(dataDir)) {
            throw NodeError("the node in \(dataDir) left its cluster (raftkube leave): join again with a new data directory")
        }
        throw NodeError("\(dataDir) holds no node: run `raftkube init` or `raftkube join` first")
    }

    public static func load(_ dataDir: String) throws -> NodeConfig? {
        guard let data = FileManager.default.contents(atPath: path(dataDir)) else { return nil }
        do {
            return try JSONDecoder().decode(NodeConfig.self, from: data)
        } catch {
            throw NodeError("\(path(dataDir)) is not a raftkube node configuration: \(error)")
        }
    }

    public func save(_ dataDir: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try DurableFile.write(String(decoding: try encoder.encode(self), as: UTF8.self) + "\n", to: Self.path(dataDir), secret: false)
    }
}

/// Where a node keeps things under its data directory (all of it private: 0600 files, 0700
/// directories). Each role has its own certificate:
/// - `peer`: control-plane nodes' store member (`raftkube:peers`, bound to the member ID): the
///   peer port, serving the store API and the join port, forwarding to the leader;
/// - `store-client`: the API server's client of the store (`raftkube:store-clients`);
/// - `node`: the kubelet's identity (`system:nodes`, CN `system:node:NAME`), on every node; a
///   worker holds only this and the CA certificate, never the CA key;
/// - `admin`: the administrator (`system:masters`), written by `init`;
/// - `apiserver`: the API server's serving certificate (`raftkube:apiservers`, server only),
///   issued on a control-plane node's start when it has none.
public struct NodePaths: Sendable {
    public let dataDir: String
    public init(dataDir: String) { self.dataDir = dataDir }
    public var pki: String { "\(dataDir)/pki" }
    public var caCertificate: String { "\(pki)/ca.crt" }
    public var caKey: String { "\(pki)/ca.key" }
    public var peerCertificate: String { "\(pki)/peer.crt" }
    public var peerKey: String { "\(pki)/peer.key" }
    public var storeClientCertificate: String { "\(pki)/store-client.crt" }
    public var storeClientKey: String { "\(pki)/store-client.key" }
    public var nodeCertificate: String { "\(pki)/node.crt" }
    public var nodeKey: String { "\(pki)/node.key" }
    public var adminCertificate: String { "\(pki)/admin.crt" }
    public var adminKey: String { "\(pki)/admin.key" }
    public var apiServerCertificate: String { "\(pki)/apiserver.crt" }
    public var apiServerKey: String { "\(pki)/apiserver.key" }
    public var adminConfig: String { "\(dataDir)/admin.conf" }
    public var store: String { "\(dataDir)/store" }

    /// Issues a control-plane node's own certificates with the CA: its peer certificate and its
    /// store-client certificate (both bound to `memberID`), each with a key of its own.
    public func issueControlPlane(ca: CertificateAuthority, name: String, address: String, memberID: UInt64) throws {
        let peerKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
        try PEMFiles.write([try ca.issue(profile: .peer(memberID: memberID), commonName: name, dnsNames: [name, "localhost"],
                                         ipAddresses: [address, "127.0.0.1"], publicKey: peerKey.publicKey)], to: peerCertificate)
        try PEMFiles.write(peerKey, to: self.peerKey)
        let clientKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
        try PEMFiles.write([try ca.issue(profile: .storeClient(memberID: memberID), commonName: "raftkube-apiserver \(name)",
                                         publicKey: clientKey.publicKey)], to: storeClientCertificate)
        try PEMFiles.write(clientKey, to: storeClientKey)
    }
}

extension NodePaths {
    /// The names an API server's certificate carries: the node's, `localhost`, and the
    /// `kubernetes` Service's DNS names (pods reach the API through it).
    public static func apiServerDNSNames(node: String) -> [String] {
        [node, "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]
    }

    /// Issues the API server's serving certificate when there is none, or when the one there
    /// lacks `address` (the node moved): the node's names and address, loopback, and the
    /// `kubernetes` Service's first address of the service range (10.96.0.1).
    public func ensureAPIServerCertificate(ca: CertificateAuthority, name: String, address: String) throws {
        if let existing = try? PEMFiles.certificates(apiServerCertificate).first,
           (try? PEMFiles.privateKey(apiServerKey))?.publicKey == existing.publicKey,
           let names = try? existing.extensions.subjectAlternativeNames,
           names.contains(where: { if case .ipAddress(let bytes) = $0 { CertificateRenewal.ipAddressText(Array(bytes.bytes)) == address } else { false } }) {
            return
        }
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        try PEMFiles.write([try ca.issue(profile: .apiServer, commonName: "raftkube-apiserver \(name)", dnsNames: Self.apiServerDNSNames(node: name),
                                         ipAddresses: Array(Set([address, "127.0.0.1", "10.96.0.1"])).sorted(), publicKey: key.publicKey)], to: apiServerCertificate)
        try PEMFiles.write(key, to: apiServerKey)
    }
}

/// The administrator's client configuration, in kubeconfig's format (what kubectl reads; the API
/// server listens on 6443 of every control-plane node).
public enum AdminConfig {
    public static func kubeconfig(clusterName: String, server: String, ca: Certificate, certificate: Certificate, key: Certificate.PrivateKey) throws -> String {
        func base64(_ pem: String) -> String { Data(pem.utf8).base64EncodedString() }
        return """
        apiVersion: v1
        kind: Config
        clusters:
        - name: \(clusterName)
          cluster:
            server: \(server)
            certificate-authority-data: \(base64(try ca.serializeAsPEM().pemString))
        users:
        - name: admin
          user:
            client-certificate-data: \(base64(try certificate.serializeAsPEM().pemString))
            client-key-data: \(base64(try key.serializeAsPEM().pemString))
        contexts:
        - name: admin@\(clusterName)
          context:
            cluster: \(clusterName)
            user: admin
        current-context: admin@\(clusterName)

        """
    }
}
