import CGRPC
import Foundation
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

/// A completion queue with its own poller thread.
///
/// Every call is bound to one queue, so all of a call's completions, and the handler callbacks
/// they trigger, run on one thread, in order. Handlers run on that thread: they must not block.
final class CompletionQueue: @unchecked Sendable {
    // @unchecked Sendable: `queue` is created in init and destroyed by the poller thread after
    // the shutdown event, which only arrives after `shutdown()`; the C core's queue is
    // thread-safe in between.
    let queue: OpaquePointer
    private let finished = ConditionLatch()
    private let shutdownStarted = Atomic<Bool>(false)

    init(name: String) {
        GRPCLibrary.initialize()
        queue = grpc_completion_queue_create_for_next(nil)
        let thread = Thread { [self] in
            Self.poll(queue)
            grpc_completion_queue_destroy(queue)
            finished.open()
        }
        thread.name = name
        thread.stackSize = 1 << 20
        thread.start()
    }

    private static func poll(_ queue: OpaquePointer) {
        while true {
            let event = grpc_completion_queue_next(queue, cgrpc_infinite_future(), nil)
            switch event.type {
            case GRPC_OP_COMPLETE:
                CompletionTarget.dispatch(tag: event.tag, success: event.success != 0)
            case GRPC_QUEUE_SHUTDOWN:
                return
            default:
                continue
            }
        }
    }

    /// Shuts the queue down once nothing uses it any more: no batch may start on it afterwards.
    /// Blocks until the poller has drained it and exited.
    func shutdownAndWait() {
        if !shutdownStarted.exchange(true, ordering: .acquiringAndReleasing) {
            grpc_completion_queue_shutdown(queue)
        }
        finished.wait()
    }
}

/// A group of completion queues, each with a poller thread; calls are spread across them.
public final class CompletionQueueGroup: Sendable {
    let queues: [CompletionQueue]
    private let next = Atomic<Int>(0)

    /// Creates `count` queues (at least one), each polled by a thread named `name-N`.
    public init(count: Int, name: String = "grpc-poller") {
        queues = (0..<max(1, count)).map { CompletionQueue(name: "\(name)-\($0)") }
    }

    /// The queue for the next call (round robin).
    func nextQueue() -> CompletionQueue {
        queues[next.wrappingAdd(1, ordering: .relaxed).oldValue % queues.count]
    }

    /// Shuts every queue down and waits for the pollers to exit. Call it only after every
    /// server and channel using the group has shut down.
    public func shutdown() {
        for queue in queues { queue.shutdownAndWait() }
    }
}

/// gRPC's process-wide initialisation (reference counted by the C core; done once, kept).
enum GRPCLibrary {
    private static let once: Void = { grpc_init() }()
    static func initialize() { _ = once }
}

