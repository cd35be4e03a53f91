// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "raftkube",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "raftkube", targets: ["raftkube"]),
        .executable(name: "raftsim", targets: ["raftsim"]),
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
    ],
    targets: [
        // The consensus algorithm as a pure, deterministic state machine: stdlib only.
        .target(name: "Raft"),
        // Deterministic cluster simulator (network, disk and clock faults from one seed) and its checkers.
        .target(name: "RaftSimulation", dependencies: ["Raft"]),
        // The shell around `Raft`: write-ahead log and snapshots on disk, peer transport, the loop.
        .target(
            name: "RaftRuntime",
            dependencies: [
                "Raft",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Real raftkube processes on loopback, for end-to-end tests and benchmarks.
        .target(
            name: "ClusterHarness",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
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
                "ClusterHarness",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "RaftTests", dependencies: ["Raft", "RaftSimulation"]),
        .testTarget(
            name: "RaftRuntimeTests",
            dependencies: [
                "Raft",
                "RaftRuntime",
                "ClusterHarness",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
