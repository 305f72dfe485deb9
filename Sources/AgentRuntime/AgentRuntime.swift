import AgentCore
import AgentHost
import AgentPluginABI
import Foundation
import GRPCTransport
import Logging
import Synchronization

/// The runtime: loads the agent plugins of a directory, registers their agent types and
/// subscriptions with a host, and dispatches the host's events and RPCs to their handlers.
///
/// With no host address it runs an embedded ``AgentHost`` in the same process, listening
/// where the configuration says, so that other workers (AutoGen's Python ones included) can
/// join.
public final class AgentRuntime: Sendable {
    public struct Configuration: Sendable {
        /// The host to join (`HOST:PORT`); nil runs an embedded host.
        public var hostAddress: String?
        /// The embedded host's settings (used when ``hostAddress`` is nil).
        public var embeddedHost: AgentHost.Configuration
        /// This runtime's `client-id` (a fresh UUID by default).
        public var clientID: String
        /// How long an RPC a plugin sends waits for its answer.
        public var rpcTimeout: Duration
        /// Handler threads.
        public var workers: Int
        /// The plugin directory.
        public var pluginDirectory: String
        /// `[plugin.NAME]` settings by plugin name.
        public var pluginSettings: [String: [String: String]]
        public var maxMessageBytes: Int

        public init(
            hostAddress: String? = nil,
            embeddedHost: AgentHost.Configuration = .init(),
            clientID: String = UUID().uuidString.lowercased(),
            rpcTimeout: Duration = .seconds(60),
            workers: Int = ProcessInfo.processInfo.activeProcessorCount,
            pluginDirectory: String,
            pluginSettings: [String: [String: String]] = [:],
            maxMessageBytes: Int = 4 * 1024 * 1024
        ) {
            self.hostAddress = hostAddress
            self.embeddedHost = embeddedHost
            self.clientID = clientID
            self.rpcTimeout = rpcTimeout
            self.workers = workers
            self.pluginDirectory = pluginDirectory
            self.pluginSettings = pluginSettings
            self.maxMessageBytes = maxMessageBytes
        }
    }

    private struct State: ~Copyable {
        var embeddedHost: AgentHost?
        var connection: HostConnection?
        var plugins: [LoadedPlugin] = []
        var sweeper: Task<Void, Never>?
        var stopped = false
    }

    public let configuration: Configuration
    let logger: Logger
    let core: RuntimeCore
    let loader: PluginLoader
    private let state = Mutex(State())

    public init(configuration: Configuration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        core = RuntimeCore(workers: configuration.workers, rpcTimeout: configuration.rpcTimeout, logger: logger)
        loader = try PluginLoader(logger: logger)
    }

    /// The plugins in service.
    public var plugins: [LoadedPlugin] { state.withLock { $0.plugins } }

    /// The address of the host this runtime is connected to.
    public var hostAddress: String? { state.withLock { $0.connection?.address } }

    /// The embedded host, when the runtime runs one.
    public var embeddedHost: AgentHost? { state.withLock { $0.embeddedHost } }

