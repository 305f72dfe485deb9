import AgentMetrics
import CoreMetrics
import Synchronization

/// The runtime's metrics (README, Metrics): made from its ``MetricsRegistry`` when it has one.
///
/// On the message path: the intake's counts by kind (plain stores, ``IntakeTally``) and one
/// relaxed atomic add per handler call on its agent type's ``HandlerTally``; a checkpoint
/// records its latency once committed. What the runtime counts anyway — resident agents,
/// activations, retirements, checkpoints, commits, mailbox refusals — and the plugins in
/// service, the connection and the resident memory are read when Prometheus scrapes.
final class RuntimeMetrics: Sendable {
    let registry: MetricsRegistry
    /// What the runtime received from its host.
    let intake = IntakeTally()
    /// From a checkpoint's submission to its commit (or failure).
    let checkpointLatency: CoreMetrics.Timer

    private let handlers = HandlerTallies()
    private let pluginLoads: Counter
    private let pluginReloads: Counter
    private let pluginRefusals: Counter
    private let pluginRemovals: Counter
    private let reconnects: Counter
    /// What scrapes read, once the runtime has started.
    private let scraped = Mutex<ScrapedMetrics?>(nil)

    init(registry: MetricsRegistry) {
        self.registry = registry
        let factory = registry.factory
        checkpointLatency = Timer(label: "agentd_runtime_checkpoint_duration_seconds", factory: factory)
        pluginLoads = Counter(label: "agentd_runtime_plugin_loads_total", factory: factory)
        pluginReloads = Counter(label: "agentd_runtime_plugin_reloads_total", factory: factory)
        pluginRefusals = Counter(label: "agentd_runtime_plugin_refusals_total", factory: factory)
        pluginRemovals = Counter(label: "agentd_runtime_plugin_removals_total", factory: factory)
        reconnects = Counter(label: "agentd_runtime_reconnects_total", factory: factory)
    }

    // MARK: Counting

    /// The tally of agent type `name` (made on its first agent's activation).
    func handlerTally(forType name: String) -> HandlerTally { handlers.tally(forType: name) }

    func pluginLoaded() { pluginLoads.increment() }
    /// A new version of a plugin took over.
    func pluginReloaded() { pluginReloads.increment() }
    /// A plugin file, or a new version of one, was refused.
    func pluginRefused() { pluginRefusals.increment() }
    func pluginRemoved() { pluginRemovals.increment() }
    /// The runtime registered again with a host after losing its connection.
    func reconnected() { reconnects.increment() }

    // MARK: Scraping

    /// The parts of a started runtime that scrapes read.
    struct Sources: Sendable {
        var router: LocalRouter
        var states: AgentStates?
        var reloader: Reloader
        var connection: HostConnection
    }

    /// Starts showing what `sources` count in every scrape, until ``close()``.
    func observe(_ sources: Sources) {
        let collector = ScrapedMetrics(registry: registry, sources: sources, intake: intake, handlers: handlers)
        scraped.withLock { $0 = collector }
        registry.register(collector)
    }

    /// Stops showing in the registry's scrapes (the runtime has shut down).
    func close() {
        if let collector = scraped.withLock({ $0.take() }) { registry.unregister(collector) }
    }

}

/// The gauges and counters a scrape brings up to date.
private final class ScrapedMetrics: MetricsCollector {
    let registry: MetricsRegistry
    let sources: RuntimeMetrics.Sources
    let intake: IntakeTally
    let handlers: HandlerTallies
    let pluginsLoaded: Gauge
    let hostConnected: Gauge
    let resident: Gauge
    let residentMemory: Gauge
    let received: [ScrapedCounter]
    let activations: ScrapedCounter
    let deactivations: ScrapedCounter
    let checkpoints: ScrapedCounter
    let checkpointFailures: ScrapedCounter
    let commits: ScrapedCounter
    let mailboxRefusals: ScrapedCounter
    let publishesAcknowledged: ScrapedCounter
    let publishesResent: ScrapedCounter
    let duplicatesDropped: ScrapedCounter
    /// Agent type → its handler calls and failures.
    let handlerCounters = Mutex<[String: (calls: ScrapedCounter, failures: ScrapedCounter)]>([:])

