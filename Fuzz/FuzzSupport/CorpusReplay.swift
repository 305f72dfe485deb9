#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The `main` of a fuzz target in a build without libFuzzer: it runs the target once on each
/// input named on the command line, so that a plain `swift build` links the fuzz targets and a
/// crash found by `scripts/fuzz` can be replayed, and debugged, without the sanitizers.
///
/// A fuzz target defines `LLVMFuzzerTestOneInput` always, and this `main` only when it is not
/// built for libFuzzer (`scripts/fuzz` passes `-DLIBFUZZER`; libFuzzer brings its own `main`):
///
/// ```swift
/// #if !LIBFUZZER
/// @main
/// extension IniFuzz {
///     static func main() { CorpusReplay.main(target: "IniFuzz", run: IniFuzz.run) }
/// }
/// #endif
/// ```
///
/// `IniFuzz Fuzz/Corpus/ini crash-0123` then runs every file in the folder, and the crash
/// artifact. Arguments starting with `-` (libFuzzer's options) are ignored.
public enum CorpusReplay {
    /// Runs `run` on the contents of each file named in `CommandLine.arguments`, and of each
    /// file in each folder named there (not recursively; names starting with `.` skipped).
    /// Exits with status 2 if an argument cannot be read; a crash in `run` is the target's own.
    public static func main(target: String, run: (UnsafeRawBufferPointer) -> Void) -> Never {
        let arguments = CommandLine.arguments.dropFirst().filter { !$0.hasPrefix("-") }
        guard !arguments.isEmpty else {
            printError(
                "usage: \(target) FILE-OR-FOLDER...  (built without libFuzzer: runs the inputs once; scripts/fuzz fuzzes)")
            exit(2)
        }
        var count = 0
        for argument in arguments {
            let files: [String]
            do {
                files = try inputFiles(argument)
            } catch {
                printError("\(target): \(error)")
                exit(2)
            }
            for file in files {
                let bytes: [UInt8]
                do {
                    bytes = try contents(of: file)
                } catch {
                    printError("\(target): \(error)")
                    exit(2)
                }
                bytes.withUnsafeBytes { run($0) }
                count += 1
            }
        }
        print("\(target): ran \(count) input\(count == 1 ? "" : "s"), no crash")
        exit(0)
    }

    /// Why an input could not be read: the call, the path and the system's reason.
    struct ReadError: Error, CustomStringConvertible {
        var call: String
        var path: String
        var number: Int32
        var description: String { "\(call) \(path): \(String(cString: strerror(number)))" }
    }

    /// `path` itself, or the regular files in it (sorted, so runs are repeatable) if it is a folder.
    static func inputFiles(_ path: String) throws(ReadError) -> [String] {
        var status = stat()
        guard stat(path, &status) == 0 else { throw ReadError(call: "stat", path: path, number: errno) }
        guard status.st_mode & S_IFMT == S_IFDIR else { return [path] }
        guard let directory = opendir(path) else { throw ReadError(call: "opendir", path: path, number: errno) }
        defer { closedir(directory) }
        var files: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            guard !name.hasPrefix(".") else { continue }
            let file = path.hasSuffix("/") ? path + name : path + "/" + name
            var fileStatus = stat()
            if stat(file, &fileStatus) == 0, fileStatus.st_mode & S_IFMT == S_IFREG { files.append(file) }
        }
        return files.sorted()
    }

    /// The whole contents of a regular file.
    static func contents(of path: String) throws(ReadError) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw ReadError(call: "open", path: path, number: errno) }
        defer { close(descriptor) }
        var contents: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw ReadError(call: "read", path: path, number: errno)
            }
            if count == 0 { return contents }
            contents.append(contentsOf: chunk[0..<count])
        }
    }

    /// Writes a line to standard error (`stderr` itself is not concurrency-safe in Swift 6).
    static func printError(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }
}
