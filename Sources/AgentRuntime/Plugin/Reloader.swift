import AgentCore
import Foundation
import GRPCTransport
import Logging
import Synchronization

/// Keeps the plugins in service in step with the plugin directory: loads a file dropped in,
/// swaps a changed one for its new version, withdraws a removed one — one rescan at a time,
/// while the runtime keeps serving.
///
/// A new version is loaded and validated before anything changes; if it is refused, the old
/// one keeps serving. Messages wait in runtime-owned mailboxes, so a swap loses none; each
/// agent moves to the new version after its current handler returns.
final class Reloader: Sendable {
    private struct Served {
        var plugin: LoadedPlugin
        /// The host subscriptions added for each of its agent types, by kind.
        var subscriptions: [String: [Subscription.Kind: String]]
    }

    private struct State: ~Copyable {
        /// What serves, by source file.
        var served: [String: Served] = [:]
        /// Files refused, with the content hash that was refused (not retried or logged again
        /// until the content changes).
        var refused: [String: String] = [:]
        /// Agent types ever registered with the host by this connection (the protocol has no
        /// way to unregister one; a withdrawn type answers with an error instead).
        var registered: Set<String> = []
        /// Swift images that were replaced or removed but stay mapped.
        var retiredSwiftImages = 0
        var stopped = false
        var watcher: DirectoryWatcher?
    }

    private unowned let runtime: AgentRuntime
    private let connection: HostConnection
    private let state = Mutex(State())
    private enum Request {
        case rescan(CheckedContinuation<Void, Never>?)
        case restore(CheckedContinuation<Result<Void, any Error>, Never>)
    }

    private let requests: AsyncStream<Request>.Continuation
    private let worker: Task<Void, Never>

    init(runtime: AgentRuntime, connection: HostConnection) {
        self.runtime = runtime
        self.connection = connection
        let (stream, continuation) = AsyncStream.makeStream(of: Request.self)
        requests = continuation
        // One rescan at a time, in request order; the plugin swaps never interleave.
        let box = Mutex<Reloader?>(nil)
        worker = Task {
            var iterator = stream.makeAsyncIterator()
            while let request = await iterator.next() {
                let reloader = box.withLock { $0 }
                switch request {
                case .rescan(let waiter):
                    await reloader?.rescanNow()
                    waiter?.resume()
                case .restore(let waiter):
                    do {
                        try await reloader?.restoreNow()
                        waiter.resume(returning: .success(()))
                    } catch {
                        waiter.resume(returning: .failure(error))
                    }
                }
            }
        }
        box.withLock { $0 = self }
    }

    private var logger: Logger { runtime.logger }
    private var core: RuntimeCore { runtime.core }

    /// The plugins in service, by file name.
    var current: [LoadedPlugin] {
        state.withLock { state in state.served.sorted { $0.key < $1.key }.map(\.value.plugin) }
    }

    /// Rescans and returns once the rescan is done.
    func rescan() async {
        await withCheckedContinuation { continuation in
            requests.yield(.rescan(continuation))
        }
    }

    /// Registers every served agent type and subscription again (after a reconnection: the
    /// host may have forgotten them), between rescans.
    func restoreRegistrations() async throws {
        let result = await withCheckedContinuation { continuation in
            requests.yield(.restore(continuation))
        }
        try result.get()
    }

    /// Asks for a rescan without waiting (the directory watcher, SIGHUP).
    func requestRescan() {
        requests.yield(.rescan(nil))
    }

    /// Starts watching `directory` (inotify); changes trigger a rescan after a short quiet
    /// period, so that a file written in several steps is read once it is complete.
    func watch(directory: String) {
        do {
            let watcher = try DirectoryWatcher(directory: directory, quietPeriod: .milliseconds(150)) { [weak self] in
                self?.requestRescan()
            }
            state.withLock { $0.watcher = watcher }
            logger.info("watching the plugin directory", metadata: ["plugin.directory": "\(directory)"])
        } catch {
            logger.error("cannot watch the plugin directory; reload with SIGHUP", metadata: [
                "plugin.directory": "\(directory)", "error": "\(error)",
            ])
        }
    }

    /// Stops watching and reloading; returns the plugins that were in service.
    func stop() async -> [LoadedPlugin] {
        let watcher = state.withLock { state -> DirectoryWatcher? in
            state.stopped = true
            return state.watcher
        }
        watcher?.stop()
        requests.finish()
        await worker.value
        return state.withLock { state in
            defer { state.served = [:] }
            return state.served.values.map(\.plugin)
        }
    }

    // MARK: Restoring registrations

