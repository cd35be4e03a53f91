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
    ],
    targets: [
        // The consensus algorithm as a pure, deterministic state machine: stdlib only.
        .target(name: "Raft"),
        // Deterministic cluster simulator (network, disk and clock faults from one seed) and its checkers.
        .target(name: "RaftSimulation", dependencies: ["Raft"]),
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
                "RaftSimulation",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "RaftTests", dependencies: ["Raft", "RaftSimulation"]),
    ],
    swiftLanguageModes: [.v6]
)
