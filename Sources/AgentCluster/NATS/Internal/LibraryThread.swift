import CNATS
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A thread of ours that calls into nats.c (blocking calls, closing): a named, detached pthread
/// that releases nats.c's thread-local memory (its per-thread error stack, its TLS state) before
/// it ends, as `nats_ReleaseThreadMemory`'s documentation requires of threads the library did
/// not create.
enum LibraryThread {
    private final class Start {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }

    /// Starts a detached thread named `name` (the kernel keeps the first 15 bytes) running
    /// `body`; its resources go when it ends.
    static func start(name: String, _ body: @escaping @Sendable () -> Void) {
        var thread = pthread_t()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, 512 << 10)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let context = Unmanaged.passRetained(Start(name: name, body: body)).toOpaque()
        let result = pthread_create(&thread, &attributes, { raw in
            let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            cnats_set_thread_name(start.name)
            start.body()
            nats_ReleaseThreadMemory()
            return nil
        }, context)
        precondition(result == 0, "pthread_create failed with \(result) for thread \(name)")
    }
}
