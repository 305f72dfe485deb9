#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import AgentCluster
import AgentConfig
import AgentHost
import GRPCTransport
import Logging
import Synchronization

/// The host command, shared by `agentd host` (ArgumentParser) and `agentd-host` (the lean
/// deployable host, options parsed by hand): INI settings plus command-line overrides → the
/// host's configuration, the logger, start, the `listening on HOST:PORT` line, and a graceful
/// shutdown on SIGTERM or SIGINT. Foundation-free, so that `agentd-host` links no Foundation.
public enum HostLauncher {
    /// The command line's options; `nil` leaves the INI file's value (or the default).
    public struct Options: Sendable {
        public var config: String?
        public var listen: String?
        public var maxMessageBytes: Int?
        /// Seconds.
        public var rpcTimeout: Double?
        public var logLevel: Logger.Level?
        /// `HOST:PORT` to serve Prometheus metrics on (overrides `[host] metrics_listen`).
        public var metricsListen: String?

        public init(
            config: String? = nil, listen: String? = nil, maxMessageBytes: Int? = nil,
            rpcTimeout: Double? = nil, logLevel: Logger.Level? = nil, metricsListen: String? = nil
        ) {
            self.metricsListen = metricsListen
            self.config = config
            self.listen = listen
            self.maxMessageBytes = maxMessageBytes
            self.rpcTimeout = rpcTimeout
            self.logLevel = logLevel
        }

        /// What is wrong with the values given, if anything (the message names the option).
        public var problem: String? {
            if let maxMessageBytes {
                if maxMessageBytes <= 0 { return "--max-message-bytes must be positive" }
                if maxMessageBytes > HostSettings.largestMaxMessageBytes {
                    return "--max-message-bytes must be at most \(HostSettings.largestMaxMessageBytes)"
                }
            }
            if let metricsListen {
                do throws(ConfigurationError) {
                    _ = try HostAndPort(parsing: metricsListen)
                } catch {
                    return "--metrics-listen: \(error.message)"
                }
            }
            if let rpcTimeout {
                if !(rpcTimeout > 0) { return "--rpc-timeout must be positive" }
                if !(rpcTimeout <= Self.maximumRPCTimeout) {
                    return "--rpc-timeout must be at most \(Int(Self.maximumRPCTimeout)) seconds"
                }
            }
            return nil
        }

        /// About 31 years: anything longer means "never" and would overflow the conversion.
        static let maximumRPCTimeout = 1e9
    }

    /// Why ``start(_:program:)`` did not start the host: the exit status to end with (what
    /// was wrong has been printed or logged already).
    public struct StartFailure: Error {
        public let exitStatus: Int32
        /// The INI file is bad: the message, prefixed with the program's name, names the file,
        /// the line and the key.
        public static let configuration = StartFailure(exitStatus: 2)
        /// The host cannot listen (the address is taken, or not an address), or cannot join its
        /// cluster (NATS is not there): logged as critical.
        public static let cannotListen = StartFailure(exitStatus: 1)
    }

    /// Runs the host until SIGTERM or SIGINT, then shuts it down gracefully (every pending RPC
    /// is answered with an error, streams are closed). Returns the exit status: 0 after a
    /// graceful shutdown, otherwise ``StartFailure``'s. `options` must have no
    /// ``Options/problem``.
    public static func run(_ options: Options, program: String) async -> Int32 {
        let host: AgentHost
        do {
            host = try await start(options, program: program)
        } catch {
            return error.exitStatus
        }
        await ShutdownSignal.wait()
        ServiceNotification.stopping()
        await host.shutdown()
        return 0
    }

    /// ``run(_:program:)`` for a synchronous `main`, which waits on the calling thread. An
    /// `async` main would end its thread with `pthread_exit` (in `dispatch_main`), whose forced
    /// unwind reads the binary's whole unwind table: a few hundred KiB more resident memory.
    public static func runBlocking(_ options: Options, program: String) -> Int32 {
        let started = Latch()
        let outcome = Mutex<Result<AgentHost, StartFailure>?>(nil)
        Task.detached {
            let result: Result<AgentHost, StartFailure>
            do throws(StartFailure) {
                result = .success(try await start(options, program: program))
            } catch {
                result = .failure(error)
            }
            outcome.withLock { $0 = result }
            started.open()
        }
        started.wait()
        let host: AgentHost
        switch outcome.withLock({ $0 })! {
        case .success(let started): host = started
        case .failure(let failure): return failure.exitStatus
        }
        ShutdownSignal.waitBlocking()
        ServiceNotification.stopping()
        let stopped = Latch()
        Task.detached {
            await host.shutdown()
            stopped.open()
        }
        stopped.wait()
        return 0
    }

