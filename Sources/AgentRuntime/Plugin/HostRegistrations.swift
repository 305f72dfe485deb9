import AgentCore
import Foundation
import GRPCTransport
import Logging

/// What this runtime registered with its host: the agent types it serves and each type's
/// subscriptions, brought in line with the plugins in service as they change, and registered
/// again after a reconnection (the host may have forgotten them).
///
/// Called by the ``Reloader`` between rescans, so its host calls never interleave.
actor HostRegistrations {
    private let connection: HostConnection
    private let clientID: String
    private let logger: Logger
    /// Agent types ever registered by this connection (the protocol has no way to unregister
    /// one; a withdrawn type answers with an error instead).
    private var registered: Set<String> = []
    /// Those registered as shared (``PluginAgentType/isShared``).
    private var shared: Set<String> = []
    /// The host's subscription ids for each agent type, by kind.
    private var subscriptions: [String: [Subscription.Kind: String]] = [:]

    init(connection: HostConnection, clientID: String, logger: Logger) {
        self.connection = connection
        self.clientID = clientID
        self.logger = logger
    }

    /// Registers the types not registered yet; returns those the host accepted (or had).
    func register(_ types: [PluginAgentType], plugin: LoadedPlugin) async -> [PluginAgentType] {
        var accepted: [PluginAgentType] = []
        for type in types {
            if registered.contains(type.name) {
                accepted.append(type)
                continue
            }
            do {
                try await connection.register(agentType: type.name, shared: type.isShared)
                if type.isShared { shared.insert(type.name) } else { shared.remove(type.name) }
                registered.insert(type.name)
                accepted.append(type)
            } catch {
                logger.error("agent type refused by the host", metadata: [
                    "plugin": "\(plugin.name)", "plugin.path": "\(plugin.path)", "agent.type": "\(type.name)",
                    "error": "\(error)",
                ])
            }
        }
        return accepted
    }

    /// Brings the host's subscriptions for `type` in line with what it declares: keeps those
    /// it still declares, removes the others, adds the new ones.
    func subscribe(_ type: PluginAgentType) async {
        let existing = subscriptions[type.name] ?? [:]
        var result: [Subscription.Kind: String] = [:]
        let wanted = Set(type.subscriptions)
        for (kind, id) in existing {
            if wanted.contains(kind) {
                result[kind] = id
            } else {
                await remove(id, type: type.name)
            }
        }
        for kind in type.subscriptions where result[kind] == nil {
            let subscription = Subscription(
                id: "\(clientID)/\(type.name)/\(UUID().uuidString.lowercased())", agentType: type.name, kind: kind)
            do {
                try await connection.add(subscription)
                result[kind] = subscription.id
            } catch {
                logger.error("subscription refused by the host", metadata: [
                    "plugin": "\(type.plugin.name)", "agent.type": "\(type.name)", "subscription": "\(subscription)",
                    "error": "\(error)",
                ])
            }
        }
        subscriptions[type.name] = result
    }

    /// Removes the subscriptions of a type no longer served.
    func withdraw(_ typeName: String) async {
        for id in (subscriptions.removeValue(forKey: typeName) ?? [:]).values {
            await remove(id, type: typeName)
        }
    }

    /// Registers `served` types and their subscriptions again, on a new stream.
    /// - Throws: the host's refusal of a registration (the reconnection attempt then fails and
    ///   is retried).
    func restore(serving served: [String]) async throws {
        var registered = Set<String>()
        var subscriptionCount = 0
        for name in served.sorted() {
            try await connection.register(agentType: name, shared: shared.contains(name))
            registered.insert(name)
            for (kind, id) in subscriptions[name] ?? [:] {
                do {
                    try await connection.add(Subscription(id: id, agentType: name, kind: kind))
                } catch let error as TransportError where error.status.code == .alreadyExists {
                    // The host kept it (the stream broke but the host did not restart).
                }
                subscriptionCount += 1
            }
        }
        self.registered = registered
        logger.info("agent types and subscriptions registered again", metadata: [
            "agent.types": "\(registered.sorted())", "subscriptions": "\(subscriptionCount)",
        ])
    }

    private func remove(_ id: String, type: String) async {
        do {
            try await connection.removeSubscription(id: id)
        } catch {
            logger.warning("cannot remove a subscription from the host", metadata: [
                "agent.type": "\(type)", "subscription.id": "\(id)", "error": "\(error)",
            ])
        }
    }
}
