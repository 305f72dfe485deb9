#if canImport(Glibc)
import Glibc
#endif
import AgentCore
import AgentHost
import AgentMetrics
import AgentRuntime
import Foundation
import GRPCTransport
import HostLauncher
import Logging
import Synchronization
import UnixSignals

/// `agentd run` as a supervisor: it owns the embedded host (when no external host is
/// configured) and runs the runtime — the process that loads the plugins — as a child process
/// of the same binary, so that a plugin crashing in a handler takes down only that child.
///
/// - The child is restarted at once when it dies after having served (with a growing delay
///   while it keeps dying before it is ready), re-registers, and its agents resume from their
///   checkpoints.
/// - A shared crash record (``CrashRecord``) says which message each handler thread of the
///   child was handling and which thread a fatal signal hit. With the embedded host, the RPC
///   whose handler crashed is answered with an error naming the plugin and the signal, and the
///   child's other unanswered RPCs with one saying that the runtime restarted; neither is
///   redelivered. With an external host, that host answers its own disconnect error, and the
///   crash is logged here.
/// - A plugin version that crashes ``Configuration/crashLimit`` times within
///   ``Configuration/crashWindow`` is disabled (``CrashLedger``): each new child registers its
///   types and answers every RPC to them with an error saying so, until a new version (another
///   content hash) is dropped in.
/// - SIGTERM/SIGINT go to the child, which shuts down gracefully; it is SIGKILLed if it has not
///   ended within its grace period plus ``Configuration/shutdownMargin``; then the host stops.
///   SIGHUP goes to the child (and to ``run(hangup:)``'s closure, for the supervisor's own log
///   level).
public final class RuntimeSupervisor: Sendable {
    public struct Configuration: Sendable {
        /// This very executable (run as the child).
        public var executable: String
        /// The child's arguments (after argv[0]) for one launch.
        public var arguments: @Sendable (Launch) -> [String]
        /// `[runtime] client_id`: every child uses it; nil: a fresh one per child.
        public var clientID: String?
        /// The embedded host to run here; nil: the child joins an external host.
        public var embeddedHost: AgentHost.Configuration?
        /// Whether the child connects to the embedded host with TLS.
        public var childConnectsWithTLS: Bool
        /// The runtime process joins the embedded host over a unix socket (when the host is
        /// plaintext); false: over loopback TCP (Benchmarks/crash-isolation compares the two).
        public var childJoinsOverUnixSocket: Bool = true
        /// `[runtime] metrics_listen`: served here (``CombinedMetrics``: the embedded host's
        /// metrics and the runtime's, which the child serves on a loopback port of its own).
        public var metricsListen: String?
        /// The child's own shutdown grace period.
        public var shutdownGracePeriod: Duration
        /// How much longer than its grace period the child may take to stop before it is killed.
        public var shutdownMargin: Duration
        /// The delay before restarting a child that died before it was ready: from the first,
        /// doubling up to the cap.
        public var startupBackoff: Duration
        public var maxStartupBackoff: Duration
        /// Crashes of one plugin version within ``crashWindow`` that disable it.
        public var crashLimit: Int
        public var crashWindow: Duration

        public init(
            executable: String, arguments: @escaping @Sendable (Launch) -> [String], clientID: String? = nil,
            embeddedHost: AgentHost.Configuration? = nil, childConnectsWithTLS: Bool = false, metricsListen: String? = nil,
            shutdownGracePeriod: Duration = .seconds(5), shutdownMargin: Duration = .seconds(5),
            startupBackoff: Duration = .milliseconds(500), maxStartupBackoff: Duration = .seconds(10),
            crashLimit: Int = 3, crashWindow: Duration = .seconds(60)
        ) {
            self.executable = executable
            self.arguments = arguments
            self.clientID = clientID
            self.embeddedHost = embeddedHost
            self.childConnectsWithTLS = childConnectsWithTLS
            self.metricsListen = metricsListen
            self.shutdownGracePeriod = shutdownGracePeriod
            self.shutdownMargin = shutdownMargin
            self.startupBackoff = startupBackoff
            self.maxStartupBackoff = maxStartupBackoff
            self.crashLimit = crashLimit
            self.crashWindow = crashWindow
        }
    }

