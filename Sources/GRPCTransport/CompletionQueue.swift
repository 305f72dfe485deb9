import CGRPC
import Synchronization

/// Something that receives the completion of a batch it started (the batch's tag). Public only
/// because ``Call`` derives from it; nothing of it is visible outside the module.
///
/// A tag is the object's address with a small operation number in its low four bits (objects
/// are 16-byte aligned), so one object can have several batches in flight without allocating
/// a tag per batch. Starting a batch retains the object; its completion releases it.
public class CompletionTarget: @unchecked Sendable {
    // @unchecked Sendable: subclasses guard their mutable state with a `Lock`.

    /// Called on the completion queue's poller thread.
    func complete(operation: Int, success: Bool) {}

    /// The tag for a batch of `operation` (0...15); retains `self` until the completion.
    final func retainedTag(_ operation: Int) -> UnsafeMutableRawPointer {
        Unmanaged.passRetained(self).toOpaque() + operation
    }

    /// Releases the retain of a tag whose batch never started (its completion will not come).
    final func releaseTag(_ tag: UnsafeMutableRawPointer) {
        let base = UnsafeMutableRawPointer(bitPattern: UInt(bitPattern: tag) & ~UInt(15))!
        Unmanaged<CompletionTarget>.fromOpaque(base).release()
    }

    static func dispatch(tag: UnsafeMutableRawPointer, success: Bool) {
        let bits = UInt(bitPattern: tag)
        let base = UnsafeMutableRawPointer(bitPattern: bits & ~UInt(15))!
        let target = Unmanaged<CompletionTarget>.fromOpaque(base).takeRetainedValue()
        target.complete(operation: Int(bits & 15), success: success)
    }
}

/// What one ``CompletionQueueGroup/poll(timeoutMilliseconds:)`` did.
public enum CompletionPoll: Sendable, Equatable {
    /// A completion was dispatched (its callbacks ran on the calling thread).
    case dispatched
    /// Nothing completed before the timeout.
    case timedOut
    /// The queue is shut down and drained: nothing will complete on it any more.
    case shutDown
}

/// A completion queue, polled by a thread of its own or by its owner's threads.
///
/// Every call is bound to one queue, and only one thread polls a queue at a time, so all of
/// a call's completions, and the handler callbacks they trigger, run one after another, in
/// order. Handlers run on the polling thread: they must not block.
final class CompletionQueue: @unchecked Sendable {
    // @unchecked Sendable: `queue` is created in init and destroyed by the poller that sees
    // the shutdown event, which only arrives after `shutdown()`; the C core's queue is
    // thread-safe in between. The flags are atomics.
    let queue: OpaquePointer
    private let finished = ConditionLatch()
    private let shutdownStarted = Atomic<Bool>(false)
    private let drained = Atomic<Bool>(false)
    /// Calls whose next receive starts once the current completion's work is done.
    private let deferredLock = Lock()
    private var deferred: [Call] = []
    private var running: [Call] = []

    /// - Parameter threadName: the name of the poller thread to start; nil for a queue its
    ///   owner polls with ``poll(timeoutMilliseconds:)``.
    init(threadName: String?) {
        GRPCLibrary.initialize()
        queue = grpc_completion_queue_create_for_next(nil)
        if let threadName {
            // Its own thread: the deferred receives start right after each completion's
            // callbacks (an owner starts them after the work it ran, before it polls again).
            _ = NativeThread.start(name: threadName) { [self] in
                while poll(timeoutMilliseconds: nil) != .shutDown { resumeDeferredReceives() }
            }
        }
    }

