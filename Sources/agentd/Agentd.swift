import ArgumentParser
import HostLauncher

@main
struct Agentd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agentd",
        abstract: "An AutoGen-compatible agent host and plugin runtime.",
        version: AgentdVersion.string,
        subcommands: [
            HostCommand.self, RunCommand.self, SendCommand.self, PublishCommand.self, StateCommand.self, StatusCommand.self, PluginCommand.self,
        ]
    )
}
