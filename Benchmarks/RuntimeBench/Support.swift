import AgentCore
import AgentHost
import AgentRuntime
import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// MARK: Time and statistics

/// CLOCK_MONOTONIC in nanoseconds: the clock the bench plugins stamp arrivals with.
func nowNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// The `p` quantile of sorted nanosecond samples, in microseconds.
func quantileUs(_ sorted: [UInt64], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1000
}

func median(_ values: [Double]) -> Double {
    let sorted = values.filter { !$0.isNaN }.sorted()
    guard !sorted.isEmpty else { return .nan }
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

func ms(_ ns: UInt64) -> Double { Double(ns) / 1e6 }

func fail(_ text: String) -> Never {
    FileHandle.standardError.write("runtime-bench: \(text)\n".data(using: .utf8)!)
    exit(1)
}

func note(_ text: String) {
    FileHandle.standardError.write("runtime-bench: \(text)\n".data(using: .utf8)!)
}

// MARK: Where the package's products are

enum Products {
    /// The folder this executable is in: the build folder, holding the plugin libraries too.
    static let directory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().path

    static func library(_ product: String) -> String {
        let path = "\(directory)/lib\(product).so"
        guard FileManager.default.fileExists(atPath: path) else {
            fail("\(path) is missing: build every product first (swift build -c release)")
        }
        return path
    }

    static func bytes(_ product: String) -> Data {
        guard let data = FileManager.default.contents(atPath: library(product)) else { fail("cannot read lib\(product).so") }
        return data
    }
}

// MARK: Memory

/// A /proc file's whole text (Foundation's readers stop after the first chunk of files that
/// report size 0, such as /proc/self/smaps).
func readProcFile(_ path: String) -> String? {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { return nil }
    defer { close(descriptor) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        if count <= 0 { break }
        bytes.append(contentsOf: chunk[0..<count])
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// VmRSS of this process, in bytes.
func residentBytes() -> Int {
    guard let text = readProcFile("/proc/self/status") else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        if fields.count >= 2, let kib = Int(fields[1]) { return kib * 1024 }
    }
    return 0
}

/// The mappings of files whose path contains `fragment`: how many distinct files, and the sum
/// of their resident pages (bytes), from /proc/self/smaps.
func mappedFiles(containing fragment: String) -> (files: Int, residentBytes: Int) {
    guard let text = readProcFile("/proc/self/smaps") else { return (0, 0) }
    var files = Set<String>()
    var resident = 0
    var inside = false
    for line in text.split(separator: "\n") {
        // A mapping's header starts with its address range ("7f12...-7f13... r-xp ...").
        if let first = line.first, first.isHexDigit, let space = line.firstIndex(of: " "),
           line[..<space].contains("-") {
            let path = line.firstIndex(of: "/").map { String(line[$0...]) } ?? ""
            inside = path.contains(fragment)
            if inside { files.insert(path) }
        } else if inside, line.hasPrefix("Rss:") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if fields.count >= 2, let kib = Int(fields[1]) { resident += kib * 1024 }
        }
    }
    return (files.count, resident)
}

// MARK: Logs

/// The runtime's log lines, time-stamped, for the benchmark to wait on; warnings and errors
/// also go to standard error.
final class LogStore: Sendable {
    struct Record: Sendable {
        var time: UInt64
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    private let records = Mutex<[Record]>([])

    var count: Int { records.withLock { $0.count } }

    func append(_ record: Record) {
        records.withLock { $0.append(record) }
        if record.level >= .warning {
            let metadata = record.metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            note("[runtime \(record.level)] \(record.message) \(metadata)")
        }
    }

    func records(since mark: Int) -> [Record] {
        records.withLock { Array($0.dropFirst(mark)) }
    }

    /// Waits (polling every millisecond) for a record after the first `mark` matching
    /// `predicate`; nil after `timeout`.
    func wait(since mark: Int, timeout: Duration = .seconds(15), _ predicate: (Record) -> Bool) async -> Record? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let hit = records(since: mark).first(where: predicate) { return hit }
            try? await Task.sleep(for: .milliseconds(1))
        }
        return nil
    }

    func logger() -> Logger {
        var logger = Logger(label: "runtime-bench") { _ in StoreHandler(store: self) }
        logger.logLevel = .info
        return logger
    }
}

