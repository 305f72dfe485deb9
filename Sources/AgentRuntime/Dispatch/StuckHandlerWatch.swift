#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization

/// Watches the handler threads for plugin code that does not return (``check()``, called
/// every 100 ms by the runtime's sweeper):
///
/// - while work waits and threads have been in one handler for longer than
///   ``WorkerPool/stuckAfter``, the pool starts threads in their place, up to its bound;
/// - a handler running past the handler timeout has its message answered with an error (an
///   RPC's caller is told it failed), and its agent refuses RPCs at once until it returns;
/// - once every thread the pool may have is stuck past the handler timeout, the runtime can
///   no longer serve: one line says which plugin, agent type and message type are stuck, and
///   the ``AgentRuntime/StuckAction`` is taken (`agentd run` ends the process with status 75
///   for its supervisor to restart).
final class StuckHandlerWatch: Sendable {
    private let workers: WorkerPool
    private let invoker: HandlerInvoker
    private let action: AgentRuntime.StuckAction
    private let logger: Logger
    private let unservableReported = Atomic<Bool>(false)

    init(workers: WorkerPool, invoker: HandlerInvoker, action: AgentRuntime.StuckAction, logger: Logger) {
        self.workers = workers
        self.invoker = invoker
        self.action = action
        self.logger = logger
    }

    func check() {
        let started = workers.growPastStuckThreads()
        let busy = workers.busyWork
        if started > 0 {
            let long = busy.filter { $0.elapsed >= .nanoseconds(Int64(workers.stuckAfter)) }.compactMap(describe)
            logger.warning("handlers are not returning: started more handler threads in their place", metadata: [
                "threads.started": "\(started)", "threads": "\(workers.threadCount)",
                "threads.max": "\(workers.maxThreads)", "handlers.busy": "\(long.map(\.description))",
            ])
        }
        let timeout = invoker.handlerTimeout
        var stuck: [AgentRuntime.StuckHandler] = []
        for work in busy where work.elapsed >= timeout {
            guard let agent = work.work as? AgentInstance, let described = describe(work) else { continue }
            stuck.append(described)
            guard let call = invoker.runningCall(of: agent), let refused = invoker.expireRunning(call, after: work.elapsed) else {
                continue
            }
            logger.error("handler stuck past handler_timeout: its message was answered with an error; RPCs to its agent are refused until it returns", metadata: [
                "plugin": "\(call.plugin.name)", "plugin.version": "\(call.plugin.version)",
                "agent.id": "\(agent.id.clipped)", "message.type": "\(call.messageType)",
                "running": "\(StateRequestServer.text(work.elapsed))", "handler_timeout": "\(StateRequestServer.text(timeout))",
                "rpcs.refused": "\(refused)",
            ])
        }
        // One thread always reads from the host (it never runs handlers alone): the rest stuck
        // at the bound is all the runtime can have.
        if workers.threadCount >= workers.maxThreads, stuck.count >= workers.maxThreads - 1,
           !unservableReported.exchange(true, ordering: .relaxed) {
            unservable(stuck)
        }
    }

    /// What an RPC to an agent whose handler is stuck is answered.
    static func refusal(_ agent: AgentInstance, timeout: Duration) -> String {
        "Agent \(agent.id.clipped) is stuck: its handler has been running past the handler timeout (\(StateRequestServer.text(timeout))) without returning. The request was not delivered; the agent takes requests again once its handler returns."
    }

    private func describe(_ work: WorkerPool.Busy) -> AgentRuntime.StuckHandler? {
        guard let agent = work.work as? AgentInstance else { return nil }
        let call = agent.stuckCall ?? invoker.runningCall(of: agent)
        let plugin = call?.plugin ?? agent.runningPlugin
        return AgentRuntime.StuckHandler(
            plugin: plugin.map { "\($0.name) \($0.version)" } ?? "(unknown)", agentType: agent.id.type,
            agentKey: String(agent.id.key.prefix(200)), messageType: call?.messageType, running: work.elapsed)
    }

    private func unservable(_ stuck: [AgentRuntime.StuckHandler]) {
        // One entry per plugin, agent type and message type, with how many and the longest.
        var groups: [String: (count: Int, longest: Duration)] = [:]
        for handler in stuck {
            let what = "plugin \(handler.plugin), agent type \(handler.agentType), "
                + (handler.messageType.map { "message type '\($0)'" } ?? "outside a handler")
            let seen = groups[what] ?? (0, .zero)
            groups[what] = (seen.count + 1, max(seen.longest, handler.running))
        }
        let summary = groups.sorted { $0.key < $1.key }
            .map { "\($0.key) (\($0.value.count) stuck, the longest for \(StateRequestServer.text($0.value.longest)))" }
            .joined(separator: "; ")
        var line = "the runtime cannot serve any more: all \(workers.maxThreads - 1) handler threads are stuck in plugin code that did not return within handler_timeout (\(StateRequestServer.text(invoker.handlerTimeout))): \(summary)"
        if case .exit(let status) = action {
            line += "; ending the process with status \(status) so that its supervisor restarts it (fix or remove the plugin)"
        }
        logger.critical("\(line)")
        switch action {
        case .log:
            break
        case .exit(let status):
            // At once: a normal exit would run plugins' destructors under their running handlers.
            fflush(nil)
            _exit(status)
        case .call(let handler):
            handler(stuck)
        }
    }
}
