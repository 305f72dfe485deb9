import AgentRuntime
import ArgumentParser
import Foundation
import Logging

/// `agentd plugin`: tools for plugin files.
struct PluginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugin",
        abstract: "Tools for agent plugin files.",
        subcommands: [PluginCheckCommand.self]
    )
}

/// `agentd plugin check FILE`: loads a plugin the way the runtime does, in this process, and
/// reports what it offers — or why it would be refused. The runtime runs it as a probe before
/// loading a plugin, so that one that crashes while loading takes down only the probe.
struct PluginCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Load a plugin in a separate process and report its agent types, or why it is refused."
    )

    @Argument(help: "The plugin file (.so).")
    var file: String

    @Flag(help: "Print only the verdict line (what the runtime reads).")
    var probe = false

    func run() throws {
        var logger = Logger(label: "agentd.plugin-check")
        logger.logLevel = probe ? .critical : .info
        let loader = try PluginLoader(logger: logger)
        defer { loader.removeShadowDirectory() }
        let plugin: LoadedPlugin
        do {
            plugin = try loader.load(path: file, settings: [:], takenAgentTypes: [])
        } catch {
            if !probe { FileHandle.standardError.write(Data("\(error)\n".utf8)) }
            print("refused \(error.reason)")
            throw ExitCode(1)
        }
        if !probe {
            print("\(plugin.name) \(plugin.version) (\(plugin.isSwift ? "Swift" : "C"), content hash \(plugin.contentHash))")
            for type in plugin.agentTypes {
                let subscriptions = type.subscriptions.map { kind -> String in
                    switch kind {
                    case .topicType(let topic): return "topic \(topic)"
                    case .topicTypePrefix(let prefix): return "topic prefix \(prefix)"
                    }
                }
                print("  agent type \(type.name): handles \(type.messageTypes.joined(separator: ", "))"
                      + (subscriptions.isEmpty ? "" : "; subscribed to \(subscriptions.joined(separator: ", "))"))
            }
        }
        print("ok \(plugin.contentHash)")
    }
}