    private func restoreNow() async throws {
        let served = state.withLock { $0.served.sorted { $0.key < $1.key }.map(\.value) }
        let current = Set(core.servedTypes)
        var registered = Set<String>()
        var subscriptionCount = 0
        for entry in served {
            for type in entry.plugin.agentTypes where current.contains(type.name) {
                try await connection.register(agentType: type.name)
                registered.insert(type.name)
                for (kind, id) in entry.subscriptions[type.name] ?? [:] {
                    do {
                        try await connection.add(Subscription(id: id, agentType: type.name, kind: kind))
                    } catch let error as TransportError where error.status.code == .alreadyExists {
                        // The host kept it (the stream broke but the host did not restart).
                    }
                    subscriptionCount += 1
                }
            }
        }
        state.withLock { $0.registered = registered }
        logger.info("agent types and subscriptions registered again", metadata: [
            "agent.types": "\(registered.sorted())", "subscriptions": "\(subscriptionCount)",
        ])
    }

    // MARK: Rescanning

    private func rescanNow() async {
        guard !state.withLock({ $0.stopped }) else { return }
        let directory = runtime.configuration.pluginDirectory
        let files: [String]
        do {
            files = try PluginLoader.pluginFiles(in: directory)
        } catch {
            logger.error("cannot read the plugin directory", metadata: [
                "plugin.directory": "\(directory)", "error": "\(error.localizedDescription)",
            ])
            return
        }
        var hashes: [String: String] = [:]
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else { continue }
            hashes[file] = ContentHash.of(data)
        }
        let (served, refused) = state.withLock { ($0.served, $0.refused) }
        for (path, entry) in served where hashes[path] == nil {
            await remove(entry, path: path)
        }
        state.withLock { state in
            for path in state.refused.keys where hashes[path] == nil { state.refused[path] = nil }
        }
        for path in files {
            guard let hash = hashes[path] else { continue }
            if let entry = served[path] {
                if entry.plugin.contentHash != hash { await replace(entry, path: path) }
            } else if refused[path] != hash {
                await add(path: path)
            }
        }
    }

    private func refuse(_ error: PluginLoadError, keeping old: LoadedPlugin? = nil) {
        var metadata: Logger.Metadata = [
            "plugin.path": "\(error.path)", "reason": "\(error.reason)", "code": "\(error.code)",
        ]
        if let data = FileManager.default.contents(atPath: error.path) {
            let hash = ContentHash.of(data)
            metadata["plugin.hash"] = "\(hash)"
            state.withLock { $0.refused[error.path] = hash }
        }
        if let old {
            metadata["serving.version"] = "\(old.version)"
            metadata["serving.hash"] = "\(old.contentHash)"
            logger.error("new plugin version refused; the old version keeps serving", metadata: metadata)
        } else {
            logger.error("plugin refused", metadata: metadata)
        }
    }

    /// Registers new agent types with the host; returns those the host accepted.
    private func register(_ types: [PluginAgentType], plugin: LoadedPlugin, path: String) async -> [PluginAgentType] {
        var accepted: [PluginAgentType] = []
        for type in types {
            if state.withLock({ $0.registered.contains(type.name) }) {
                accepted.append(type)
                continue
            }
            do {
                try await connection.register(agentType: type.name)
                state.withLock { _ = $0.registered.insert(type.name) }
                accepted.append(type)
            } catch {
                logger.error("agent type refused by the host", metadata: [
                    "plugin": "\(plugin.name)", "plugin.path": "\(path)", "agent.type": "\(type.name)",
                    "error": "\(error)",
                ])
            }
        }
        return accepted
    }

    /// Brings the host's subscriptions for `type` in line with what it declares; returns the
    /// subscription ids by kind.
    private func subscribe(_ type: PluginAgentType, had existing: [Subscription.Kind: String]) async -> [Subscription.Kind: String] {
        var result: [Subscription.Kind: String] = [:]
        let wanted = Set(type.subscriptions)
        for (kind, id) in existing {
            if wanted.contains(kind) {
                result[kind] = id
            } else {
                do {
                    try await connection.removeSubscription(id: id)
                } catch {
                    logger.warning("cannot remove a subscription from the host", metadata: [
                        "agent.type": "\(type.name)", "subscription.id": "\(id)", "error": "\(error)",
                    ])
                }
            }
        }
        for kind in type.subscriptions where result[kind] == nil {
            let subscription = Subscription(
                id: "\(runtime.configuration.clientID)/\(type.name)/\(UUID().uuidString.lowercased())",
                agentType: type.name, kind: kind)
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
        return result
    }

    private func unsubscribe(_ subscriptions: [Subscription.Kind: String], type: String) async {
        for id in subscriptions.values {
            do {
                try await connection.removeSubscription(id: id)
            } catch {
                logger.warning("cannot remove a subscription from the host", metadata: [
                    "agent.type": "\(type)", "subscription.id": "\(id)", "error": "\(error)",
                ])
            }
        }
    }

    /// Runs the configured probe on `path`; false (after logging the refusal) if it fails.
    private func probe(_ path: String, keeping old: LoadedPlugin? = nil) -> Bool {
        guard let probe = runtime.configuration.probe else { return true }
        switch probe.check(path) {
        case .passed:
            return true
        case .refused(let reason):
            refuse(PluginLoadError(code: .notLoadable, path: path, reason: reason), keeping: old)
            return false
        }
    }

    private func add(path: String) async {
        guard probe(path) else { return }
        let plugin: LoadedPlugin
        do {
            plugin = try runtime.loader.load(
                path: path, settings: runtime.configuration.pluginSettings,
                takenAgentTypes: Set(core.servedTypes))
        } catch {
            refuse(error)
            return
        }
        let accepted = await register(plugin.agentTypes, plugin: plugin, path: path)
        core.serve(accepted)
        var subscriptions: [String: [Subscription.Kind: String]] = [:]
        for type in accepted { subscriptions[type.name] = await subscribe(type, had: [:]) }
        state.withLock { $0.served[path] = Served(plugin: plugin, subscriptions: subscriptions) }
        logger.info("plugin loaded", metadata: [
            "plugin": "\(plugin.name)", "plugin.version": "\(plugin.version)", "plugin.path": "\(path)",
            "plugin.hash": "\(plugin.contentHash)", "agent.types": "\(accepted.map(\.name))",
            "plugin.swift": "\(plugin.isSwift)",
        ])
    }

    private func replace(_ old: Served, path: String) async {
        if old.plugin.isSwift {
            let (retired, limit) = (state.withLock { $0.retiredSwiftImages }, runtime.configuration.maxRetiredSwiftImages)
            if retired >= limit {
                if let data = FileManager.default.contents(atPath: path) {
                    state.withLock { $0.refused[path] = ContentHash.of(data) }
                }
                logger.error("new plugin version refused; the old version keeps serving", metadata: [
                    "plugin.path": "\(path)", "plugin": "\(old.plugin.name)",
                    "reason": "\(retired) retired versions of Swift plugins are mapped already (the limit is \(limit)); Swift images can never be unloaded, so restart the runtime to replace it",
                ])
                return
            }
        }
        guard probe(path, keeping: old.plugin) else { return }
        let oldNames = Set(old.plugin.agentTypes.map(\.name))
        let new: LoadedPlugin
        do {
            new = try runtime.loader.load(
                path: path, settings: runtime.configuration.pluginSettings,
                takenAgentTypes: Set(core.servedTypes).subtracting(oldNames))
        } catch {
            refuse(error, keeping: old.plugin)
            return
        }
        let accepted = await register(new.agentTypes, plugin: new, path: path)
        let acceptedNames = Set(accepted.map(\.name))
        let withdrawn = oldNames.subtracting(acceptedNames)
        // The swap: from here new messages go to the new version; agents move over between
        // two messages; the old version is unloaded once nothing runs in it.
        core.serve(accepted, withdrawing: withdrawn)
        core.retire(old.plugin)
        if old.plugin.isSwift { state.withLock { $0.retiredSwiftImages += 1 } }
        var subscriptions: [String: [Subscription.Kind: String]] = [:]
        for type in accepted {
            subscriptions[type.name] = await subscribe(type, had: old.subscriptions[type.name] ?? [:])
        }
        for name in withdrawn { await unsubscribe(old.subscriptions[name] ?? [:], type: name) }
        state.withLock { $0.served[path] = Served(plugin: new, subscriptions: subscriptions) }
        logger.info("plugin replaced", metadata: [
            "plugin": "\(new.name)", "plugin.path": "\(path)",
            "plugin.version": "\(new.version)", "plugin.hash": "\(new.contentHash)",
            "previous.version": "\(old.plugin.version)", "previous.hash": "\(old.plugin.contentHash)",
            "agent.types": "\(accepted.map(\.name))", "agent.types.withdrawn": "\(withdrawn.sorted())",
        ])
    }

    private func remove(_ entry: Served, path: String) async {
        let names = Set(entry.plugin.agentTypes.map(\.name))
        core.serve([], withdrawing: names)
        core.retire(entry.plugin)
        if entry.plugin.isSwift { state.withLock { $0.retiredSwiftImages += 1 } }
        for (name, subscriptions) in entry.subscriptions { await unsubscribe(subscriptions, type: name) }
        state.withLock { _ = $0.served.removeValue(forKey: path) }
        logger.info("plugin removed", metadata: [
            "plugin": "\(entry.plugin.name)", "plugin.version": "\(entry.plugin.version)",
            "plugin.path": "\(path)", "plugin.hash": "\(entry.plugin.contentHash)",
            "agent.types.withdrawn": "\(names.sorted())",
        ])
    }
}
