// swift-tools-version:6.1
import PackageDescription

/// The plugin SDK alone, for plugin packages outside this repository: the C ABI header
/// (`AgentPluginABI`) and the Swift SDK (`AgentSDK`), with no dependencies, so that a plugin
/// package resolves nothing and builds in seconds. A plugin package depends on it with
///
///     .package(path: "<agentd checkout>/AgentSDK"),
///
/// and its target with `dependencies: ["AgentSDK"]`: the package is named after this folder,
/// `AgentSDK`, whatever the checkout is called. Its sources are the root package's own
/// (`Sources/AgentSDK`, `Sources/AgentPluginABI`, linked here): one copy, built by both.
///
/// The SDK's protobuf opt-in is the package beside this one, `AgentSDKProtobuf/`: a product here
/// would make every plugin package resolve swift-protobuf, used or not.
let package = Package(
    name: "AgentSDK",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "AgentSDK", targets: ["AgentSDK"]),
        .library(name: "AgentPluginABI", targets: ["AgentPluginABI"]),
    ],
    targets: [
        .target(name: "AgentPluginABI"),
        .target(name: "AgentSDK", dependencies: ["AgentPluginABI"]),
    ],
    swiftLanguageModes: [.v6]
)
