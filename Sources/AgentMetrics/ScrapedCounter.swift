import CoreMetrics
import Synchronization

/// A Prometheus counter whose value is a total the code keeps anyway (an atomic, a sum over
/// connections), read at scrape time instead of counted twice.
///
/// ``update(to:)`` adds what the total grew by since the last scrape, so that the exported
/// counter only ever rises, even if a total read once came out a little high; call it from a
/// ``MetricsRegistry`` collector (scrapes never overlap).
public final class ScrapedCounter: Sendable {
    private let counter: Counter
    private let exported = Atomic<Int>(0)

    public init(label: String, dimensions: [(String, String)] = [], registry: MetricsRegistry) {
        counter = Counter(label: label, dimensions: dimensions, factory: registry.factory)
    }

    /// Brings the counter up to `total`.
    public func update(to total: Int) {
        let delta = total - exported.load(ordering: .relaxed)
        guard delta > 0 else { return }
        exported.store(total, ordering: .relaxed)
        counter.increment(by: delta)
    }
}
