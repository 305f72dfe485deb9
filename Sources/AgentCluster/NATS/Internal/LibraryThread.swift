import CNATS
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A thread of ours that calls into nats.c (blocking calls, key-value watches): a named pthread
/// that releases nats.c's thread-local memory (its per-thread error stack, its TLS state) before
/// it ends, as `nats_ReleaseThreadMemory`'s documentation requires of threads the library did
/// not create.
final class LibraryThread: Sendable {
    // Written once, by `pthread_create` in `start`, before the instance is shared.
    private nonisolated(unsafe) var handle = pthread_t()

    private final class Start {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }

    private init() {}

    /// Starts a thread named `name` (the kernel keeps the first 15 bytes) running `body`.
    /// - Parameter detached: a detached thread cannot be joined; its resources go when it ends.
    @discardableResult
    static func start(name: String, detached: Bool = false, _ body: @escaping @Sendable () -> Void) -> LibraryThread {
        let thread = LibraryThread()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, 512 << 10)
        if detached { pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED)) }
        let context = Unmanaged.passRetained(Start(name: name, body: body)).toOpaque()
        let result = pthread_create(&thread.handle, &attributes, { raw in
            let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            cnats_set_thread_name(start.name)
            start.body()
            nats_ReleaseThreadMemory()
            return nil
        }, context)
        precondition(result == 0, "pthread_create failed with \(result) for thread \(name)")
        return thread
    }

    /// Waits for the thread to end. Call it once, from another thread, and only for a thread
    /// that was not started detached.
    func join() {
        pthread_join(handle, nil)
    }

    /// Whether the calling thread is this one.
    var isCurrent: Bool { pthread_equal(pthread_self(), handle) != 0 }
}
