import ArgumentParser
import HostLauncher
import Logging

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

    @Option(help: "HOST:PORT to serve Prometheus metrics on (GET /metrics). Default: off ([host] metrics_listen).")
    var metricsListen: String?

    func validate() throws {
        if let problem = options.problem { throw ValidationError(problem) }
    }

    private var options: HostLauncher.Options {
        HostLauncher.Options(
            config: config, listen: listen, maxMessageBytes: maxMessageBytes, rpcTimeout: rpcTimeout,
            logLevel: logLevel, metricsListen: metricsListen)
    }

    /// What agentd-host runs too (Sources/HostLauncher): settings, start, shutdown on a signal.
    func run() async throws {
        let status = await HostLauncher.run(options, program: "agentd")
        if status != 0 { throw ExitCode(status) }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
