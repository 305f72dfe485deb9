import AgentConfig
import AgentHost
import AgentRuntime
import ArgumentParser
import Foundation
import HostLauncher
import Logging
import ServiceLifecycle
import UnixSignals

/// `agentd run`: the runtime that loads agent plugins.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Load the agent plugins of a directory and serve them through a host.",
        discussion: """
            Reads the INI file (see Config/agentd.ini). Without [runtime] host it starts an \
            embedded host listening on [host] listen, which other workers (AutoGen's Python \
            ones too) can join. The plugins run in a child process of this one, restarted at \
            once when a plugin crashes (a plugin that crashes 3 times within a minute is \
            disabled until a new version is dropped in); --in-process runs them in this process. \
            Prints "listening on HOST:PORT" (embedded host) and "ready" once the plugins are \
            loaded (and READY=1 to systemd's $NOTIFY_SOCKET). SIGTERM or SIGINT shut it down \
            gracefully. SIGHUP re-reads the INI file — [log] level, [runtime] mailbox_limit and \
            rpc_timeout, and [plugin.NAME] settings apply at once; other changed keys are logged \
            as needing a restart — and rescans the plugin directory.
            """
    )

    @Option(name: .long, help: "The INI configuration file.")
    var config: String

    @Option(help: "Override [runtime] host: join this host (or the first of HOST:PORT,HOST:PORT that answers, moving on to the next when it is lost) instead of running an embedded one.")
    var host: String?

    @Option(help: "Override [host] listen for the embedded host.")
    var listen: String?

    @Option(help: "Override [plugins] directory.")
    var plugins: String?

    @Flag(help: "Run the runtime in this process, as one process with the embedded host (no crash isolation: a plugin that crashes ends everything).")
    var inProcess = false

    // The runtime child's options, given by the supervisor (see RuntimeSupervisor).
    @Flag(help: .hidden) var runtimeChild = false
    @Option(help: .hidden) var embeddedHost: String?
    @Option(help: .hidden) var clientID: String?
    @Option(help: .hidden) var crashRecordFD: Int32?
    @Option(help: .hidden) var readyFD: Int32?
    @Option(help: .hidden) var supervisorPID: Int32?
    @Option(help: .hidden) var childMetricsListen: String?
    /// The runtime process joins the embedded host over loopback TCP, not its unix socket
    /// (Benchmarks/crash-isolation's comparison).
    @Flag(help: .hidden) var runtimeOverTCP = false
    /// `HASH=REASON`, one per disabled plugin version.
    @Option(help: .hidden) var disabledPlugin: [String] = []
    /// An event id never to hand to a handler (one whose handler crashed an earlier runtime).
    @Option(help: .hidden) var skipEvent: [String] = []

    func run() async throws {
        let document: IniDocument
        let settings: RuntimeConfiguration
        do {
            document = try IniDocument.load(path: config)
            settings = try RuntimeConfiguration(document: document)
        } catch {
            FileHandle.standardError.write(Data("agentd: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let directory: String
        if let plugins {
            directory = plugins
        } else {
            do {
                directory = try settings.requiredPluginDirectory()
            } catch {
                FileHandle.standardError.write(Data("agentd: \(error)\n".utf8))
                throw ExitCode(2)
            }
        }
        let hostAddress = host ?? settings.hostAddress
        if hostAddress == nil {
            do {
                try settings.checkEmbeddedHostConnection()
            } catch {
                FileHandle.standardError.write(Data("agentd: \(error)\n".utf8))
                throw ExitCode(2)
            }
        }
        let levels = LogLevelControl(.info)
        let logger = HostLauncher.makeLogger(
            label: "agentd.run", level: Logger.Level(rawValue: settings.logLevel) ?? .info, format: settings.logFormat,
            levelControl: levels)
        let embedded = HostLauncher.configuration(settings.host, cluster: settings.cluster, listen: listen ?? settings.host.listen)
        var configuration = AgentRuntime.Configuration(
            settings, pluginDirectory: directory, embeddedHost: embedded, hostAddress: hostAddress,
            probe: PluginProbe(executable: Self.executablePath))
        if !runtimeChild && !inProcess {
            try await supervise(settings: settings, hostAddress: hostAddress, embedded: embedded, configuration: configuration,
                                levels: levels, logger: logger)
            return
        }
        // A supervised runtime says `metrics on` and `ready` to its supervisor.
        var announce: @Sendable (String) -> Void = { HostLauncher.announce($0) }
        if runtimeChild { announce = try prepareRuntimeChild(&configuration, settings: settings, logger: logger) }
        let runtime = try AgentRuntime(configuration: configuration, logger: logger)
        // The runtime starts inside the service group, so SIGTERM/SIGINT are handled
        // gracefully from the first moment (also while plugins load).
        let group = ServiceGroup(
            services: [
                RuntimeService(
                    runtime: runtime, logger: logger,
                    hangup: HangupReload(path: config, runtime: runtime, levels: levels, logger: logger, started: document),
                    announce: announce, notifiesSystemd: !runtimeChild),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        try await group.run()
    }
}

extension RunCommand {
    /// This very executable, which probes plugins as `agentd plugin check`.
    static var executablePath: String {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
    }
}

/// Runs the runtime until a graceful shutdown is requested; SIGHUP re-reads the INI file
/// (``HangupReload``) and rescans the plugin directory.
struct RuntimeService: Service, CustomStringConvertible {
    let runtime: AgentRuntime
    let logger: Logger
    let hangup: HangupReload
    /// Says `metrics on ...` and `ready: ...`: on standard output (then `ready` to systemd too),
    /// or, in a supervised runtime, to the supervisor.
    let announce: @Sendable (String) -> Void
    /// Whether this process tells systemd (`READY=1`, `STOPPING=1`); a supervised runtime's
    /// supervisor does.
    let notifiesSystemd: Bool

    /// How ServiceLifecycle's logs name it (not a dump of every field).
    var description: String { "RuntimeService" }

    func run() async throws {
        let runtime = self.runtime
        do {
            try await runtime.start()
        } catch {
            logger.critical("cannot start the runtime", metadata: ["error": "\(error)"])
            await runtime.shutdown()
            throw ExitCode(1)
        }
        if let embeddedHost = runtime.embeddedHost {
            HostLauncher.announce("listening on \(embeddedHost.address)")
        }
        if let metrics = runtime.metricsAddress { announce("metrics on http://\(metrics)/metrics") }
        let ready = "ready: \(runtime.plugins.map { "\($0.name) \($0.version)" }.joined(separator: ", "))"
        announce(ready)
        if notifiesSystemd { ServiceNotification.ready(status: ready) }
        let hangup = self.hangup
        let hangups = Task {
            var applied = hangup.started
            for await _ in await UnixSignalsSequence(trapping: .sighup) {
                applied = await hangup.reload(after: applied)
            }
        }
        try? await gracefulShutdown()
        if notifiesSystemd { ServiceNotification.stopping() }
        hangups.cancel()
        await runtime.shutdown()
    }
}