    /// Waits for the next completion (up to `timeoutMilliseconds`; nil: no limit) and
    /// dispatches it on the calling thread. One thread at a time.
    func poll(timeoutMilliseconds: Int64?) -> CompletionPoll {
        if drained.load(ordering: .acquiring) { return .shutDown }
        let deadline = timeoutMilliseconds.map { cgrpc_deadline_after_ms($0) } ?? cgrpc_infinite_future()
        let event = grpc_completion_queue_next(queue, deadline, nil)
        switch event.type {
        case GRPC_OP_COMPLETE:
            CompletionTarget.dispatch(tag: event.tag, success: event.success != 0)
            return .dispatched
        case GRPC_QUEUE_SHUTDOWN:
            drained.store(true, ordering: .releasing)
            grpc_completion_queue_destroy(queue)
            finished.open()
            return .shutDown
        default:
            return .timedOut
        }
    }

    /// Defers `call`'s next receive until the poller is done with the current completion.
    func deferReceive(_ call: Call) {
        deferredLock.withLock { deferred.append(call) }
    }

    /// Starts the deferred receives (polling thread).
    func resumeDeferredReceives() {
        // Two arrays swapped in turn: no allocation per message.
        deferredLock.withLock {
            guard !deferred.isEmpty else { return }
            swap(&deferred, &running)
        }
        guard !running.isEmpty else { return }
        for call in running { call.resumeReceiving() }
        running.removeAll(keepingCapacity: true)
    }

    /// Shuts the queue down once nothing uses it any more: no batch may start on it afterwards.
    /// Blocks until its poller has drained it (the shutdown event was polled).
    func shutdownAndWait() {
        if !shutdownStarted.exchange(true, ordering: .acquiringAndReleasing) {
            grpc_completion_queue_shutdown(queue)
        }
        finished.wait()
    }
}

/// A group of completion queues; calls are spread across them.
///
/// Either each queue has a poller thread of its own (``init(count:name:)``), or the group is
/// one queue its owner polls from threads it already has (``init(ownerPolled:)``): a
/// dispatcher whose threads take turns at polling can then run the work a completion brings
/// on the thread that received it, without a hand-off to another thread.
public final class CompletionQueueGroup: Sendable {
    let queues: [CompletionQueue]
    private let next = Atomic<Int>(0)

    /// Creates `count` queues (at least one), each polled by a thread named `name-N`.
    public init(count: Int, name: String = "grpc-poller") {
        queues = (0..<max(1, count)).map { CompletionQueue(threadName: "\(name)-\($0)") }
    }

    /// Creates one queue that no thread of the transport polls: the owner calls
    /// ``resumeDeferredReceives()`` and then ``poll(timeoutMilliseconds:)``, from one thread at
    /// a time, until it returns ``CompletionPoll/shutDown`` (after ``shutdown()`` was called,
    /// from another thread).
    public init(ownerPolled: Void) {
        queues = [CompletionQueue(threadName: nil)]
    }

    /// Polls the (single) queue of an owner-polled group: waits up to `timeoutMilliseconds`
    /// (nil: without limit) for one completion and runs its callbacks on the calling thread.
    /// The caller must make sure that no other thread polls this group meanwhile.
    public func poll(timeoutMilliseconds: Int64?) -> CompletionPoll {
        queues[0].poll(timeoutMilliseconds: timeoutMilliseconds)
    }

    /// Starts the receives deferred until the work of the last completion was done: an owner
    /// calls it after that work and before it polls again (what they deliver may bring work to
    /// look at before waiting). One thread at a time, like polling.
    public func resumeDeferredReceives() {
        queues[0].resumeDeferredReceives()
    }

    /// The queue for the next call (round robin).
    func nextQueue() -> CompletionQueue {
        queues[next.wrappingAdd(1, ordering: .relaxed).oldValue % queues.count]
    }

    /// Shuts every queue down and waits until each has been drained by its poller. Call it
    /// only after every server and channel using the group has shut down (and, for an
    /// owner-polled group, from a thread other than the one polling it).
    public func shutdown() {
        for queue in queues { queue.shutdownAndWait() }
    }
}

/// gRPC's process-wide initialisation (reference counted by the C core; done once, kept).
enum GRPCLibrary {
    private static let once: Void = { grpc_init() }()
    static func initialize() { _ = once }
}

