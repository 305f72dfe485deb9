import Logging
import AgentHost
import AgentCluster
import AgentCore
import AgentRuntime
import AgentTestSupport
import Foundation

/// A runtime with an embedded host on 127.0.0.1:0, serving copies of plugins the package
/// built, and a client connected to its host.
struct RuntimeHarness {
    let runtime: AgentRuntime
    let client: WorkerClient
    let log: LogCapture
    let pluginDirectory: String

    /// The folder the package's products are in (the test binary's own folder).
    static var buildDirectory: String {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().path
    }

    /// - Parameter plugins: (file name in the plugin folder, product name) pairs; files load
    ///   in name order.
    static func start(
        plugins: [(file: String, product: String)], settings: [String: [String: String]] = [:],
        rpcTimeout: Duration = .seconds(10), extraFiles: [(String, [UInt8])] = [],
        maxRetiredSwiftImages: Int = 16, mailboxLimit: Int = 10_000, handlerTimeout: Duration = .seconds(60),
        probe: Bool = false, shutdownGracePeriod: Duration = .seconds(5),
        stateStorePath: String? = nil, idleAgentTimeout: Duration = .seconds(300), maxResidentAgents: Int = 100_000,
        pluginDirectory existing: String? = nil, metricsListen: String? = nil,
        configure: (inout AgentRuntime.Configuration) -> Void = { _ in }
    ) async throws -> RuntimeHarness {
        let directory = existing ?? NSTemporaryDirectory() + "agentd-runtime-test-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for plugin in plugins where !FileManager.default.fileExists(atPath: "\(directory)/\(plugin.file)") {
            try FileManager.default.copyItem(
                atPath: "\(buildDirectory)/lib\(plugin.product).so", toPath: "\(directory)/\(plugin.file)")
        }
        for (name, bytes) in extraFiles {
            try Data(bytes).write(to: URL(fileURLWithPath: "\(directory)/\(name)"))
        }
        let log = LogCapture()
        var configuration = AgentRuntime.Configuration(
            embeddedHost: .init(listen: "127.0.0.1:0"), rpcTimeout: rpcTimeout, workers: 4,
            pluginDirectory: directory,
            probe: probe ? PluginProbe(executable: "\(buildDirectory)/agentd") : nil,
            shutdownGracePeriod: shutdownGracePeriod,
            maxRetiredSwiftImages: maxRetiredSwiftImages, mailboxLimit: mailboxLimit,
            handlerTimeout: handlerTimeout, pluginSettings: settings, stateStorePath: stateStorePath,
            idleAgentTimeout: idleAgentTimeout, maxResidentAgents: maxResidentAgents, metricsListen: metricsListen)
        configure(&configuration)
        let runtime = try AgentRuntime(configuration: configuration, logger: log.logger())
        try await runtime.start()
        let client = try WorkerClient(address: runtime.hostAddress!)
        return RuntimeHarness(runtime: runtime, client: client, log: log, pluginDirectory: directory)
    }

    func stop(keepingPlugins: Bool = false) async {
        await client.close()
        await runtime.shutdown()
        if !keepingPlugins { try? FileManager.default.removeItem(atPath: pluginDirectory) }
    }

    /// Sends a JSON RPC and returns the answer's text.
    func call(_ target: String, _ type: String, _ json: String) async throws -> String {
        let response = try await client.send(Array(json.utf8), messageType: type, to: AgentID(target)!)
        return String(decoding: response.payload, as: UTF8.self)
    }
}

/// Runs `body` with a started harness and always stops it.
func withRuntime(
    plugins: [(file: String, product: String)], settings: [String: [String: String]] = [:],
    rpcTimeout: Duration = .seconds(10), extraFiles: [(String, [UInt8])] = [], maxRetiredSwiftImages: Int = 16,
    mailboxLimit: Int = 10_000, handlerTimeout: Duration = .seconds(60), probe: Bool = false,
    stateStorePath: String? = nil, idleAgentTimeout: Duration = .seconds(300), maxResidentAgents: Int = 100_000,
    _ body: (RuntimeHarness) async throws -> Void
) async throws {
    let harness = try await RuntimeHarness.start(
        plugins: plugins, settings: settings, rpcTimeout: rpcTimeout, extraFiles: extraFiles,
        maxRetiredSwiftImages: maxRetiredSwiftImages, mailboxLimit: mailboxLimit, handlerTimeout: handlerTimeout,
        probe: probe, stateStorePath: stateStorePath, idleAgentTimeout: idleAgentTimeout,
        maxResidentAgents: maxResidentAgents)
    do {
        try await body(harness)
    } catch {
        await harness.stop()
        throw error
    }
    await harness.stop()
}

/// A host on 127.0.0.1 (port 0) in the cluster of `nats`, named `name`, with a 5 s lease (the
/// hosts share the test process: a full parallel run can hold a heartbeat task up for more than
/// a second).
func clusterHost(_ name: String, nats: NATSServer) async throws -> AgentHost {
    try await AgentHost.start(
        configuration: .init(
            listen: "127.0.0.1:0",
            cluster: ClusterConfiguration(nats: NATSConnection.Options(servers: [nats.url]), name: name, lease: .seconds(5))),
        logger: Logger(label: "test.\(name)"))
}
