import AgentCore
import AgentRuntime
import Foundation
import Logging
import Synchronization

/// Log records a test can wait for.
final class LogCapture: Sendable {
    struct Record: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }
    private struct State: ~Copyable {
        var records: [Record] = []
        var waiters: [(id: Int, predicate: @Sendable (Record) -> Bool, continuation: CheckedContinuation<Record?, Never>)] = []
        var nextID = 0
    }
    private let state = Mutex(State())

    var all: [Record] { state.withLock { $0.records } }

    func append(_ record: Record) {
        let ready = state.withLock { state -> [CheckedContinuation<Record?, Never>] in
            state.records.append(record)
            let matching = state.waiters.filter { $0.predicate(record) }
            state.waiters.removeAll { $0.predicate(record) }
            return matching.map(\.continuation)
        }
        for continuation in ready { continuation.resume(returning: record) }
    }

    /// Waits for a record matching `predicate` logged from now on (or already logged after
    /// `since` records), up to `timeout`.
    func wait(since: Int? = nil, timeout: Duration = .seconds(10),
              for predicate: @escaping @Sendable (Record) -> Bool) async -> Record? {
        await withCheckedContinuation { continuation in
            let found: Record?? = state.withLock { state in
                if let since, let hit = state.records.dropFirst(since).first(where: predicate) { return .some(hit) }
                state.nextID += 1
                state.waiters.append((state.nextID, predicate, continuation))
                return nil
            }
            if let found {
                continuation.resume(returning: found)
                return
            }
            let id = state.withLock { $0.nextID }
            // A timer per wait, ended as soon as the wait is over (no task outlives it).
            Task { [weak self] in
                let deadline = ContinuousClock.now + timeout
                while ContinuousClock.now < deadline {
                    guard let self, self.state.withLock({ state in state.waiters.contains { $0.id == id } }) else { return }
                    try? await Task.sleep(for: .milliseconds(20))
                }
                let expired = self?.state.withLock { state -> CheckedContinuation<Record?, Never>? in
                    guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                    return state.waiters.remove(at: index).continuation
                }
                expired?.resume(returning: nil)
            }
        }
    }

    var count: Int { state.withLock { $0.records.count } }

    func logger() -> Logger {
        var logger = Logger(label: "test") { _ in CaptureHandler(capture: self) }
        logger.logLevel = .debug
        return logger
    }

    /// The records matching `predicate` (start-up logs are complete once `start()` returned).
    func records(where predicate: (Record) -> Bool) -> [Record] { all.filter(predicate) }
}

struct CaptureHandler: LogHandler {
    let capture: LogCapture
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
             file: String, function: String, line: UInt) {
        var merged: [String: String] = [:]
        for (key, value) in self.metadata.merging(metadata ?? [:], uniquingKeysWith: { $1 }) {
            merged[key] = "\(value)"
        }
        capture.append(.init(level: level, message: "\(message)", metadata: merged))
    }
}

/// A runtime with an embedded host on 127.0.0.1:0, serving copies of plugins the package
/// built, and a client connected to its host.
struct RuntimeHarness {
    let runtime: AgentRuntime
    let client: WorkerClient
    let log: LogCapture
    let pluginDirectory: String

    /// The folder the package's products are in (the test binary's own folder).
    static var buildDirectory: String {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().path
    }

    /// - Parameter plugins: (file name in the plugin folder, product name) pairs; files load
    ///   in name order.
    static func start(
        plugins: [(file: String, product: String)], settings: [String: [String: String]] = [:],
        rpcTimeout: Duration = .seconds(10), extraFiles: [(String, [UInt8])] = [],
        maxRetiredSwiftImages: Int = 16, mailboxLimit: Int = 10_000, handlerTimeout: Duration = .seconds(60),
        probe: Bool = false, shutdownGracePeriod: Duration = .seconds(5)
    ) async throws -> RuntimeHarness {
        let directory = NSTemporaryDirectory() + "agentd-runtime-test-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for plugin in plugins {
            try FileManager.default.copyItem(
                atPath: "\(buildDirectory)/lib\(plugin.product).so", toPath: "\(directory)/\(plugin.file)")
        }
        for (name, bytes) in extraFiles {
            FileManager.default.createFile(atPath: "\(directory)/\(name)", contents: Data(bytes))
        }
        let log = LogCapture()
        let runtime = try AgentRuntime(
            configuration: .init(
                embeddedHost: .init(listen: "127.0.0.1:0"), rpcTimeout: rpcTimeout, workers: 4,
                pluginDirectory: directory,
                probe: probe ? PluginProbe(executable: "\(buildDirectory)/agentd") : nil,
                shutdownGracePeriod: shutdownGracePeriod,
                maxRetiredSwiftImages: maxRetiredSwiftImages, mailboxLimit: mailboxLimit,
                handlerTimeout: handlerTimeout, pluginSettings: settings),
            logger: log.logger())
        try await runtime.start()
        let client = try WorkerClient(address: runtime.hostAddress!)
        return RuntimeHarness(runtime: runtime, client: client, log: log, pluginDirectory: directory)
    }

    func stop() async {
        await client.close()
        await runtime.shutdown()
        try? FileManager.default.removeItem(atPath: pluginDirectory)
    }

    /// Sends a JSON RPC and returns the answer's text.
    func call(_ target: String, _ type: String, _ json: String) async throws -> String {
        let response = try await client.send(Array(json.utf8), messageType: type, to: AgentID(target)!)
        return String(decoding: response.payload, as: UTF8.self)
    }
}

/// Runs `body` with a started harness and always stops it.
func withRuntime(
    plugins: [(file: String, product: String)], settings: [String: [String: String]] = [:],
    rpcTimeout: Duration = .seconds(10), extraFiles: [(String, [UInt8])] = [], maxRetiredSwiftImages: Int = 16,
    mailboxLimit: Int = 10_000, handlerTimeout: Duration = .seconds(60), probe: Bool = false,
    _ body: (RuntimeHarness) async throws -> Void
) async throws {
    let harness = try await RuntimeHarness.start(
        plugins: plugins, settings: settings, rpcTimeout: rpcTimeout, extraFiles: extraFiles,
        maxRetiredSwiftImages: maxRetiredSwiftImages, mailboxLimit: mailboxLimit, handlerTimeout: handlerTimeout,
        probe: probe)
    do {
        try await body(harness)
    } catch {
        await harness.stop()
        throw error
    }
    await harness.stop()
}