    /// What one child is started with.
    public struct Launch: Sendable {
        /// Its client id.
        public var clientID: String
        /// The embedded host's address (nil: the child joins the configured host).
        public var embeddedHostAddress: String?
        /// Plugin versions it must not call.
        public var disabledPlugins: [CrashLedger.Disabled]
        /// Ids of events whose handler crashed an earlier child: never to be handled again.
        public var skippedEvents: [String]
        /// The fd the crash record is at in the child.
        public var crashRecordFD: Int32
        /// The fd the child writes its `ready: ...` line to.
        public var readyFD: Int32
        /// The supervisor's pid (the child ends when its parent does).
        public var supervisorPID: Int32
        /// Where the child serves its metrics (`127.0.0.1:0`, when the supervisor combines them;
        /// nil: `[runtime] metrics_listen` is not set).
        public var metricsListen: String?
    }

    /// The child running now, as the host's departure answers need it.
    struct Child: Sendable {
        var clientID: String
        var record: CrashRecord
    }

    private enum Event: Sendable {
        case ready(generation: Int, line: String)
        /// The child serves its metrics at this address.
        case metrics(generation: Int, address: String)
        case exited(generation: Int, ChildSpawner.Exit)
        case signal(UnixSignal)
        case timer(generation: Int)
    }

