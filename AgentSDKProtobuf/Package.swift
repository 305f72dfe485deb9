// swift-tools-version:6.1
import PackageDescription

/// The Swift SDK's protobuf opt-in alone, for plugin packages outside this repository:
/// `AgentSDKProtobuf` (handlers, publish and send for swift-protobuf messages) over the SDK
/// package beside it (`../AgentSDK`) and swift-protobuf. A plugin package that speaks protobuf
/// depends on it with
///
///     .package(path: "<agentd checkout>/AgentSDKProtobuf"),
///
/// and its target with `dependencies: [.product(name: "AgentSDKProtobuf", package: "AgentSDKProtobuf")]`.
///
/// A package folder of its own, not a second product of `AgentSDK/`: SwiftPM resolves (fetches
/// and pins) every dependency a package dependency declares, whichever of its products is used,
/// so a JSON-only plugin that depends on `AgentSDK/` would otherwise resolve swift-protobuf too.
/// Its sources are the root package's own (`Sources/AgentSDKProtobuf`, linked here).
let package = Package(
    name: "AgentSDKProtobuf",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "AgentSDKProtobuf", targets: ["AgentSDKProtobuf"]),
    ],
    dependencies: [
        .package(path: "../AgentSDK"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
    ],
    targets: [
        .target(
            name: "AgentSDKProtobuf",
            dependencies: [
                .product(name: "AgentSDK", package: "AgentSDK"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
