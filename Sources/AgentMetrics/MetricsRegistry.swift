import CoreMetrics
import Prometheus
import Synchronization

/// Where one host's or runtime's metrics live, and what renders them in the Prometheus text
/// exposition format.
///
/// Each ``AgentHost`` and ``AgentRuntime`` is given its own registry (or none: then it counts
/// nothing), so that many of them in one process — tests, a runtime with its embedded host —
/// never share counters, and nothing depends on swift-metrics' process-wide
/// `MetricsSystem.bootstrap`. Metric objects are made through ``factory`` with swift-metrics'
/// API (`Counter(label:dimensions:factory:)`, `Gauge`, `Timer`).
///
/// What is cheaper to read than to count — an atomic the code keeps anyway, a table's size, the
/// resident memory — is read at scrape time by a ``MetricsCollector``, which ``exposition()``
/// asks to bring its metrics up to date before it renders.
///
/// ```swift
/// final class TableMetrics: MetricsCollector {
///     let workers: Gauge
///     init(registry: MetricsRegistry) {
///         workers = Gauge(label: "agentd_host_workers_connected", factory: registry.factory)
///         registry.register(self)
///     }
///     func collect() { workers.record(table.workerCount) }
/// }
/// print(String(decoding: registry.exposition(), as: UTF8.self))
/// ```
public final class MetricsRegistry: Sendable {
    /// The registry that renders the exposition.
    public let prometheus: PrometheusCollectorRegistry
    /// swift-metrics' factory over ``prometheus``, with latency buckets fit for agentd's
    /// timers (``latencyBuckets``) instead of swift-prometheus's default 5 ms … 10 s.
    public let factory: PrometheusMetricsFactory

    private struct Registered {
        /// Registration order: collectors run in it.
        var order: Int
        weak var collector: (any MetricsCollector)?
    }

    private struct Collectors: ~Copyable {
        var next = 0
        var all: [ObjectIdentifier: Registered] = [:]
    }

    private let collectors = Mutex(Collectors())
    /// Held through one scrape (collect, then render): collectors that export deltas from
    /// their last scrape see one scrape at a time.
    private let scraping = Mutex(())

    /// The buckets of every duration histogram (seconds): 50 µs to 60 s, dense where an RPC
    /// through one host (~0.1 ms) and a checkpoint (~0.03–0.5 ms) fall.
    public static let latencyBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500),
        .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
    ]

    public init() {
        prometheus = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: prometheus)
        factory.defaultDurationHistogramBuckets = Self.latencyBuckets
        self.factory = factory
    }

    /// Asks `collector` to bring its metrics up to date at every scrape, until it is
    /// unregistered or deallocated (the registry holds it weakly).
    public func register(_ collector: any MetricsCollector) {
        collectors.withLock { collectors in
            collectors.next += 1
            collectors.all[ObjectIdentifier(collector)] = Registered(order: collectors.next, collector: collector)
        }
    }

    public func unregister(_ collector: any MetricsCollector) {
        _ = collectors.withLock { $0.all.removeValue(forKey: ObjectIdentifier(collector)) }
    }

    /// Runs the collectors, then renders every metric in the Prometheus text exposition format
    /// (version 0.0.4: `# TYPE` lines, then one sample a line).
    public func exposition() -> [UInt8] {
        scraping.withLock { _ in
            let live = collectors.withLock { collectors in
                collectors.all = collectors.all.filter { $0.value.collector != nil }
                return collectors.all.values.sorted { $0.order < $1.order }.compactMap(\.collector)
            }
            for collector in live { collector.collect() }
            return prometheus.emitToBuffer()
        }
    }
}

/// Brings metrics up to date when Prometheus scrapes (``MetricsRegistry/register(_:)``).
public protocol MetricsCollector: AnyObject, Sendable {
    /// Runs at every scrape, one scrape at a time, on the scraping thread (the metrics
    /// listener's): quick and never blocking — a few lock acquisitions and atomic loads.
    func collect()
}
