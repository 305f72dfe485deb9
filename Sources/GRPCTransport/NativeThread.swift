import CGRPC
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A named operating-system thread running a closure (pthreads; no Foundation), joinable.
///
/// Used for the completion-queue pollers here and the runtime's handler threads, which must
/// be real threads (they block in the C core and in plugin code), not tasks.
public final class NativeThread: Sendable {
    // The handle is written once, by `pthread_create` in `start`, before the instance is shared.
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
    public static func start(name: String, stackSize: Int = 1 << 20,
                             _ body: @escaping @Sendable () -> Void) -> NativeThread {
        let thread = NativeThread()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, max(stackSize, 64 << 10))
        let context = Unmanaged.passRetained(Start(name: name, body: body)).toOpaque()
        let result = pthread_create(&thread.handle, &attributes, { raw in
            let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            cgrpc_set_thread_name(start.name)
            start.body()
            return nil
        }, context)
        precondition(result == 0, "pthread_create failed with \(result) for thread \(name)")
        return thread
    }

    /// Waits for the thread to end. Call it once, from another thread.
    public func join() {
        pthread_join(handle, nil)
    }
}
