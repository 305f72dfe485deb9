import AgentMetrics

extension AgentRuntime {
    /// The registry the runtime's metrics go to (nil: it keeps none).
    public var metricsRegistry: MetricsRegistry? { metrics?.registry }

    /// The bound `HOST:PORT` of the runtime's metrics listener, once started (with the port
    /// picked when the configuration asked for 0); nil when it serves no metrics.
    public var metricsAddress: String? { metricsListener?.address }

    /// Starts serving `GET /metrics` where ``Configuration/metricsListen`` says, if it does.
    /// - Throws: ``RuntimeError`` naming the address when it cannot listen there.
    func makeMetricsListener() throws -> MetricsListener? {
        guard let listen = configuration.metricsListen, let registry = metrics?.registry else { return nil }
        let listener: MetricsListener
        do {
            listener = try MetricsListener(listen: listen) { registry.exposition() }
        } catch {
            throw RuntimeError("\(error) ([runtime] metrics_listen)")
        }
        logger.info("metrics listening", metadata: ["metrics.address": "\(listener.address)", "metrics.path": "/metrics"])
        return listener
    }
}