    /// Loads the settings, sets up logging, puts the SIGTERM/SIGINT handlers in place, starts
    /// the host, prints `listening on HOST:PORT` and tells systemd it is ready (`READY=1`, when
    /// started as a `Type=notify` service: ``ServiceNotification``).
    public static func start(_ options: Options, program: String) async throws(StartFailure) -> AgentHost {
        var settings = RuntimeConfiguration()
        if let path = options.config {
            do {
                settings = try RuntimeConfiguration.load(path: path)
            } catch {
                printError("\(program): \(error)")
                throw .configuration
            }
        }
        let logger = makeLogger(
            label: "agentd.host", level: options.logLevel ?? Logger.Level(rawValue: settings.logLevel) ?? .info,
            format: settings.logFormat)
        let listen = options.listen ?? settings.host.listen
        if let metricsListen = options.metricsListen { settings.host.metricsListen = metricsListen }
        let configuration = self.configuration(
            settings.host, cluster: settings.cluster, listen: listen, maxMessageBytes: options.maxMessageBytes,
            rpcTimeout: options.rpcTimeout.map { .milliseconds(Int64($0 * 1000)) })
        // Before the host serves (and so before the line scripts wait for): a signal from then
        // on shuts it down gracefully.
        ShutdownSignal.install()
        let host: AgentHost
        do {
            host = try await AgentHost.start(configuration: configuration, logger: logger)
        } catch {
            logger.critical("cannot start the host", metadata: ["host.address": "\(listen)", "error": "\(error)"])
            throw .cannotListen
        }
        announce("listening on \(host.address)")
        if let metrics = host.metricsAddress { announce("metrics on http://\(metrics)/metrics") }
        ServiceNotification.ready(status: "listening on \(host.address)")
        return host
    }

    /// The host's configuration: `settings` (an INI file's `[host]` section), `listen`,
    /// `maxMessageBytes` and `rpcTimeout` overriding it when given.
    public static func configuration(
        _ settings: HostSettings, cluster: ClusterSettings? = nil, listen: String, maxMessageBytes: Int? = nil,
        rpcTimeout: Duration? = nil
    ) -> AgentHost.Configuration {
        AgentHost.Configuration(
            listen: listen, maxMessageBytes: maxMessageBytes ?? settings.maxMessageBytes,
            rpcTimeout: rpcTimeout ?? settings.rpcTimeout,
            queueLimits: .init(messages: settings.queueLimitMessages, bytes: settings.queueLimitBytes),
            outboundBudgetBytes: settings.outboundBudgetBytes,
            credentials: serverCredentials(settings), authTokens: settings.authTokens,
            cluster: cluster.map(clusterConfiguration), metricsListen: settings.metricsListen,
            lateWindow: settings.lateWindow, lateWindowBytes: settings.lateWindowBytes)
    }

    /// The cluster to join, as `[cluster]` says.
    public static func clusterConfiguration(_ settings: ClusterSettings) -> ClusterConfiguration {
        var nats = NATSConnection.Options(servers: settings.nats)
        if settings.tlsCA != nil || settings.tlsCertificate != nil {
            nats.tls = .init(caFile: settings.tlsCA, certificateFile: settings.tlsCertificate, privateKeyFile: settings.tlsKey)
        }
        nats.token = settings.token
        nats.credentialsFile = settings.credentialsFile
        return ClusterConfiguration(nats: nats, name: settings.name, lease: settings.lease)
    }

    /// Plaintext, TLS, or mutual TLS, as `[host] tls_*` say.
    public static func serverCredentials(_ settings: HostSettings) -> ServerCredentials {
        guard let certificate = settings.tlsCertificate, let key = settings.tlsKey else { return .insecure }
        return .tls(
            certificateChain: certificate.contents, privateKey: key.contents,
            clientCertificateAuthority: settings.tlsClientCA?.contents)
    }

    /// The root logger: structured lines on standard error, as text or as JSON lines
    /// (``JSONLogHandler``; `[log] format`). Bootstraps the logging system, so once per process.
    /// With `levelControl`, every logger's level is the control's, changeable while the process
    /// runs (its level is set to `level` here).
    public static func makeLogger(
        label: String, level: Logger.Level, format: LogFormat = .text, levelControl: LogLevelControl? = nil
    ) -> Logger {
        levelControl?.level = level
        LoggingSystem.bootstrap { label -> any LogHandler in
            var handler: any LogHandler
            switch format {
            case .text: handler = StreamLogHandler.standardError(label: label)
            case .json: handler = JSONLogHandler.standardError(label: label)
            }
            guard let levelControl else {
                handler.logLevel = level
                return handler
            }
            return ControlledLevelLogHandler(base: handler, control: levelControl)
        }
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }

    /// Prints a line to standard output at once (not buffered), for scripts that wait for it.
    public static func announce(_ line: String) {
        writeAll(1, line + "\n")
    }

    /// Prints a line to standard error at once.
    public static func printError(_ line: String) {
        writeAll(2, line + "\n")
    }

    private static func writeAll(_ fd: Int32, _ text: String) {
        var text = text
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += written
            }
        }
    }
}
