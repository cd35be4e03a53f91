// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "raftkube",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "raftkube", targets: ["raftkube"]),
        .executable(name: "raftsim", targets: ["raftsim"]),
        .executable(name: "raftkube-fuzz", targets: ["raftkube-fuzz"]),
        .executable(name: "raftkube-testkit", targets: ["raftkube-testkit"]),
        .library(name: "Raft", targets: ["Raft"]),
    ],
    dependencies: [
        // Command-line parsing for `raftkube` and `raftsim`.
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // Event loops and TCP for the peer transport.
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        // Structured logging; only executables bootstrap it.
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        // Services with graceful shutdown on SIGTERM, run by one ServiceGroup.
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        // The etcd v3 API: gRPC over HTTP/2 with protobuf messages (generated code is committed).
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.0"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.1.0"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.30.0"),
        // SHA-256 for snapshot files (etcd's trailing checksum), keys for the cluster's certificates.
        .package(url: "https://github.com/apple/swift-crypto", from: "3.0.0"),
        // The cluster CA and its certificates (X.509), and TLS for peers and clients.
        .package(url: "https://github.com/apple/swift-certificates", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.25.0"),
        // HTTP/2 framing and HPACK under the store's own gRPC server (EtcdServer/GRPCWire).
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.35.0"),
        // A binary heap for the leader's lease deadlines (already in the graph through swift-nio).
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        // The API server's HTTPS listener (HTTP/2 with ALPN, and HTTP/1.1).
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.20.0"),
        // HTTP fields (Hummingbird's request and response headers).
        .package(url: "https://github.com/apple/swift-http-types", from: "1.3.0"),
        // YAML request bodies (application/yaml), read as Kubernetes reads them.
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        // The Kubernetes client library's HTTPS (HTTP/2 with ALPN, connection pools).
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        // The consensus algorithm as a pure, deterministic state machine: stdlib only.
        .target(name: "Raft"),
        // CRC-32C (slicing-by-8), shared by the WAL, snapshot files and HashKV: stdlib only.
        .target(name: "Checksums"),
        // Deterministic cluster simulator (network, disk and clock faults from one seed) and its checkers.
        .target(name: "RaftSimulation", dependencies: ["Raft"]),
        // The shell around `Raft`: write-ahead log and snapshots on disk, peer transport, the loop.
        .target(
            name: "RaftRuntime",
            dependencies: [
                "Raft",
                "Checksums",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                // The TLS handshake's completion event, for listeners' handshake timeouts.
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The cluster's PKI: CA, node and client certificates, the CA hash joiners pin, bootstrap
        // tokens, and the trust check (with reasons) that every TLS connection uses.
        .target(
            name: "ClusterPKI",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The system SQLite (libsqlite3-dev), for the MVCC keyspace.
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        // The replicated state machine: an etcd-style MVCC keyspace in SQLite, leases, watches.
        // (NIOConcurrencyHelpers: the lock of the in-memory key index, shared with the history reader.)
        .target(name: "KVStore", dependencies: [
            "CSQLite", "Checksums", .product(name: "HeapModule", package: "swift-collections"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ]),
        // The store as raftkube's own components use it, without gRPC: `KeyValueStore` (range,
        // txn, put, delete, compact, leases, members, watch as an AsyncSequence) and its typed
        // errors. Backends: the member in this process (EtcdServer.EmbeddedStore), etcd endpoints.
        .target(name: "Store", dependencies: ["KVStore"]),
        // etcd v3 protobuf messages and gRPC service stubs, generated by cluster/generate-protos and committed.
        .target(
            name: "EtcdAPI",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            exclude: ["Protos"]
        ),
        // The etcd v3 gRPC API over RaftRuntime + KVStore.
        .target(
            name: "EtcdServer",
            dependencies: [
                "ClusterPKI",
                "EtcdAPI", "KVStore", "Raft", "RaftRuntime", "Store",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        // Kubernetes' API types (core, apps, batch, coordination, discovery, rbac, authorization,
        // autoscaling, policy, meta; generated from v1.33's definitions by cluster/generate-resources
        // and committed) and the untyped values they hold (JSONValue, Quantity, IntOrString, Timestamp).
        .target(name: "Resources"),
        // The Kubernetes API server over the store: objects under /registry/ (ObjectStorage), with
        // Kubernetes' errors (APIError -> Status).
        .target(name: "APIServer", dependencies: ["KVStore", "Resources", "Store", "YAMLValue"]),
        // YAML read into JSONValue as Kubernetes reads it (one document or a stream of them, aliases
        // within a budget), and JSONValue printed as kubectl prints YAML.
        .target(name: "YAMLValue", dependencies: ["Resources", .product(name: "Yams", package: "Yams")]),
        // The API server's HTTPS shell (Hummingbird 2): TLS with the cluster's certificates, the
        // user from the client certificate, bodies within their limit, watches as JSON lines.
        .target(
            name: "APIServerHTTP",
            dependencies: [
                "APIServer", "ClusterPKI", "Resources",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdHTTP2", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The Kubernetes client library (client-go's role): kubeconfigs, typed and untyped
        // requests with failover among API servers, watches, informers, the work queue.
        .target(
            name: "KubeClient",
            dependencies: [
                "Resources", "YAMLValue",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        // The `raftkube` client commands (get, describe, apply, create, delete, scale, auth can-i)
        // over KubeClient: the resource catalog from discovery, the server's tables, manifests.
        .target(name: "KubeCLI", dependencies: ["KubeClient", "Resources", "YAMLValue"]),
        // A node assembled from typed configuration (a store member and what a control-plane node
        // runs beside it), so that the CLI only parses arguments and tests start nodes in-process.
        .target(
            name: "Node",
            dependencies: [
                "APIServer", "APIServerHTTP", "ClusterPKI", "EtcdServer", "KVStore", "Raft", "RaftRuntime", "Store",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // A Wing & Gong / Porcupine-style linearizability checker for recorded histories.
        .target(name: "Linearizability"),
        // Real raftkube processes on loopback, for end-to-end tests and benchmarks.
        .target(
            name: "ClusterHarness",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // libFuzzer entry points for what members take from outside (cluster/fuzz builds it
        // with -sanitize=fuzzer); a plain build replays saved inputs.
        .executableTarget(
            name: "raftkube-fuzz",
            dependencies: [
                "Raft", "RaftRuntime", "KVStore", "Checksums",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // Test fixtures, out of the product binary: `raft-node` (a Raft member with a trivial state
        // machine, started by ClusterHarness in the runtime tests) and `bench raft-runtime` on it.
        .executableTarget(
            name: "raftkube-testkit",
            dependencies: [
                "Raft", "RaftRuntime", "ClusterHarness",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "raftsim",
            dependencies: [
                "RaftSimulation",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "raftkube",
            dependencies: [
                "Raft",
                "RaftRuntime",
                "RaftSimulation",
                "ClusterPKI",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                "EtcdServer",
                "EtcdAPI",
                "KVStore",
                "Node",
                "Store",
                "KubeClient",
                "KubeCLI",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "ClusterPKITests",
            dependencies: [
                "ClusterPKI",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(name: "RaftTests", dependencies: ["Raft", "RaftSimulation"]),
        .testTarget(name: "KVStoreTests", dependencies: ["KVStore"]),
        .testTarget(
            name: "EtcdServerTests",
            dependencies: [
                "ClusterPKI",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                "ClusterHarness", "Linearizability", "KVStore", "EtcdAPI", "EtcdServer", "Raft", "RaftRuntime",
                // Hand-made peer frames over TLS, for the tests of what a peer may send.
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            ],
            // The python-etcd3 suite, run by PythonClientTests from the source tree.
            exclude: ["Python"]),
        .testTarget(name: "LinearizabilityTests", dependencies: ["Linearizability"]),
        .testTarget(name: "ResourcesTests", dependencies: ["Resources"]),
        .testTarget(name: "APIServerTests", dependencies: ["APIServer", "Resources", "YAMLValue"]),
        .testTarget(name: "KubeClientTests", dependencies: ["KubeClient", "KubeCLI", "Resources", "YAMLValue"]),
        // The store interface on a member assembled in this process (Node), no gRPC in between.
        .testTarget(
            name: "NodeTests",
            dependencies: [
                "APIServer", "APIServerHTTP", "ClusterHarness", "ClusterPKI", "EtcdServer", "KVStore", "Node", "RaftRuntime", "Resources", "Store",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
            ],
            // The Python kubernetes client's suite, run by APIHTTPTests.
            exclude: ["Python"]),
        .testTarget(
            name: "RaftRuntimeTests",
            dependencies: [
                "Raft",
                "RaftRuntime",
                "Checksums",
                "ClusterHarness",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