    /// Connects (starting the embedded host first if configured so), loads every plugin of
    /// the directory and registers their agent types and subscriptions.
    ///
    /// A plugin that fails to load or register is refused with a log line naming the file
    /// and the reason; the others serve.
    /// - Throws: if the embedded host cannot listen or the plugin directory cannot be read.
    public func start() async throws {
        let address: String
        if let configured = configuration.hostAddress {
            address = configured
        } else {
            let host = try AgentHost(configuration: configuration.embeddedHost, logger: logger)
            state.withLock { $0.embeddedHost = host }
            address = host.address
        }
        let core = self.core
        let connection = HostConnection(
            address: address, clientID: configuration.clientID, maxMessageBytes: configuration.maxMessageBytes,
            logger: logger,
            onMessage: { core.receive($0) },
            onClose: { status in core.failOutbound(expiredBy: nil, reason: "The connection to the host closed (\(status)).") })
        core.connection = connection
        try connection.open()
        state.withLock { $0.connection = connection }
        logger.info("runtime connected", metadata: [
            "host.address": "\(address)", "client.id": "\(configuration.clientID)",
            "host.embedded": "\(configuration.hostAddress == nil)",
        ])
        let files: [String]
        do {
            files = try PluginLoader.pluginFiles(in: configuration.pluginDirectory)
        } catch {
            throw RuntimeError("cannot read the plugin directory \(configuration.pluginDirectory): \(error.localizedDescription)")
        }
        for file in files { await load(path: file) }
        let sweeper = Task.detached { [core] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(100))
                core.failOutbound(expiredBy: .now, reason: "")
            }
        }
        state.withLock { $0.sweeper = sweeper }
    }

    /// Loads one plugin file and puts it in service; logs and returns nil when refused.
    @discardableResult
    func load(path: String) async -> LoadedPlugin? {
        let taken = Set(core.servedTypes)
        let plugin: LoadedPlugin
        do {
            plugin = try loader.load(
                path: path, settings: configuration.pluginSettings, takenAgentTypes: taken,
                hostAPI: UnsafePointer(HostAPI.table))
        } catch {
            logger.error("plugin refused", metadata: [
                "plugin.path": "\(error.path)", "reason": "\(error.reason)", "code": "\(error.code)",
            ])
            return nil
        }
        guard let connection = state.withLock({ $0.connection }) else { return nil }
        var registered: [PluginAgentType] = []
        for type in plugin.agentTypes {
            do {
                try await connection.register(agentType: type.name)
                registered.append(type)
            } catch {
                logger.error("agent type refused by the host", metadata: [
                    "plugin": "\(plugin.name)", "plugin.path": "\(path)", "agent.type": "\(type.name)",
                    "error": "\(error)",
                ])
            }
        }
        do {
            try core.serve(registered)
        } catch {
            logger.error("plugin subscriptions invalid", metadata: ["plugin": "\(plugin.name)", "error": "\(error)"])
        }
        for type in registered {
            for kind in type.subscriptions {
                let subscription = Subscription(
                    id: "\(configuration.clientID)/\(type.name)/\(UUID().uuidString.lowercased())",
                    agentType: type.name, kind: kind)
                do {
                    try await connection.add(subscription)
                } catch {
                    logger.error("subscription refused by the host", metadata: [
                        "plugin": "\(plugin.name)", "agent.type": "\(type.name)", "subscription": "\(subscription)",
                        "error": "\(error)",
                    ])
                }
            }
        }
        state.withLock { $0.plugins.append(plugin) }
        logger.info("plugin loaded", metadata: [
            "plugin": "\(plugin.name)", "plugin.version": "\(plugin.version)", "plugin.path": "\(path)",
            "plugin.hash": "\(plugin.contentHash)", "agent.types": "\(registered.map(\.name))",
            "plugin.swift": "\(plugin.isSwift)",
        ])
        return plugin
    }

    /// Closes the connection, lets queued handlers finish, unloads the plugins and stops the
    /// embedded host.
    public func shutdown() async {
        let (connection, host, plugins, sweeper, first) = state.withLock { state in
            defer { state.stopped = true }
            return (state.connection, state.embeddedHost, state.plugins, state.sweeper, !state.stopped)
        }
        guard first else { return }
        sweeper?.cancel()
        await connection?.close()
        core.connection = nil
        core.workers.stop()
        core.failOutbound(expiredBy: nil, reason: "The runtime is shutting down.")
        for instance in core.routing.withLock({ Array($0.instances.values) }) {
            instance.destroyInstance()
            AgentReferences.remove(instance)
        }
        for plugin in plugins { loader.unload(plugin) }
        loader.removeShadowDirectory()
        core.resignDefault()
        await host?.shutdown()
        logger.info("runtime stopped")
    }
}

/// A runtime start-up failure, in words a user can act on.
public struct RuntimeError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
