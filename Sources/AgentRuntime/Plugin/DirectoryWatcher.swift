import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Watches a directory with inotify and calls `onChange` once things have been quiet for
/// `quietPeriod` after a burst of changes (a file written, renamed in or out, or deleted; an
/// event-queue overflow counts as a change too).
final class DirectoryWatcher: Sendable {
    private struct State {
        var stopped = false
        /// Changes seen so far; a rescan fires only if none came during its quiet period.
        var generation = 0
    }

    private let descriptor: Int32
    private let watch: Int32
    private let state = Mutex(State())
    private let quietPeriod: Duration
    private let onChange: @Sendable () -> Void

    init(directory: String, quietPeriod: Duration, onChange: @escaping @Sendable () -> Void) throws {
        descriptor = inotify_init1(Int32(IN_CLOEXEC))
        guard descriptor >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        let mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE)
        watch = inotify_add_watch(descriptor, directory, mask)
        guard watch >= 0 else {
            let code = errno
            close(descriptor)
            throw POSIXError(POSIXErrorCode(rawValue: code) ?? .EIO)
        }
        self.quietPeriod = quietPeriod
        self.onChange = onChange
        let thread = Thread { [self] in readLoop() }
        thread.name = "agentd-plugin-watcher"
        thread.start()
    }

    private func readLoop() {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count <= 0 {
                if count < 0 && errno == EINTR { continue }
                close(descriptor)
                return
            }
            // Stopped: the watch's removal woke this read (IN_IGNORED); the thread ends here.
            if state.withLock({ $0.stopped }) {
                close(descriptor)
                return
            }
            if buffer.withUnsafeBytes({ Self.mentionsPlugin($0.prefix(count)) }) { changed() }
        }
    }

    /// Whether a batch of inotify events touches a `.so` file (temporary names starting with
    /// '.' are ignored; an overflow counts).
    private static func mentionsPlugin(_ events: UnsafeRawBufferPointer.SubSequence) -> Bool {
        var offset = events.startIndex
        let header = MemoryLayout<inotify_event>.size
        while offset + header <= events.endIndex {
            let mask = events.base.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
            let nameLength = Int(events.base.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
            if mask & UInt32(IN_Q_OVERFLOW) != 0 { return true }
            let nameStart = offset + header
            let nameBytes = events.base[nameStart..<min(nameStart + nameLength, events.endIndex)]
            let name = String(decoding: nameBytes.prefix { $0 != 0 }, as: UTF8.self)
            if name.hasSuffix(".so") && !name.hasPrefix(".") { return true }
            offset = nameStart + nameLength
        }
        return false
    }

    /// Restarts the quiet period; the rescan fires when it ends without another change.
    private func changed() {
        let mine: Int = state.withLock { state in
            state.generation += 1
            return state.generation
        }
        let quietPeriod = self.quietPeriod
        Task { [weak self] in
            try? await Task.sleep(for: quietPeriod)
            guard let self else { return }
            let fire = self.state.withLock { !$0.stopped && $0.generation == mine }
            if fire { self.onChange() }
        }
    }

    func stop() {
        state.withLock { $0.stopped = true }
        // Closing the descriptor from here would race the blocked read: removing the watch
        // wakes it with IN_IGNORED, and the thread closes it and exits.
        inotify_rm_watch(descriptor, watch)
    }
}
