// agentd-host: the deployable host server — what `agentd host` does, in a lean executable:
// no Foundation, no ArgumentParser, no ServiceLifecycle, and the Swift standard library linked
// statically (Package.swift), which keeps its resident memory small (README).
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import HostLauncher
import Logging

let program = "agentd-host"

let usage = """
    USAGE: agentd-host [--config FILE] [--listen HOST:PORT] [--max-message-bytes N] [--rpc-timeout SECONDS] [--log-level LEVEL] [--metrics-listen HOST:PORT]

    Runs the agents.AgentRpc host that workers connect to (the same host as `agentd host`).
    Prints one line "listening on HOST:PORT" to standard output once it serves (useful with
    --listen 127.0.0.1:0); logs go to standard error. SIGTERM or SIGINT shut it down
    gracefully: pending RPCs are answered with an error and streams are closed.

    OPTIONS:
      --config FILE           An INI file whose [host] and [log] sections configure the host
                              (options below override it): address, limits, TLS, mutual TLS,
                              authorization tokens.
      --listen HOST:PORT      HOST:PORT to listen on (port 0 picks a free port).
                              Default: 127.0.0.1:50051.
      --max-message-bytes N   The largest message a worker may send, in bytes. Default: 4194304.
      --rpc-timeout SECONDS   Seconds a caller waits for an RPC's answer before the host answers
                              with an error. Default: 60.
      --log-level LEVEL       Log level: trace, debug, info, notice, warning, error, critical.
                              Default: info.
      --metrics-listen HOST:PORT
                              Serve Prometheus metrics (GET /metrics) on HOST:PORT and print
                              "metrics on http://HOST:PORT/metrics". Default: off.
      --version               Print the version and exit.
      -h, --help              Show this help.

    Exit status: 0 after a graceful shutdown; 1 if it cannot listen; 2 if the INI file is bad;
    64 for a bad command line.
    """

/// A bad command line: the message, then a pointer to --help; exit status 64 (EX_USAGE, as
/// ArgumentParser's for `agentd host`).
func usageError(_ message: String) -> Never {
    HostLauncher.printError("\(program): \(message)\nUsage: agentd-host [--config FILE] [--listen HOST:PORT] [--max-message-bytes N] [--rpc-timeout SECONDS] [--log-level LEVEL] [--metrics-listen HOST:PORT]\n  See 'agentd-host --help' for more.")
    exit(64)
}

/// The options of `arguments` (without the program name): `--name value` or `--name=value`.
func parse(_ arguments: [String]) -> HostLauncher.Options {
    var options = HostLauncher.Options()
    var index = 0
    while index < arguments.count {
        let argument = arguments[index]
        index += 1
        if argument == "-h" || argument == "--help" {
            HostLauncher.announce(usage)
            exit(0)
        }
        if argument == "--version" {
            HostLauncher.announce(AgentdVersion.string)
            exit(0)
        }
        var name = argument
        var inlineValue: String?
        if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
            name = String(argument[..<equals])
            inlineValue = String(argument[argument.index(after: equals)...])
        }
        guard ["--config", "--listen", "--max-message-bytes", "--rpc-timeout", "--log-level", "--metrics-listen"].contains(name) else {
            usageError(argument.hasPrefix("-") ? "unknown option '\(name)'" : "unexpected argument '\(argument)'")
        }
        let value: String
        if let inlineValue {
            value = inlineValue
        } else if index < arguments.count, !arguments[index].hasPrefix("--") {
            value = arguments[index]
            index += 1
        } else {
            usageError("\(name) needs a value")
        }
        switch name {
        case "--config":
            options.config = value
        case "--listen":
            options.listen = value
        case "--metrics-listen":
            options.metricsListen = value
        case "--max-message-bytes":
            guard let number = Int(value) else { usageError("--max-message-bytes: '\(value)' is not a whole number of bytes") }
            options.maxMessageBytes = number
        case "--rpc-timeout":
            guard let seconds = Double(value) else { usageError("--rpc-timeout: '\(value)' is not a number of seconds") }
            options.rpcTimeout = seconds
        default:  // --log-level
            guard let level = Logger.Level(rawValue: value) else {
                usageError("--log-level: '\(value)' is not one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            options.logLevel = level
        }
    }
    if let problem = options.problem { usageError(problem) }
    return options
}

let options = parse(Array(CommandLine.arguments.dropFirst()))
// Synchronous (see HostLauncher.runBlocking): the host runs on its own threads.
exit(HostLauncher.runBlocking(options, program: program))
