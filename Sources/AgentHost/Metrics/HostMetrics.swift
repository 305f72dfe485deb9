import AgentMetrics
import CoreMetrics
import GRPCTransport
import Synchronization

/// The host's metrics (README, Metrics): made from its ``MetricsRegistry`` when it has one.
///
/// The message path only touches its own data channel's ``ChannelTally`` (plain adds, no
/// atomic read-modify-write) and, once per answered RPC, the latency histogram; everything
/// else — the tallies' sums, connected workers, pending RPCs, queue depths, resident memory —
/// is read when Prometheus scrapes.
final class HostMetrics: MetricsCollector {
    private struct Tallies: ~Copyable {
        /// The open data channels' tallies.
        var open: [ObjectIdentifier: ChannelTally] = [:]
        /// What the closed channels' tallies came to.
        var closed = [Int](repeating: 0, count: ChannelTally.slotCount)
    }

    private let tallies = Mutex(Tallies())
    private let table: RoutingTable
    private let budget: SendBudget
    /// The host's RPC deadline: a worker's request is due `rpcTimeout` after it was routed.
    private let rpcTimeout: Duration
    private let timeouts = Atomic<Int>(0)

    private let registry: MetricsRegistry
    private let rpcLatency: CoreMetrics.Timer
    private let workers: Gauge
    private let pendingRPCs: Gauge
    private let queueMax: Gauge
    private let queueSum: Gauge
    private let residentMemory: Gauge
    private let outboundBytes: Gauge
    private let outboundBudget: Gauge
    private let outboundRefusals: ScrapedCounter
    /// Each exported counter with the tally slot it shows.
    private let slotCounters: [(slot: Int, counter: ScrapedCounter)]
    private let unroutable: ScrapedCounter
    private let slowConsumerDrops: ScrapedCounter
    private let rpcTimeouts: ScrapedCounter
    private let ledger: DeliveryLedger
    private let late: LateEvents?
    private let acknowledged: ScrapedCounter
    private let resent: ScrapedCounter
    private let kept: ScrapedCounter
    private let deliveredLate: ScrapedCounter
    private let expired: ScrapedCounter
    private let lateBytes: Gauge

    init(registry: MetricsRegistry, table: RoutingTable, budget: SendBudget, rpcTimeout: Duration, ledger: DeliveryLedger, late: LateEvents?) {
        precondition(ChannelTally.slotCount == 49, "ChannelTally's InlineArray holds 49 counts")
        self.registry = registry
        self.table = table
        self.budget = budget
        self.rpcTimeout = rpcTimeout
        let factory = registry.factory
        rpcLatency = Timer(label: "agentd_host_rpc_duration_seconds", factory: factory)
        workers = Gauge(label: "agentd_host_workers_connected", factory: factory)
        pendingRPCs = Gauge(label: "agentd_host_rpcs_pending", factory: factory)
        queueMax = Gauge(label: "agentd_host_outbound_queue_messages_max", factory: factory)
        queueSum = Gauge(label: "agentd_host_outbound_queue_messages", factory: factory)
        residentMemory = Gauge(label: "agentd_process_resident_memory_bytes", factory: factory)
        outboundBytes = Gauge(label: "agentd_host_outbound_bytes", factory: factory)
        outboundBudget = Gauge(label: "agentd_host_outbound_budget_bytes", factory: factory)
        outboundRefusals = ScrapedCounter(label: "agentd_host_outbound_budget_refusals_total", registry: registry)
        var counters: [(Int, ScrapedCounter)] = []
        for kind in ChannelTally.Kind.allCases {
            let labels = [("kind", kind.label)]
            counters.append((ChannelTally.receivedSlot(kind), ScrapedCounter(label: "agentd_host_messages_received_total", dimensions: labels, registry: registry)))
            counters.append((ChannelTally.routedSlot(kind), ScrapedCounter(label: "agentd_host_messages_routed_total", dimensions: labels, registry: registry)))
            counters.append((ChannelTally.deliveredSlot(kind), ScrapedCounter(label: "agentd_host_messages_delivered_total", dimensions: labels, registry: registry)))
        }
        for reason in ChannelTally.Drop.allCases {
            for kind in reason.kinds {
                counters.append((ChannelTally.droppedSlot(kind, reason), ScrapedCounter(
                    label: "agentd_host_messages_dropped_total", dimensions: [("kind", kind.label), ("reason", reason.label)],
                    registry: registry)))
            }
        }
        counters.append((ChannelTally.unparsableSlot, ScrapedCounter(label: "agentd_host_messages_unparsable_total", registry: registry)))
        slotCounters = counters
        unroutable = ScrapedCounter(label: "agentd_host_events_unroutable_total", registry: registry)
        slowConsumerDrops = ScrapedCounter(label: "agentd_host_slow_consumer_drops_total", registry: registry)
        rpcTimeouts = ScrapedCounter(label: "agentd_host_rpc_timeouts_total", registry: registry)
        self.ledger = ledger
        self.late = late
        acknowledged = ScrapedCounter(label: "agentd_host_publishes_acknowledged_total", registry: registry)
        resent = ScrapedCounter(label: "agentd_host_events_resent_total", registry: registry)
        kept = ScrapedCounter(label: "agentd_host_events_kept_for_late_subscribers_total", registry: registry)
        deliveredLate = ScrapedCounter(label: "agentd_host_events_delivered_late_total", registry: registry)
        expired = ScrapedCounter(label: "agentd_host_events_expired_total", registry: registry)
        lateBytes = Gauge(label: "agentd_host_late_window_bytes", factory: factory)
        registry.register(self)
    }

