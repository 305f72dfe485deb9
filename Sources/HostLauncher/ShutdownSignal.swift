#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// SIGTERM and SIGINT turned into a graceful shutdown, without Foundation, Dispatch or
/// ServiceLifecycle: the handler opens a latch (`sem_post`, which is async-signal-safe, and
/// works whichever thread the signal lands on); ``wait()`` waits for it on a thread of its own,
/// so that no thread of Swift's cooperative pool blocks.
enum ShutdownSignal {
    private static let latch = Latch()

    /// From now on SIGTERM and SIGINT no longer end the process: they release ``wait()`` and
    /// ``waitBlocking()``. Further signals while shutting down change nothing.
    static func install() {
        _ = latch  // made here, so that a handler only ever reads it
        for signo in [SIGTERM, SIGINT] {
            _ = signal(signo) { _ in
                let saved = errno
                ShutdownSignal.latch.open()
                errno = saved
            }
        }
    }

    /// Blocks the calling thread until SIGTERM or SIGINT has arrived (after ``install()``).
    static func waitBlocking() {
        latch.wait()
    }

    /// Returns once SIGTERM or SIGINT has arrived (after ``install()``).
    static func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let waiter = Unmanaged.passRetained(Waiter(continuation)).toOpaque()
            var thread = pthread_t()
            let started = pthread_create(&thread, nil, { raw in
                let waiter = Unmanaged<Waiter>.fromOpaque(raw!).takeRetainedValue()
                ShutdownSignal.latch.wait()
                waiter.continuation.resume()
                return nil
            }, waiter)
            precondition(started == 0, "cannot start the signal-waiting thread (error \(started))")
            pthread_detach(thread)
        }
    }

    private final class Waiter: Sendable {
        let continuation: CheckedContinuation<Void, Never>
        init(_ continuation: CheckedContinuation<Void, Never>) { self.continuation = continuation }
    }
}

/// A semaphore that, once opened, lets one waiter through (a POSIX `sem_t`: `open` may be
/// called from a signal handler).
public final class Latch: @unchecked Sendable {
    // @unchecked Sendable: the pointer is set in init and never changed; the sem_t it points
    // to is made to be used from several threads (and signal handlers) at once.
    private let semaphore: UnsafeMutablePointer<sem_t>

    public init() {
        semaphore = .allocate(capacity: 1)
        precondition(sem_init(semaphore, 0, 0) == 0, "sem_init failed")
    }

    deinit {
        sem_destroy(semaphore)
        semaphore.deallocate()
    }

    /// Async-signal-safe.
    public func open() {
        _ = sem_post(semaphore)
    }

    public func wait() {
        while sem_wait(semaphore) != 0 {}  // EINTR (a signal handler ran): wait again
    }
}