struct StoreHandler: LogHandler {
    let store: LogStore
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        var merged: [String: String] = [:]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) { merged[key] = "\(value)" }
        store.append(.init(time: nowNs(), level: event.level, message: "\(event.message)", metadata: merged))
    }
}

// MARK: A runtime with an embedded host

/// A runtime with an embedded host on 127.0.0.1:0 serving copies of built plugins from a
/// temporary plugin folder.
struct BenchRuntime {
    let runtime: AgentRuntime
    let directory: String
    let log: LogStore

    /// - Parameter plugins: (file name in the plugin folder, product) pairs.
    static func start(plugins: [(file: String, product: String)], watch: Bool, maxRetiredSwiftImages: Int = 16) async throws -> BenchRuntime {
        let directory = NSTemporaryDirectory() + "runtime-bench-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for plugin in plugins {
            try FileManager.default.copyItem(atPath: Products.library(plugin.product), toPath: "\(directory)/\(plugin.file)")
        }
        let log = LogStore()
        let runtime = try AgentRuntime(
            configuration: .init(
                embeddedHost: .init(listen: "127.0.0.1:0"), rpcTimeout: .seconds(30),
                pluginDirectory: directory, watchPlugins: watch, maxRetiredSwiftImages: maxRetiredSwiftImages),
            logger: log.logger())
        try await runtime.start()
        return BenchRuntime(runtime: runtime, directory: directory, log: log)
    }

    func client() throws -> WorkerClient {
        guard let address = runtime.hostAddress else { fail("the runtime has no host address") }
        return try WorkerClient(address: address)
    }

    func stop(_ clients: [WorkerClient]) async {
        for client in clients { await client.close() }
        await runtime.shutdown()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Writes `bytes` beside the plugin folder's `name` under a hidden temporary name (the
    /// watcher ignores it); ``commit(_:)`` then renames it in.
    func stage(_ bytes: Data, as name: String) throws -> (temporary: String, final: String) {
        let temporary = "\(directory)/.\(name).tmp"
        try? FileManager.default.removeItem(atPath: temporary)
        guard FileManager.default.createFile(atPath: temporary, contents: bytes) else { fail("cannot write \(temporary)") }
        return (temporary, "\(directory)/\(name)")
    }

    /// The atomic rename that makes a staged file the plugin folder's new version.
    func commit(_ staged: (temporary: String, final: String)) {
        guard rename(staged.temporary, staged.final) == 0 else { fail("rename \(staged.temporary): errno \(errno)") }
    }
}

// MARK: Answers of the versioned plugin

/// The integer after `"name": ` in a JSON answer (the versioned plugin's fixed format).
func jsonInteger(_ payload: [UInt8], _ name: String) -> Int? {
    let text = String(decoding: payload, as: UTF8.self)
    guard let range = text.range(of: "\"\(name)\": ") else { return nil }
    return Int(text[range.upperBound...].prefix { $0.isNumber || $0 == "-" })
}

let emptyJSON = Array("{}".utf8)

extension WorkerClient {
    /// `Get` on versioned/`key`: (version, count).
    func versionedGet(_ key: String, timeout: Duration = .seconds(30)) async throws -> (version: Int, count: Int) {
        let response = try await send(emptyJSON, messageType: "Get", to: AgentID(type: "versioned", key: key), timeout: timeout)
        guard let version = jsonInteger(response.payload, "version"), let count = jsonInteger(response.payload, "count") else {
            throw RuntimeError("unexpected Get answer: \(String(decoding: response.payload, as: UTF8.self))")
        }
        return (version, count)
    }
}