    /// Stops showing in the registry's scrapes (the host has shut down).
    func close() { registry.unregister(self) }

    // MARK: Counting

    /// A new data channel's tally.
    func openTally() -> ChannelTally {
        let tally = ChannelTally()
        tallies.withLock { $0.open[ObjectIdentifier(tally)] = tally }
        return tally
    }

    /// A data channel ended (after its last message): its counts are kept in the totals.
    func closeTally(_ tally: ChannelTally) {
        tallies.withLock { tallies in
            guard tallies.open.removeValue(forKey: ObjectIdentifier(tally)) != nil else { return }
            tally.add(to: &tallies.closed)
        }
    }

    /// An RPC's answer reached its caller: the time since the request was routed, when the
    /// caller is this host's worker (a request from another host is timed at its caller's host).
    @inline(__always)
    func rpcAnswered(_ request: RoutingTable.PendingRequest) {
        guard case .worker = request.caller else { return }
        rpcLatency.recordDuration(ContinuousClock.now - (request.deadline - rpcTimeout))
    }

    /// An RPC got no answer within the host's deadline.
    func rpcTimedOut() { timeouts.add(1, ordering: .relaxed) }

    // MARK: Scraping

    func collect() {
        let totals = tallies.withLock { tallies in
            var totals = tallies.closed
            for tally in tallies.open.values { tally.add(to: &totals) }
            return totals
        }
        for (slot, counter) in slotCounters { counter.update(to: totals[slot]) }
        unroutable.update(to: totals[ChannelTally.droppedSlot(.event, .noSubscriber)])
        slowConsumerDrops.update(
            to: totals[ChannelTally.droppedSlot(.event, .queueFull)] + totals[ChannelTally.droppedSlot(.request, .queueFull)])
        rpcTimeouts.update(to: timeouts.load(ordering: .relaxed))
        let load = table.load()
        workers.record(load.dataChannels.count)
        pendingRPCs.record(load.pendingRPCs)
        let depths = load.dataChannels.map(\.queuedMessages)
        queueMax.record(depths.max() ?? 0)
        queueSum.record(depths.reduce(0, +))
        if let resident = ProcessMemory.residentBytes() { residentMemory.record(resident) }
        acknowledged.update(to: ledger.eventsAcknowledged.load(ordering: .relaxed))
        resent.update(to: ledger.eventsResent.load(ordering: .relaxed))
        kept.update(to: late?.kept.load(ordering: .relaxed) ?? 0)
        deliveredLate.update(to: late?.deliveredLate.load(ordering: .relaxed) ?? 0)
        expired.update(to: (late?.expired.load(ordering: .relaxed) ?? 0) + ledger.eventsParkedExpired.load(ordering: .relaxed))
        lateBytes.record(late?.usage.bytes ?? 0)
        outboundBytes.record(budget.bytes)
        outboundBudget.record(budget.limit)
        outboundRefusals.update(to: budget.refusals)
    }
}
