import AgentConfig
import AgentRuntime
import HostLauncher
import Logging

/// What SIGHUP does to `agentd run`: re-reads the INI file and applies what can change while
/// the runtime serves (``ConfigurationReload``: `[log] level`, `[runtime] mailbox_limit` and
/// `rpc_timeout`, `[plugin.NAME]` settings), logs what changed and names each changed key that
/// needs a restart; then rescans the plugin directory. A file with an error changes nothing
/// (logged with the file, line and key), and the rescan still happens.
struct HangupReload: Sendable {
    let path: String
    let runtime: AgentRuntime
    let levels: LogLevelControl
    let logger: Logger
    /// The file as the runtime started with it: keys that need a restart are compared with it,
    /// so that each SIGHUP names them again until a restart.
    let started: IniDocument

    /// Re-reads the file and applies it, compared with `applied` (the file as last applied),
    /// then rescans the plugins.
    /// - Returns: the file as now applied (unchanged when it has an error).
    func reload(after applied: IniDocument) async -> IniDocument {
        let document: IniDocument
        let settings: RuntimeConfiguration
        do {
            document = try IniDocument.load(path: path)
            settings = try RuntimeConfiguration(document: document)
        } catch {
            logger.error("configuration not reloaded: the file has an error; the runtime keeps its settings", metadata: [
                "config.path": "\(path)", "error": "\(error)",
            ])
            await runtime.rescan()
            return applied
        }
        let live = ConfigurationReload(from: applied, to: document)
        let sinceStart = ConfigurationReload(from: started, to: document)
        if let level = Logger.Level(rawValue: settings.logLevel) { levels.level = level }
        let plugins = await runtime.reconfigure(AgentRuntime.LiveSettings(settings))
        if live.applied.isEmpty {
            logger.info("configuration re-read: nothing to apply", metadata: ["config.path": "\(path)"])
        } else {
            var metadata: Logger.Metadata = ["config.path": "\(path)", "config.changed": "\(live.applied.joined(separator: ", "))"]
            if !plugins.isEmpty {
                metadata["plugins.changed"] = "\(plugins.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value.joined(separator: ", "))" }.joined(separator: "; "))"
            }
            logger.notice("configuration reloaded", metadata: metadata)
        }
        if !sinceStart.needsRestart.isEmpty {
            logger.warning("configuration changes need a restart to take effect", metadata: [
                "config.path": "\(path)", "config.restart": "\(sinceStart.needsRestart.joined(separator: ", "))",
            ])
        }
        await runtime.rescan()
        return document
    }
}