    public let configuration: Configuration
    private let logger: Logger
    private let spawner = ChildSpawner()
    /// The running child last; the one before it is kept too, because the host may answer the
    /// dead child's RPCs after the next child started (it takes the stream out of its table
    /// before it answers what the stream left).
    private let children = Mutex<[Child]>([])
    private let ledger: Mutex<CrashLedger>
    /// Ids of the events whose handlers crashed a child, the latest last (at most
    /// ``maxSkippedEvents``).
    private let crashedEvents = Mutex<[String]>([])
    static let maxSkippedEvents = 256

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        ledger = Mutex(CrashLedger(limit: configuration.crashLimit, window: configuration.crashWindow))
    }

    /// Runs until SIGTERM or SIGINT (then stops the child and the host), or until the first
    /// child fails to start. Prints `listening on HOST:PORT` (embedded host) and, once the first
    /// child is ready, its `ready: ...` line; sends READY=1 to systemd then.
    /// - Parameter hangup: called on SIGHUP (before the child gets it).
    /// - Returns: the exit status: 0 after SIGTERM/SIGINT, else the failed start's.
    public func run(hangup: @escaping @Sendable () -> Void) async -> Int32 {
        let (events, sink) = AsyncStream<Event>.makeStream()
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint, .sighup)
        let signalTask = Task {
            for await signal in signals { sink.yield(.signal(signal)) }
        }
        defer { signalTask.cancel() }
        let metrics = configuration.metricsListen.map { _ in CombinedMetrics() }
        var host: AgentHost?
        if var embedded = configuration.embeddedHost {
            // One scrape shows the host's metrics too, unless it serves its own.
            if let metrics, embedded.metricsRegistry == nil, embedded.metricsListen == nil {
                embedded.metricsRegistry = metrics.hostRegistry
            }
            // The runtime process joins over a unix socket in a folder of our own (0700):
            // cheaper than loopback TCP. (With TLS, over TCP: the certificate names a host.)
            if configuration.childJoinsOverUnixSocket, !embedded.credentials.isTLS, embedded.unixSocket == nil,
               let folder = Self.privateFolder() {
                embedded.unixSocket = folder + "/host.sock"
            }
            embedded.departedWorkerAnswer = { [weak self] request in
                Self.answer(request, children: self?.children.withLock { $0 } ?? [])
            }
            do {
                host = try await AgentHost.start(configuration: embedded, logger: logger)
            } catch {
                logger.critical("cannot start the host", metadata: ["host.address": "\(embedded.listen)", "error": "\(error)"])
                if let socket = embedded.unixSocket { rmdir((socket as NSString).deletingLastPathComponent) }
                return 1
            }
            HostLauncher.announce("listening on \(host!.address)")
        }
        defer {
            if let socket = configuration.embeddedHost.flatMap({ _ in host?.configuration.unixSocket }) {
                unlink(socket)
                rmdir((socket as NSString).deletingLastPathComponent)
            }
        }
        var metricsListener: MetricsListener?
        if let metrics, let listen = configuration.metricsListen {
            do {
                metricsListener = try MetricsListener(listen: listen) { metrics.exposition() }
            } catch {
                logger.critical("cannot start the runtime", metadata: ["error": "\(error) ([runtime] metrics_listen)"])
                await host?.shutdown()
                return 1
            }
            HostLauncher.announce("metrics on http://\(metricsListener!.address)/metrics")
        }
        defer { metricsListener?.stop() }
        var iterator = events.makeAsyncIterator()
        var generation = 0
        var everReady = false
        var backoff = configuration.startupBackoff
        while true {
            generation += 1
            let started = await start(generation: generation, host: host, sink: sink)
            guard case .success(let (pid, reader)) = started else {
                await host?.shutdown()
                return 1
            }
            var readyNow = false
            var exit: ChildSpawner.Exit?
            while exit == nil, let event = await iterator.next() {
                switch event {
                case .ready(let which, let line) where which == generation:
                    readyNow = true
                    if everReady {
                        logger.notice("runtime restarted and ready", metadata: ["runtime.pid": "\(pid)", "ready": "\(line)"])
                    } else {
                        everReady = true
                        HostLauncher.announce(line)
                        ServiceNotification.ready(status: line)
                    }
                case .metrics(let which, let address) where which == generation:
                    metrics?.runtimeListens(at: address)
                case .exited(let which, let how) where which == generation:
                    metrics?.runtimeListens(at: nil)
                    exit = how
                case .signal(let signal) where signal == .sighup:
                    hangup()
                    kill(pid, SIGHUP)
                case .signal:
                    await stop(pid: pid, generation: generation, iterator: &iterator, sink: sink)
                    reader.join()
                    await host?.shutdown()
                    return 0
                default:
                    break
                }
            }
            reader.join()
            guard let exit else { return 0 }
            // What the child's end means. Status 0: it was stopped by someone else (a process
            // group's Ctrl-C, systemd's SIGTERM to every process of the unit): so are we.
            if exit == .exited(0) {
                logger.notice("the runtime stopped (exit status 0: it was sent SIGTERM or SIGINT); stopping", metadata: ["runtime.pid": "\(pid)"])
                await host?.shutdown()
                return 0
            }
            if case .exited(let status) = exit, status != 75, !everReady, children.withLock({ $0.last?.record.report.signal }) == 0 {
                logger.critical("the runtime failed to start", metadata: ["exit.status": "\(status)"])
                await host?.shutdown()
                return status
            }
            report(exit, pid: pid)
            let delay: Duration
            if readyNow {
                delay = .zero
                backoff = configuration.startupBackoff
            } else {
                delay = backoff
                backoff = min(backoff * 2, configuration.maxStartupBackoff)
                logger.warning("the runtime died before it was ready: restarting after a delay", metadata: ["delay": "\(delay)"])
            }
            if let host { await waitForDeparture(of: children.withLock { $0.last?.clientID }, from: host) }
            if delay > .zero {
                let timer = Task { [generation] in
                    try? await Task.sleep(for: delay)
                    sink.yield(.timer(generation: generation))
                }
                var waiting = true
                while waiting, let event = await iterator.next() {
                    switch event {
                    case .timer(let which) where which == generation: waiting = false
                    case .signal(let signal) where signal == .sighup: hangup()
                    case .signal:
                        timer.cancel()
                        await host?.shutdown()
                        return 0
                    default: break
                    }
                }
            }
        }
    }

    /// Spawns child `generation` with a new crash record; nil (logged) if it cannot be spawned.
    private func start(generation: Int, host: AgentHost?, sink: AsyncStream<Event>.Continuation) async
        -> Result<(pid_t, NativeThread), RuntimeError> {
        let record: CrashRecord
        do {
            record = try CrashRecord.create()
        } catch {
            logger.critical("cannot start the runtime", metadata: ["error": "\(error)"])
            return .failure(error as? RuntimeError ?? RuntimeError("\(error)"))
        }
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            let reason = String(cString: strerror(errno))
            logger.critical("cannot start the runtime: socketpair failed", metadata: ["error": "\(reason)"])
            return .failure(RuntimeError(reason))
        }
        let clientID = configuration.clientID ?? UUID().uuidString.lowercased()
        let launch = Launch(
            clientID: clientID,
            embeddedHostAddress: host.map { host in
                host.configuration.unixSocket.map { "unix:\($0)" }
                    ?? AgentRuntime.address(connectingTo: host, tls: configuration.childConnectsWithTLS)
            },
            disabledPlugins: ledger.withLock { Array($0.disabled.values) }.sorted { $0.contentHash < $1.contentHash },
            skippedEvents: crashedEvents.withLock { $0 },
            crashRecordFD: 3, readyFD: 4, supervisorPID: getpid(),
            metricsListen: configuration.metricsListen == nil ? nil : "127.0.0.1:0")
        // The child's environment: ours, without systemd's notify socket (readiness is ours to
        // say), and without Swift's crash backtracer unless SWIFT_BACKTRACE asks for it: it
        // symbolicates every thread before the process may die (measured: the crashed RPC's
        // answer 1.5 s after the crash with it, 0.2 s without), and our log line names the
        // plugin, agent type and message already.
        var variables = ProcessInfo.processInfo.environment
        variables["NOTIFY_SOCKET"] = nil
        if variables["SWIFT_BACKTRACE"] == nil { variables["SWIFT_BACKTRACE"] = "enable=no" }
        let environment = variables.map { "\($0.key)=\($0.value)" }
        children.withLock { $0 = $0.suffix(1) + [Child(clientID: clientID, record: record)] }
        let pid: pid_t
        do {
            pid = try await spawner.spawn(
                .init(
                    executable: configuration.executable,
                    arguments: [configuration.executable] + configuration.arguments(launch),
                    environment: environment,
                    fds: [(record.fd, launch.crashRecordFD), (pair[1], launch.readyFD)]),
                ended: { sink.yield(.exited(generation: generation, $0)) })
        } catch {
            close(pair[0])
            close(pair[1])
            logger.critical("cannot start the runtime", metadata: ["executable": "\(configuration.executable)", "error": "\(error)"])
            return .failure(RuntimeError("\(error)"))
        }
        close(pair[1])
        let readyEnd = pair[0]
        // The child's metrics and ready lines (then nothing until the child ends and the socket closes).
        let reader = NativeThread.start(name: "agentd-ready", stackSize: 128 << 10) {
            var line: [UInt8] = []
            var byte: UInt8 = 0
            while true {
                let count = read(readyEnd, &byte, 1)
                if count < 0 && errno == EINTR { continue }
                guard count == 1 else { break }
                if byte == UInt8(ascii: "\n") {
                    let text = String(decoding: line, as: UTF8.self)
                    if text.hasPrefix("metrics on http://"), text.hasSuffix("/metrics") {
                        let address = text.dropFirst("metrics on http://".count).dropLast("/metrics".count)
                        sink.yield(.metrics(generation: generation, address: String(address)))
                    } else {
                        sink.yield(.ready(generation: generation, line: text))
                    }
                    line.removeAll()
                } else if line.count < 64 << 10 {
                    line.append(byte)
                }
            }
            close(readyEnd)
        }
        logger.info("runtime started", metadata: [
            "runtime.pid": "\(pid)", "client.id": "\(clientID)",
            "plugins.disabled": "\(launch.disabledPlugins.map { "\($0.pluginName) \($0.contentHash)" })",
        ])
        return .success((pid, reader))
    }

    /// SIGTERM to the child; SIGKILL once its grace period plus the margin have passed.
    private func stop(
        pid: pid_t, generation: Int, iterator: inout AsyncStream<Event>.Iterator, sink: AsyncStream<Event>.Continuation
    ) async {
        ServiceNotification.stopping()
        kill(pid, SIGTERM)
        let limit = configuration.shutdownGracePeriod + configuration.shutdownMargin
        logger.info("stopping the runtime", metadata: ["runtime.pid": "\(pid)", "limit": "\(limit)"])
        // (A negative generation: the stop's timer, not a restart delay's.)
        let timer = Task {
            try? await Task.sleep(for: limit)
            sink.yield(.timer(generation: -generation))
        }
        defer { timer.cancel() }
        while let event = await iterator.next() {
            switch event {
            case .exited(let which, let how) where which == generation:
                logger.info("runtime stopped", metadata: ["runtime.pid": "\(pid)", "how": "\(how)"])
                return
            case .timer(let which) where which == -generation:
                logger.warning("the runtime did not stop within its grace period and the margin: killed", metadata: [
                    "runtime.pid": "\(pid)", "limit": "\(limit)",
                ])
                kill(pid, SIGKILL)
            default:
                break
            }
        }
    }

    /// Logs how the child ended and, for a crash in a plugin's handler, counts it against the
    /// plugin (which the third crash in the window disables).
    private func report(_ exit: ChildSpawner.Exit, pid: pid_t) {
        guard let record = children.withLock({ $0.last?.record }) else { return }
        let report = record.report
        // A fatal signal the crash record caught counts as a crash however the process ended: a
        // handler the plugin (or a sanitizer) installed may have exited with a status instead.
        let fatal: Int32
        switch exit {
        case _ where report.signal != 0:
            fatal = report.signal
        case .signaled(let signal):
            fatal = signal
        case .exited(75):
            logger.warning("the runtime asked to be restarted (exit status 75): restarting it", metadata: ["runtime.pid": "\(pid)"])
            return
        case .exited(let status):
            logger.error("the runtime ended unexpectedly: restarting it", metadata: ["runtime.pid": "\(pid)", "exit.status": "\(status)"])
            return
        }
        let name = SignalName.of(fatal)
        guard let crashed = Self.crashedMessage(report, signal: fatal) else {
            if let plugin = report.crashedInPlugin {
                // In the plugin's code, though in none of its handlers: a thread of its own, say.
                let (count, disabled) = ledger.withLock {
                    $0.recordCrash(
                        pluginName: plugin.name, contentHash: plugin.contentHash, signal: name,
                        messageType: "(none: outside its handlers)", at: .now)
                }
                logger.error("plugin \(plugin.name) crashed with \(name) in its own code outside its handlers (a thread of its own, or code it left running); restarting the runtime", metadata: [
                    "runtime.pid": "\(pid)", "plugin": "\(plugin.name)", "plugin.hash": "\(plugin.contentHash)",
                    "signal": "\(name)", "pc": "0x\(String(report.pc, radix: 16))",
                    "crashes": "\(count) within \(CrashLedger.seconds(configuration.crashWindow))",
                ])
                if let disabled { logDisabled(disabled, count: count) }
                return
            }
            logger.error("the runtime died outside any plugin handler: restarting it", metadata: [
                "runtime.pid": "\(pid)", "signal": "\(name)",
                "handlers.running": "\(report.busy.values.map(\.description).sorted())",
            ])
            return
        }
        if !crashed.isRPC, !crashed.requestID.isEmpty {
            crashedEvents.withLock { $0 = Array(($0 + [crashed.requestID]).suffix(Self.maxSkippedEvents)) }
        }
        let (count, disabled) = ledger.withLock {
            $0.recordCrash(
                pluginName: crashed.pluginName, contentHash: crashed.pluginHash, signal: name,
                messageType: crashed.messageType, at: .now)
        }
        logger.error("plugin \(crashed.pluginName) (agent type \(crashed.agentType)) crashed with \(name) while handling \(crashed.description); the message is answered with an error and not redelivered; restarting the runtime", metadata: [
            "runtime.pid": "\(pid)", "plugin": "\(crashed.pluginName)", "plugin.version": "\(crashed.pluginVersion)",
            "plugin.hash": "\(crashed.pluginHash)", "agent.type": "\(crashed.agentType)", "agent.key": "\(crashed.agentKey)",
            "message.type": "\(crashed.messageType)", "signal": "\(name)",
            "crashes": "\(count) within \(CrashLedger.seconds(configuration.crashWindow))",
        ])
        if let disabled { logDisabled(disabled, count: count) }
    }

    private func logDisabled(_ disabled: CrashLedger.Disabled, count: Int) {
        logger.error("plugin \(disabled.pluginName) disabled: it crashed \(count) times within \(CrashLedger.seconds(configuration.crashWindow)); its agent types stay registered and every RPC to them is answered with an error, until a new version of the plugin file is dropped in", metadata: [
            "plugin": "\(disabled.pluginName)", "plugin.hash": "\(disabled.contentHash)",
        ])
    }

    /// The message whose handler crashed: the one the signal's thread was handling, or — when
    /// no handler saw the signal (a stack overflow has no stack to run one on) and it is a
    /// fault — the only message being handled.
    static func crashedMessage(_ report: CrashReport, signal: Int32) -> CrashReport.Message? {
        if let crashed = report.crashed { return crashed }
        guard report.signal == 0, [SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS].contains(signal),
              report.busy.count == 1 else { return nil }
        return report.busy.values.first
    }

    /// The embedded host's words for an RPC the dead child left unanswered (nil: its generic
    /// ones): the crashed request names the plugin and the signal; the others say the runtime
    /// restarted.
    static func answer(_ request: AgentHost.DepartedRequest, children: [Child]) -> String? {
        // The newest child of that client id that crashed (a configured client id is every
        // child's; the one just started has not crashed).
        guard let report = children.reversed().lazy.filter({ $0.clientID == request.clientID })
            .map(\.record.report).first(where: { $0.signal != 0 }) else { return nil }
        let signal = SignalName.of(report.signal)
        if let crashed = report.crashed, crashed.isRPC, crashed.requestID == request.requestID {
            return "Plugin \(crashed.pluginName) (agent type \(crashed.agentType)) crashed with \(signal) while handling this message; it is not redelivered. The runtime serving it is being restarted."
        }
        let cause = report.crashed.map {
            "plugin \($0.pluginName) (agent type \($0.agentType)) crashed with \(signal) while handling another message"
        } ?? "it crashed with \(signal)"
        return "The runtime serving \(request.target) restarted before answering: \(cause). The request may or may not have been handled; it is not redelivered."
    }

    /// A new folder only this user can enter (`mkdtemp`, mode 0700), for the host's unix
    /// socket; nil if none can be made (the runtime then joins over loopback TCP).
    static func privateFolder() -> String? {
        var template = Array((NSTemporaryDirectory() as NSString).appendingPathComponent("agentd-XXXXXX").utf8CString)
        return template.withUnsafeMutableBufferPointer { buffer in
            mkdtemp(buffer.baseAddress!).map { String(cString: $0) }
        }
    }

    /// Waits (at most 2 s) until the host has taken the dead child's stream down, so that its
    /// unanswered RPCs are answered from its own crash record and a new child with the same
    /// client id is not refused as a second stream.
    private func waitForDeparture(of clientID: String?, from host: AgentHost) async {
        guard let clientID else { return }
        let deadline = ContinuousClock.now + .seconds(2)
        while host.queuedMessages()[clientID] != nil, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }
}
