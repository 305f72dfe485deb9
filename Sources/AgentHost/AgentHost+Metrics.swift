import AgentMetrics
import GRPCTransport
import Logging

extension AgentHost {
    /// The bound `HOST:PORT` of the metrics listener (with the port picked when the
    /// configuration asked for 0); nil when the host serves no metrics.
    public var metricsAddress: String? { metricsListener?.address }

    /// The metrics listener's port; nil when the host serves no metrics.
    public var metricsPort: Int? { metricsListener?.port }
}

extension HostMetrics {
    /// The metrics a host with `configuration` keeps, and the listener serving them.
    /// - Throws: ``MetricsListenerError`` naming the address if it cannot listen there.
    static func start(
        _ configuration: AgentHost.Configuration, table: RoutingTable, budget: SendBudget, ledger: DeliveryLedger,
        late: LateEvents?, logger: Logger
    ) throws -> (HostMetrics?, MetricsListener?) {
        guard let registry = configuration.metricsRegistry ?? configuration.metricsListen.map({ _ in MetricsRegistry() }) else {
            return (nil, nil)
        }
        let metrics = HostMetrics(
            registry: registry, table: table, budget: budget, rpcTimeout: configuration.rpcTimeout, ledger: ledger, late: late)
        guard let listen = configuration.metricsListen else { return (metrics, nil) }
        let listener = try MetricsListener(listen: listen) { registry.exposition() }
        logger.info("metrics listening", metadata: ["metrics.address": "\(listener.address)", "metrics.path": "/metrics"])
        return (metrics, listener)
    }
}
