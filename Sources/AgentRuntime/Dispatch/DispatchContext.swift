import Logging
import Synchronization

/// The parts of one runtime that an agent, a handler call or a plugin reference reaches
/// (each holds this, so a host API call made with its handle finds its own runtime's parts):
/// the threads that run handlers, the handler invoker, the way out to the host, the RPCs
/// plugins sent, the retirement of replaced plugin versions, and the state store.
final class DispatchContext: Sendable {
    let workers: WorkerPool
    let invoker: HandlerInvoker
    let outbox: Outbox
    let requests: OutboundRequests
    let retirement: PluginRetirement
    /// The state store and its writer (nil: `[state] store = none`).
    let states: AgentStates?
    /// The runtime's metrics (nil: it keeps none).
    let metrics: RuntimeMetrics?
    /// Ids of events never to hand to a handler (nil: none): events whose handler crashed a
    /// previous runtime process (``AgentRuntime/Configuration/skippedEvents``).
    let skippedEvents: Set<String>?
    let logger: Logger
    /// Bytes the resident agents hold (``AgentInstance/residentBytes``, summed): what
    /// `max_resident_bytes` bounds.
    let residentBytes = Atomic<Int>(0)

    init(workers: WorkerPool, invoker: HandlerInvoker, outbox: Outbox, requests: OutboundRequests,
         retirement: PluginRetirement, states: AgentStates?, metrics: RuntimeMetrics? = nil,
         skippedEvents: Set<String> = [], logger: Logger) {
        self.metrics = metrics
        self.skippedEvents = skippedEvents.isEmpty ? nil : skippedEvents
        self.workers = workers
        self.invoker = invoker
        self.outbox = outbox
        self.requests = requests
        self.retirement = retirement
        self.states = states
        self.logger = logger
    }
}