    init(registry: MetricsRegistry, sources: RuntimeMetrics.Sources, intake: IntakeTally, handlers: HandlerTallies) {
        self.registry = registry
        self.sources = sources
        self.intake = intake
        self.handlers = handlers
        let factory = registry.factory
        pluginsLoaded = Gauge(label: "agentd_runtime_plugins_loaded", factory: factory)
        hostConnected = Gauge(label: "agentd_runtime_host_connected", factory: factory)
        resident = Gauge(label: "agentd_runtime_agents_resident", factory: factory)
        residentMemory = Gauge(label: "agentd_process_resident_memory_bytes", factory: factory)
        received = ["event", "request", "response"].map {
            ScrapedCounter(label: "agentd_runtime_messages_received_total", dimensions: [("kind", $0)], registry: registry)
        }
        activations = ScrapedCounter(label: "agentd_runtime_agent_activations_total", registry: registry)
        deactivations = ScrapedCounter(label: "agentd_runtime_agent_deactivations_total", registry: registry)
        checkpoints = ScrapedCounter(label: "agentd_runtime_checkpoints_total", registry: registry)
        checkpointFailures = ScrapedCounter(label: "agentd_runtime_checkpoint_failures_total", registry: registry)
        commits = ScrapedCounter(label: "agentd_runtime_state_commits_total", registry: registry)
        mailboxRefusals = ScrapedCounter(label: "agentd_runtime_mailbox_refusals_total", registry: registry)
        publishesAcknowledged = ScrapedCounter(label: "agentd_runtime_publishes_acknowledged_total", registry: registry)
        publishesResent = ScrapedCounter(label: "agentd_runtime_publishes_resent_total", registry: registry)
        duplicatesDropped = ScrapedCounter(label: "agentd_runtime_events_duplicates_dropped_total", registry: registry)
    }

    func collect() {
        pluginsLoaded.record(sources.reloader.current.count)
        hostConnected.record(sources.connection.isConnected ? 1 : 0)
        resident.record(sources.router.residentCount)
        if let bytes = ProcessMemory.residentBytes() { residentMemory.record(bytes) }
        let intake = intake.totals
        for (counter, total) in zip(received, [intake.events, intake.requests, intake.responses]) { counter.update(to: total) }
        let states = sources.states
        activations.update(to: states?.activations.load(ordering: .relaxed) ?? 0)
        deactivations.update(to: sources.router.retiredCount)
        let (commitCount, checkpointCount) = states?.writer.counts ?? (0, 0)
        commits.update(to: commitCount)
        checkpoints.update(to: checkpointCount)
        checkpointFailures.update(to: states?.failureCount ?? 0)
        mailboxRefusals.update(to: sources.router.overloadRefusalCount)
        let delivery = sources.connection.deliveryCounts
        publishesAcknowledged.update(to: delivery.acknowledged)
        publishesResent.update(to: delivery.resent)
        duplicatesDropped.update(to: sources.router.duplicatesDropped)
        for (type, calls, failures) in handlers.totals {
            let counters = handlerCounters.withLock { counters in
                if let existing = counters[type] { return existing }
                let labels = [("agent_type", type)]
                let made = (
                    calls: ScrapedCounter(label: "agentd_runtime_handler_calls_total", dimensions: labels, registry: registry),
                    failures: ScrapedCounter(label: "agentd_runtime_handler_failures_total", dimensions: labels, registry: registry))
                counters[type] = made
                return made
            }
            counters.calls.update(to: calls)
            counters.failures.update(to: failures)
        }
    }
}
