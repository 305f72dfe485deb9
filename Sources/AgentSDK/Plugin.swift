import AgentPluginABI

/// The runtime's host API table, as the plugin entry receives it (`const agentd_host_api *`).
/// Opaque to plugin authors: pass it on to ``Plugin/export(_:_:)``.
public typealias HostAPI = UnsafePointer<agentd_host_api>?

/// The loaded plugin as the runtime knows it (`agentd_plugin_ref *`). Opaque to plugin authors:
/// pass it on to ``Plugin/export(_:_:)``.
public typealias PluginHandle = OpaquePointer?

/// What the plugin entry returns (`const agentd_plugin *`): built by ``Plugin/export(_:_:)``.
public typealias PluginDescriptor = UnsafePointer<agentd_plugin>?

/// A Swift agent plugin: its name, version and agent types.
///
/// A plugin is a dynamic library product whose one exported symbol, `agentd_plugin_entry`, the
/// runtime calls when it loads the library. The SDK cannot export that symbol for you; write
/// this one declaration in the plugin's module, and nothing else touches the C ABI:
///
/// ```swift
/// import AgentSDK
///
/// @_cdecl("agentd_plugin_entry")
/// public func agentdPluginEntry(_ host: HostAPI, _ plugin: PluginHandle) -> PluginDescriptor {
///     Plugin(name: "greeter-plugin", version: "1.0.0", agents: [Greeter.self]).export(host, plugin)
/// }
/// ```
///
/// Settings for the plugin go in the `[plugin.NAME]` section of the runtime's INI file (see
/// ``AgentContext/setting(_:)``).
public struct Plugin {
    /// The plugin's name: its settings section is `[plugin.NAME]`.
    public var name: String
    /// The plugin's version, for logs and `agentd plugin check`.
    public var version: String
    /// The agent types the plugin offers.
    public var agents: [any Agent.Type]
    /// How handlers' tasks start (``HandlerStart/immediate`` unless a benchmark says otherwise;
    /// SPI for Benchmarks/SDKBench, which compares the two).
    @_spi(Benchmarks) public var handlerStart = HandlerStart.immediate

    /// - Parameters:
    ///   - name: The plugin's name; its settings section is `[plugin.NAME]`.
    ///   - version: The plugin's version.
    ///   - agents: The agent types; each type name must be unique across every loaded plugin.
    public init(name: String, version: String, agents: [any Agent.Type]) {
        self.name = name
        self.version = version
        self.agents = agents
    }

    /// Builds the C descriptor the runtime reads: the plugin entry's return value.
    ///
    /// Collects every agent type's handlers and subscriptions and lays them out as the ABI's
    /// tables, in memory that stays valid for as long as the library is loaded. If something
    /// is wrong (a duplicate agent type, an invalid name, a handler registered twice, a runtime
    /// too old for this SDK), it logs why through the runtime and returns nil, and the runtime
    /// refuses the plugin.
    ///
    /// - Parameters:
    ///   - host: The entry's first argument.
    ///   - plugin: The entry's second argument.
    /// - Returns: The descriptor, or nil when the plugin cannot start.
    public func export(_ host: HostAPI, _ plugin: PluginHandle) -> PluginDescriptor {
        guard let host else { return nil }
        guard let functions = HostFunctions(api: host, plugin: plugin, pluginName: name) else {
            let api = host.pointee
            HostFunctions.logRefusal(
                api: host, plugin: plugin,
                "plugin \(name) \(version) cannot start: the runtime offers plugin ABI \(api.abi_major).\(api.abi_minor) "
                    + "(host API of \(api.size) bytes) and this Swift SDK needs \(AGENTD_ABI_MAJOR).0 "
                    + "with every host function")
            return nil
        }
        var problems = PluginValidation.problems(name: name, version: version)
        var bindings: [AgentTypeBinding] = []
        for agent in agents {
            let (binding, registryProblems) = AgentTypeBinding.make(agent, host: functions, start: handlerStart)
            bindings.append(binding)
            problems += registryProblems
        }
        problems += PluginValidation.problems(of: bindings)
        guard problems.isEmpty else {
            functions.log(
                agent: nil, level: .error,
                "plugin \(name) \(version) cannot start: " + problems.joined(separator: "; "))
            return nil
        }
        return PluginDescriptorLayout.make(name: name, version: version, agentTypes: bindings)
    }
}
