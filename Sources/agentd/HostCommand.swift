import AgentConfig
import AgentHost
import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle

/// `agentd host`: serves `agents.AgentRpc` for AutoGen workers and our runtimes.
struct HostCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "host",
        abstract: "Run the agents.AgentRpc host that workers connect to.",
        discussion: """
            Prints one line "listening on HOST:PORT" to standard output once it serves (useful \
            with --listen 127.0.0.1:0); logs go to standard error. SIGTERM or SIGINT shut it \
            down gracefully: pending RPCs are answered with an error and streams are closed.
            """
    )

    @Option(help: "An INI file whose [host] and [log] sections configure the host (options below override it): address, limits, TLS, mutual TLS, authorization tokens.")
    var config: String?

    @Option(help: "HOST:PORT to listen on (port 0 picks a free port). Default: 127.0.0.1:50051.")
    var listen: String?

    @Option(help: "The largest message a worker may send, in bytes. Default: 4194304.")
    var maxMessageBytes: Int?

    @Option(help: "Seconds a caller waits for an RPC's answer before the host answers with an error. Default: 60.")
    var rpcTimeout: Double?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical. Default: info.")
    var logLevel: Logger.Level?

    func validate() throws {
        if let maxMessageBytes, maxMessageBytes <= 0 { throw ValidationError("--max-message-bytes must be positive") }
        if let rpcTimeout, rpcTimeout <= 0 { throw ValidationError("--rpc-timeout must be positive") }
    }

    func run() async throws {
        var settings = RuntimeConfiguration()
        if let config {
            do {
                settings = try RuntimeConfiguration.load(path: config)
            } catch {
                FileHandle.standardError.write(Data("agentd: \(error)\n".utf8))
                throw ExitCode(2)
            }
        }
        let logger = makeLogger(
            label: "agentd.host", level: logLevel ?? Logger.Level(rawValue: settings.logLevel) ?? .info)
        let listen = self.listen ?? settings.host.listen
        let configuration = settings.host.hostConfiguration(
            listen: listen, maxMessageBytes: maxMessageBytes,
            rpcTimeout: rpcTimeout.map { .milliseconds(Int64($0 * 1000)) })
        let host: AgentHost
        do {
            host = try AgentHost(configuration: configuration, logger: logger)
        } catch {
            logger.critical("cannot start the host", metadata: ["host.address": "\(listen)", "error": "\(error)"])
            throw ExitCode(1)
        }
        let group = ServiceGroup(
            services: [HostService(host: host)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        try await group.run()
    }
}

/// Runs the host until a graceful shutdown is requested.
struct HostService: Service {
    let host: AgentHost

    func run() async throws {
        // Announced from inside the service group: its signal handlers are in place by now.
        announce("listening on \(host.address)")
        try? await gracefulShutdown()
        await host.shutdown()
    }
}

/// Prints a line to standard output at once (not buffered), for scripts that wait for it.
func announce(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// The root logger: structured lines on standard error.
func makeLogger(label: String, level: Logger.Level) -> Logger {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return handler
    }
    var logger = Logger(label: label)
    logger.logLevel = level
    return logger
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
