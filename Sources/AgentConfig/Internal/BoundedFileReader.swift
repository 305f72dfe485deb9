#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Reads a file whole, but never more than a limit: a configuration path may name anything,
/// `/dev/zero` included.
enum BoundedFileReader {
    /// The system's reason a call failed (`errno`).
    struct SystemError: Error, Sendable, CustomStringConvertible {
        var call: String
        var number: Int32
        var description: String { "\(call): \(String(cString: strerror(number))) (errno \(number))" }
    }

    /// - Throws: ``ConfigurationError`` (``ConfigurationError/Code/fileUnreadable`` with the
    ///   ``SystemError`` as cause, or ``ConfigurationError/Code/fileTooLarge``).
    static func contents(ofFile path: String, limit: Int) throws(ConfigurationError) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            let error = SystemError(call: "open", number: errno)
            throw ConfigurationError(
                .fileUnreadable, "cannot open the configuration file: \(String(cString: strerror(error.number)))",
                path: path, cause: error)
        }
        defer { close(descriptor) }
        var contents: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { buffer in
                read(descriptor, buffer.baseAddress, buffer.count)
            }
            if count < 0 {
                let number = errno
                if number == EINTR { continue }
                let error = SystemError(call: "read", number: number)
                throw ConfigurationError(
                    .fileUnreadable, "cannot read the configuration file: \(String(cString: strerror(number)))",
                    path: path, cause: error)
            }
            if count == 0 { return contents }
            contents.append(contentsOf: chunk[0..<count])
            if contents.count > limit {
                throw ConfigurationError(
                    .fileTooLarge,
                    "the file is larger than 1 MiB (\(limit) bytes), the most a configuration file may be",
                    path: path)
            }
        }
    }
}
