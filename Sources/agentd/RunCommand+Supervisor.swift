import AgentConfig
import AgentHost
import AgentRuntime
import ArgumentParser
import Foundation
import HostLauncher
import Logging
import RuntimeSupervisor

/// `agentd run` split in two processes (``RuntimeSupervisor``): the supervisor's side, and the
/// runtime child's (this executable again, with the hidden options the supervisor gives it).
extension RunCommand {
    /// `agentd run` as a supervisor: the embedded host here, the runtime in a child process
    /// (this executable with the hidden child options), restarted when it dies.
    func supervise(
        settings: RuntimeConfiguration, hostAddress: String?, embedded: AgentHost.Configuration,
        configuration: AgentRuntime.Configuration, levels: LogLevelControl, logger: Logger
    ) async throws {
        let executable = Self.executablePath
        let (config, plugins, host) = (self.config, self.plugins, self.host)
        var supervision = RuntimeSupervisor.Configuration(
            executable: executable,
            arguments: { launch in
                var arguments = ["run", "--config", config, "--runtime-child", "--client-id", launch.clientID,
                                 "--crash-record-fd", "\(launch.crashRecordFD)", "--ready-fd", "\(launch.readyFD)",
                                 "--supervisor-pid", "\(launch.supervisorPID)"]
                if let plugins { arguments += ["--plugins", plugins] }
                if let metrics = launch.metricsListen { arguments += ["--child-metrics-listen", metrics] }
                if let address = launch.embeddedHostAddress {
                    arguments += ["--embedded-host", address]
                } else if let host {
                    arguments += ["--host", host]
                }
                for event in launch.skippedEvents { arguments += ["--skip-event", event] }
                for disabled in launch.disabledPlugins {
                    arguments += ["--disabled-plugin", "\(disabled.contentHash)=\(disabled.reason)"]
                }
                return arguments
            },
            clientID: settings.clientID,
            embeddedHost: hostAddress == nil ? embedded : nil,
            childConnectsWithTLS: configuration.hostCredentials.isTLS,
            metricsListen: configuration.metricsListen,
            shutdownGracePeriod: configuration.shutdownGracePeriod)
        supervision.childJoinsOverUnixSocket = !runtimeOverTCP
        let supervisor = RuntimeSupervisor(configuration: supervision, logger: logger)
        let path = self.config
        let status = await supervisor.run(hangup: {
            // The supervisor's own log level; the child re-reads the rest.
            guard let settings = try? RuntimeConfiguration.load(path: path),
                  let level = Logger.Level(rawValue: settings.logLevel) else { return }
            levels.level = level
        })
        if status != 0 { throw ExitCode(status) }
    }

    /// The runtime child's configuration, as the supervisor's hidden options say; returns
    /// how it announces its `metrics on` and `ready` lines (to the supervisor, on --ready-fd).
    func prepareRuntimeChild(
        _ configuration: inout AgentRuntime.Configuration, settings: RuntimeConfiguration, logger: Logger
    ) throws -> @Sendable (String) -> Void {
        do {
            guard try SupervisedRuntime.prepare(supervisorPID: supervisorPID ?? getppid(), crashRecordFD: crashRecordFD) else {
                throw ExitCode(1)  // the supervisor is gone already
            }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            logger.critical("cannot start the runtime", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
        if let embeddedHost {
            configuration.hostAddress = embeddedHost
            configuration.hostIsSupervisorsEmbeddedHost = true
            configuration.authToken = settings.authToken ?? settings.host.authTokens.first
        }
        if let clientID { configuration.clientID = clientID }
        for entry in disabledPlugin {
            guard let equals = entry.firstIndex(of: "=") else { continue }
            configuration.disabledPlugins[String(entry[..<equals])] = String(entry[entry.index(after: equals)...])
        }
        if let childMetricsListen { configuration.metricsListen = childMetricsListen }
        configuration.skippedEvents = Set(skipEvent)
        let readyFD = self.readyFD
        return { line in
            guard let readyFD else { return }
            var text = line + "\n"
            text.withUTF8 { bytes in _ = write(readyFD, bytes.baseAddress, bytes.count) }
        }
    }
}
