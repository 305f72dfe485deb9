import AgentCore
import AgentRuntime
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What reloading the Swift plugin N times costs in memory.
struct MemoryFigures {
    var reloads: Int
    var rssBefore = 0
    var rssAfter = 0
    /// Greeter images mapped (shadow copies, "(deleted)" once retired) and their resident
    /// pages, before and after.
    var imagesBefore = 0, imagesAfter = 0
    var imageResidentBefore = 0, imageResidentAfter = 0
    /// The control: the same number of reloads of the C plugin, after the Swift ones.
    var rssAfterC = 0
    var versionedImagesAfterC = 0
    var replacedLogged = 0
    var badReplies: [String] = []

    /// As `NAME=value` lines, for the parent process (each measurement runs in a fresh one).
    var lines: String {
        """
        reloads=\(reloads)
        rssBefore=\(rssBefore)
        rssAfter=\(rssAfter)
        imagesBefore=\(imagesBefore)
        imagesAfter=\(imagesAfter)
        imageResidentBefore=\(imageResidentBefore)
        imageResidentAfter=\(imageResidentAfter)
        rssAfterC=\(rssAfterC)
        versionedImagesAfterC=\(versionedImagesAfterC)
        replacedLogged=\(replacedLogged)
        badReplies=\(badReplies.count)

        """
    }

    init(reloads: Int) { self.reloads = reloads }

    init?(lines text: String) {
        var values: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            if parts.count == 2, let value = Int(parts[1]) { values[String(parts[0])] = value }
        }
        guard let reloads = values["reloads"], reloads > 0 else { return nil }
        self.reloads = reloads
        rssBefore = values["rssBefore"] ?? 0
        rssAfter = values["rssAfter"] ?? 0
        imagesBefore = values["imagesBefore"] ?? 0
        imagesAfter = values["imagesAfter"] ?? 0
        imageResidentBefore = values["imageResidentBefore"] ?? 0
        imageResidentAfter = values["imageResidentAfter"] ?? 0
        rssAfterC = values["rssAfterC"] ?? 0
        versionedImagesAfterC = values["versionedImagesAfterC"] ?? 0
        replacedLogged = values["replacedLogged"] ?? 0
        badReplies = Array(repeating: "see the child's standard error", count: values["badReplies"] ?? 0)
    }

    var perSwiftVersion: Double { Double(rssAfter - rssBefore) / Double(reloads) }
    var mappedPerSwiftVersion: Double { Double(imageResidentAfter - imageResidentBefore) / Double(reloads) }
    var perCReload: Double { Double(rssAfterC - rssAfter) / Double(reloads) }
}

let mib = 1024.0 * 1024.0

/// glibc's malloc_trim (not in Swift's Glibc module): returns free heap pages to the system.
@_silgen_name("malloc_trim") func mallocTrim(_ pad: Int) -> Int32

/// Returns freed heap to the system and lets detached unloads finish, so that RSS readings
/// show what stays.
func settle() async {
    try? await Task.sleep(for: .milliseconds(200))
    _ = mallocTrim(0)
}

func runSwiftMemory(reloads: Int) async throws -> MemoryFigures {
    var figures = MemoryFigures(reloads: reloads)
    let bench = try await BenchRuntime.start(
        plugins: [("greeter.so", "GreeterAgent"), ("versioned.so", "VersionedPluginV1")], watch: false,
        maxRetiredSwiftImages: reloads + 4)
    let client = try bench.client()
    func greet(_ round: Int) async {
        for call in 0..<20 {
            do {
                let response = try await client.send(
                    Array(#"{"name": "Ada"}"#.utf8), messageType: "Greeting", to: AgentID(type: "greeter", key: "k\(call % 4)"))
                let text = String(decoding: response.payload, as: UTF8.self)
                if !text.contains("Hello, Ada!") {
                    figures.badReplies.append("round \(round): \(text)")
                    note("bad Greeting reply after reload \(round): \(text)")
                }
            } catch {
                figures.badReplies.append("round \(round): \(error)")
                note("Greeting failed after reload \(round): \(error)")
            }
        }
    }
    /// The greeter's images: the loader maps shadow copies named <file base>-<hash>-<n>.so
    /// from its folder agentd-<pid>-<id>-plugins.
    func greeterImages() -> (files: Int, residentBytes: Int) { mappedFiles(containing: "-plugins/greeter-") }

    await greet(0)
    for _ in 0..<50 { _ = try await client.versionedGet("m") }
    await settle()
    figures.rssBefore = residentBytes()
    (figures.imagesBefore, figures.imageResidentBefore) = greeterImages()

    let original = Products.bytes("GreeterAgent")
    for round in 1...reloads {
        // A new version: the same image with bytes appended (ELF ignores them; the content
        // hash changes).
        let mark = bench.log.count
        bench.commit(try bench.stage(original + Data("runtime-bench version \(round)".utf8), as: "greeter.so"))
        await bench.runtime.rescan()
        if bench.log.records(since: mark).contains(where: { $0.message == "plugin replaced" && $0.metadata["plugin"] == "greeter-plugin" }) {
            figures.replacedLogged += 1
        }
        await greet(round)
    }
    await settle()
    figures.rssAfter = residentBytes()
    (figures.imagesAfter, figures.imageResidentAfter) = greeterImages()

    // Control: as many reloads of a C plugin, which is unmapped once retired.
    let images = [1: Products.bytes("VersionedPluginV1"), 2: Products.bytes("VersionedPluginV2")]
    for round in 1...reloads {
        bench.commit(try bench.stage(images[round % 2 == 1 ? 2 : 1]!, as: "versioned.so"))
        await bench.runtime.rescan()
        for _ in 0..<20 { _ = try await client.versionedGet("m") }
    }
    await settle()
    figures.rssAfterC = residentBytes()
    figures.versionedImagesAfterC = mappedFiles(containing: "-plugins/versioned-").files
    await bench.stop([client])
    return figures
}

/// Runs the measurement in a fresh process (this executable with `--memory-child`), so that
/// no earlier heap growth hides what the reloads add.
func runSwiftMemoryInChild(reloads: Int) -> MemoryFigures? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    process.arguments = ["--memory-child", "--swift-reloads", "\(reloads)"]
    let pipe = Pipe()
    process.standardOutput = pipe
    do { try process.run() } catch {
        note("cannot run the memory measurement: \(error)")
        return nil
    }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        note("the memory measurement exited with \(process.terminationStatus)")
        return nil
    }
    return MemoryFigures(lines: String(decoding: data, as: UTF8.self))
}
