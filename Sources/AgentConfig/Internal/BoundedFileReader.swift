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

    /// Why a file could not be read whole.
    enum Failure: Error {
        /// `open` or `read` failed.
        case system(SystemError)
        /// The file is larger than the limit.
        case tooLarge
        /// Not a regular file (a folder, device, FIFO or socket), refused when asked.
        case notRegularFile(kind: String)
    }

    /// - Throws: ``ConfigurationError`` (``ConfigurationError/Code/fileUnreadable`` with the
    ///   ``SystemError`` as cause, or ``ConfigurationError/Code/fileTooLarge``).
    static func contents(ofFile path: String, limit: Int) throws(ConfigurationError) -> [UInt8] {
        do throws(Failure) {
            return try readWhole(path, limit: limit)
        } catch {
            switch error {
            case .system(let error):
                throw ConfigurationError(
                    .fileUnreadable, "cannot \(error.call) the configuration file: \(String(cString: strerror(error.number)))",
                    path: path, cause: error)
            case .tooLarge:
                throw ConfigurationError(
                    .fileTooLarge,
                    "the file is larger than 1 MiB (\(limit) bytes), the most a configuration file may be",
                    path: path)
            case .notRegularFile:
                preconditionFailure("regular files are only required when asked")
            }
        }
    }

    /// The bytes of the file at `path`, if it has at most `limit` of them.
    /// - Parameter regularFileOnly: refuse anything but a regular file, without blocking (a
    ///   FIFO, or a terminal, could otherwise keep the read waiting forever).
    static func readWhole(_ path: String, limit: Int, regularFileOnly: Bool = false) throws(Failure) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | (regularFileOnly ? O_NONBLOCK : 0))
        guard descriptor >= 0 else {
            throw .system(SystemError(call: "open", number: errno))
        }
        defer { close(descriptor) }
        if regularFileOnly {
            var status = stat()
            guard fstat(descriptor, &status) == 0 else {
                throw .system(SystemError(call: "stat", number: errno))
            }
            switch status.st_mode & S_IFMT {
            case S_IFREG: break
            case S_IFDIR: throw .notRegularFile(kind: "a folder")
            case S_IFIFO: throw .notRegularFile(kind: "a FIFO")
            case S_IFSOCK: throw .notRegularFile(kind: "a socket")
            default: throw .notRegularFile(kind: "a device")
            }
        }
        var contents: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { buffer in
                read(descriptor, buffer.baseAddress, buffer.count)
            }
            if count < 0 {
                let number = errno
                if number == EINTR { continue }
                throw .system(SystemError(call: "read", number: number))
            }
            if count == 0 { return contents }
            contents.append(contentsOf: chunk[0..<count])
            if contents.count > limit { throw .tooLarge }
        }
    }
}
