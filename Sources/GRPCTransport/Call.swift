import CGRPC
import DequeModule

/// What owns a call's lifetime: a ``Server`` or a ``Channel``, which wait for their calls to end
/// before they destroy the C objects underneath.
protocol CallOwner: AnyObject, Sendable {
    /// The call has released its C resources; nothing will run in it any more.
    func callDidEnd(_ call: Call)
}

/// One gRPC call (a stream): the part the server and client sides share.
///
/// A call's state machine lives on the poller thread of the completion queue it is bound to:
/// messages are read ahead (one receive always in flight while the stream is open), sends queue
/// behind the one send batch the C core allows in flight, and handler callbacks run on that
/// thread in order. Every method is thread-safe.
public class Call: CompletionTarget, @unchecked Sendable {
    // @unchecked Sendable: every mutable field below is read and written with `lock` held; the
    // out-parameter storage is touched only by the batch that owns it (the C core writes it
    // before the completion, the poller thread reads it after).

    /// Batch kinds, the low bits of a tag.
    enum Operation {
        static let send = 0
        static let receive = 1
        static let close = 2
    }

    enum SendItem {
        /// Client: initial metadata alone (sent as soon as the call starts).
        case initialMetadata
        case message(MessageBuffer)
        /// Server: optionally a last message, then the status.
        case status(Status, trailers: Metadata, message: MessageBuffer?)
        /// Client: the end of the client's messages.
        case halfClose
    }

    let call: OpaquePointer
    let queue: CompletionQueue
    let owner: any CallOwner
    /// The method's full path, for example `/agents.AgentRpc/OpenChannel`.
    public let method: String
    /// Charged with this call's waiting messages, when it shares a bound with other calls.
    public let sendBudget: SendBudget?

    let lock = Lock()

    // MARK: State (guarded by `lock`)
    private var sendQueue = Deque<SendItem>()
    /// Bytes of the `.message` items in `sendQueue`.
    private var queuedBytes = 0
    /// Bytes of the message in the send batch in flight (0 when it carries none).
    private var inFlightBytes = 0
    /// What `sendBudget` holds for this call: `queuedBytes + inFlightBytes` as of the last
    /// ``rechargeLocked()``.
    private var chargedBytes = 0
    private var sendInFlight = false
    /// No more sends are accepted (status or half-close queued, or the call is over).
    private var sendsClosed = false
    var initialMetadataSent = false
    private var receiveInFlight = false
    /// The peer will send no more messages (end of stream, or the receive failed).
    var receivesEnded = false
    /// The close (server) or status (client) completion has arrived: the call is over.
    var isOver = false
    private var batchesInFlight = 0
    private var ended = false
    /// Whether the end-of-call callback was delivered.
    private var endDelivered = false

    // MARK: Out-parameters and operation arrays (owned by the batch in flight)
    let sendOps = UnsafeMutablePointer<grpc_op>.allocate(capacity: 4)
    private let receiveOps = UnsafeMutablePointer<grpc_op>.allocate(capacity: 2)
    let closeOps = UnsafeMutablePointer<grpc_op>.allocate(capacity: 1)
    private let receivedBuffer = UnsafeMutablePointer<UnsafeMutablePointer<grpc_byte_buffer>?>.allocate(capacity: 1)
    private let statusDetails = UnsafeMutablePointer<grpc_slice>.allocate(capacity: 1)
    private var sendMetadata = CMetadataArray(Metadata())
    private var sendTrailers = CMetadataArray(Metadata())
    private var sentBuffer: UnsafeMutablePointer<grpc_byte_buffer>?
    private var statusDetailsSet = false

    init(call: OpaquePointer, queue: CompletionQueue, owner: any CallOwner, method: String, sendBudget: SendBudget? = nil) {
        self.call = call
        self.queue = queue
        self.owner = owner
        self.method = method
        self.sendBudget = sendBudget
        sendOps.initialize(repeating: grpc_op(), count: 4)
        receiveOps.initialize(repeating: grpc_op(), count: 2)
        closeOps.initialize(repeating: grpc_op(), count: 1)
        receivedBuffer.initialize(to: nil)
        statusDetails.initialize(to: grpc_empty_slice())
    }

    deinit {
        // Nothing is left charged once the last send completed; this only guards the budget.
        sendBudget?.recharge(from: chargedBytes, to: 0)
        sendOps.deallocate()
        receiveOps.deallocate()
        closeOps.deallocate()
        receivedBuffer.deallocate()
        statusDetails.deallocate()
    }

    /// The peer's address as the C core names it, for example `ipv4:127.0.0.1:50312`.
    public var peer: String {
        lock.withLock {
            guard !ended, let peer = grpc_call_get_peer(call) else { return "unknown" }
            defer { cgrpc_free(peer) }
            return String(cString: peer)
        }
    }

    /// Queues `message` to be sent after every message queued before it.
    ///
    /// - Returns: false if the call is over or its sending side is closed (the message is
    ///   dropped).
    @discardableResult
    public func send(_ message: MessageBuffer) -> Bool {
        enqueue(.message(message))
    }

    /// Cancels the call: both sides see it end with `CANCELLED`.
    public func cancel() {
        cancel(Status(.cancelled, "Cancelled"))
    }

    func cancel(_ status: Status) {
        lock.withLock {
            guard !ended else { return }
            status.message.withCString { message in
                _ = grpc_call_cancel_with_status(call, status.code.cValue, message, nil)
            }
        }
    }

    /// How many sends are queued and not yet handed to the C core (for flow control).
    public var queuedSendCount: Int { lock.withLock { sendQueue.count + (sendInFlight ? 1 : 0) } }

    /// The bytes of the messages waiting in the send queue.
    public var queuedSendBytes: Int { lock.withLock { queuedBytes } }

    /// The bytes this call holds of its ``SendBudget``: its queued messages and the one being
    /// sent (0 without a budget).
    public var budgetedSendBytes: Int { lock.withLock { chargedBytes } }

    /// What a bounded send did.
    public enum BoundedSendResult: Sendable, Equatable {
        case queued
        /// The queue is at its bound (the peer reads slower than it is sent to): not queued.
        case full
        /// The call is over or its sending side closed.
        case closed
    }

    /// Queues `message` unless `maxMessages` messages or `maxBytes` bytes are waiting already.
    ///
    /// A peer that stops reading makes HTTP/2 flow control stall the sends; this keeps what
    /// waits for it bounded, so a slow reader cannot grow the sender's memory without end.
    public func send(_ message: MessageBuffer, maxMessages: Int, maxBytes: Int) -> BoundedSendResult {
        enqueue(.message(message), bound: (maxMessages, maxBytes))
    }

    // MARK: Sending

    func enqueue(_ item: SendItem) -> Bool {
        enqueue(item, bound: nil) == .queued
    }

    /// Queues `item` (with `bound`, a message only while fewer messages and bytes wait) and
    /// starts sending if nothing is in flight.
    private func enqueue(_ item: SendItem, bound: (messages: Int, bytes: Int)?) -> BoundedSendResult {
        lock.withLock {
            guard !sendsClosed, !isOver else { return .closed }
            if let bound, case .message(let message) = item,
               sendQueue.count >= bound.messages || (queuedBytes + message.count > bound.bytes && !sendQueue.isEmpty) {
                return .full
            }
            switch item {
            case .status, .halfClose: sendsClosed = true
            case .message, .initialMetadata: break
            }
            if case .message(let message) = item { queuedBytes += message.count }
            sendQueue.append(item)
            if !sendInFlight { startNextSendLocked() }
            rechargeLocked()
            return .queued
        }
    }

    /// The initial metadata this side sends (a client's request headers; nothing on a server).
    func initialMetadataToSend() -> Metadata { Metadata() }

    /// Flags for the initial-metadata operation (a client may ask to wait for the connection).
    func sendInitialMetadataFlags() -> UInt32 { 0 }

    private func startNextSendLocked() {
        while let item = sendQueue.popFirst() {
            var count = 0
            @discardableResult
            func add(_ type: grpc_op_type, flags: UInt32 = 0) -> UnsafeMutablePointer<grpc_op> {
                let op = sendOps + count
                op.pointee = grpc_op()
                op.pointee.op = type
                op.pointee.flags = flags
                count += 1
                return op
            }
            if !initialMetadataSent {
                initialMetadataSent = true
                sendMetadata = CMetadataArray(initialMetadataToSend())
                let op = add(GRPC_OP_SEND_INITIAL_METADATA, flags: sendInitialMetadataFlags())
                op.pointee.data.send_initial_metadata.count = sendMetadata.count
                op.pointee.data.send_initial_metadata.metadata = sendMetadata.pointer
            }
            switch item {
            case .initialMetadata:
                if count == 0 { continue }
            case .message(let message):
                queuedBytes -= message.count
                inFlightBytes = message.count
                // A write-buffer hint when more messages wait: the C core buffers this one and
                // flushes it with the last, so a burst goes out in fewer writes.
                var flags: UInt32 = 0
                if case .message = sendQueue.first { flags = UInt32(GRPC_WRITE_BUFFER_HINT) }
                sentBuffer = message.makeSendBuffer()
                add(GRPC_OP_SEND_MESSAGE, flags: flags).pointee.data.send_message.send_message = sentBuffer
            case .status(let status, let trailers, let message):
                if let message {
                    sentBuffer = message.makeSendBuffer()
                    add(GRPC_OP_SEND_MESSAGE).pointee.data.send_message.send_message = sentBuffer
                }
                sendTrailers = CMetadataArray(trailers)
                statusDetails.pointee = grpc_slice.copying(status.message)
                statusDetailsSet = true
                let op = add(GRPC_OP_SEND_STATUS_FROM_SERVER)
                op.pointee.data.send_status_from_server.status = status.code.cValue
                op.pointee.data.send_status_from_server.status_details = statusDetails
                op.pointee.data.send_status_from_server.trailing_metadata_count = sendTrailers.count
                op.pointee.data.send_status_from_server.trailing_metadata = sendTrailers.pointer
            case .halfClose:
                add(GRPC_OP_SEND_CLOSE_FROM_CLIENT)
            }
            if startBatchLocked(sendOps, count: count, operation: Operation.send) {
                sendInFlight = true
                return
            }
            inFlightBytes = 0
            releaseSendResourcesLocked()
        }
    }

    /// Brings what the send budget holds for this call up to date.
    private func rechargeLocked() {
        guard let sendBudget else { return }
        let now = queuedBytes + inFlightBytes
        sendBudget.recharge(from: chargedBytes, to: now)
        chargedBytes = now
    }

    private func releaseSendResourcesLocked() {
        sendMetadata.release()
        sendTrailers.release()
        if let buffer = sentBuffer {
            grpc_byte_buffer_destroy(buffer)
            sentBuffer = nil
        }
        if statusDetailsSet {
            grpc_slice_unref(statusDetails.pointee)
            statusDetailsSet = false
        }
    }

    private func sendDidCompleteLocked(success: Bool) {
        sendInFlight = false
        inFlightBytes = 0
        defer { rechargeLocked() }
        releaseSendResourcesLocked()
        if !success {
            // The call is broken: nothing queued can go out.
            sendsClosed = true
            sendQueue.removeAll()
            queuedBytes = 0
        } else if !isOver {
            startNextSendLocked()
        } else {
            sendQueue.removeAll()
            queuedBytes = 0
        }
    }

    // MARK: Receiving

    /// Starts the receive loop (with `initialMetadata`, the client's first receive also takes
    /// the server's initial metadata).
    func startReceivingLocked(initialMetadata: UnsafeMutablePointer<grpc_metadata_array>? = nil) {
        guard !receiveInFlight, !receivesEnded, !isOver else { return }
        var count = 0
        if let initialMetadata {
            receiveOps[count] = grpc_op()
            receiveOps[count].op = GRPC_OP_RECV_INITIAL_METADATA
            receiveOps[count].data.recv_initial_metadata.recv_initial_metadata = initialMetadata
            count += 1
        }
        receiveOps[count] = grpc_op()
        receiveOps[count].op = GRPC_OP_RECV_MESSAGE
        receiveOps[count].data.recv_message.recv_message = receivedBuffer
        count += 1
        if startBatchLocked(receiveOps, count: count, operation: Operation.receive) {
            receiveInFlight = true
        } else {
            receivesEnded = true
        }
    }

    /// After a message, the next receive starts once the poller is done with this completion
    /// (its callbacks, and for an owner-polled queue the work its owner runs next), not before.
    ///
    /// gRPC's C core (1.51) announces the stream's flow-control window at once, in a write of its
    /// own, when a receive starts while window is owed for data already read; when a send goes
    /// first, the announcement rides in the same write. So a message answered on its own stream
    /// (an RPC handled by the runtime) costs one write instead of two, and a message forwarded to
    /// another stream (the host) goes out before the window update of the stream it came from.
    /// Until then the receive counts as in flight, and the completed batch stays counted (which
    /// keeps the call alive) until the next one has started.
    /// - Returns: whether the receive continues (its batch is finished by ``resumeReceiving()``).
    private func receiveDidComplete(success: Bool) -> Bool {
        let buffer = receivedBuffer.pointee
        receivedBuffer.pointee = nil
        let message = buffer.map { MessageBuffer(taking: $0) }
        let continues: Bool = lock.withLock {
            if success, message != nil, !receivesEnded, !isOver { return true }
            receiveInFlight = false
            receivesEnded = true
            return false
        }
        if let message {
            if success { didReceive(message) }
        } else if success {
            didReceiveEndOfStream()
        }
        if continues { queue.deferReceive(self) }
        return continues
    }

    /// Starts the receive deferred by ``receiveDidComplete(success:)`` (poller thread), and
    /// finishes the batch that delivered the last message.
    func resumeReceiving() {
        finishBatch {
            receiveInFlight = false
            startReceivingLocked()
        }
    }

    /// A message arrived (poller thread).
    func didReceive(_ message: MessageBuffer) {}
    /// The peer closed its sending side (poller thread).
    func didReceiveEndOfStream() {}
    /// The close or status operation completed (poller thread, `lock` not held): subclasses
    /// read its out-parameters here, before ``didEnd()``.
    func closeDidComplete(success: Bool) {}
    /// The call is over and every message has been delivered (poller thread, once).
    func didEnd() {}

    // MARK: Batches and lifetime

    /// Starts a batch; on failure releases the tag (no completion will come).
    func startBatchLocked(_ ops: UnsafeMutablePointer<grpc_op>, count: Int, operation: Int) -> Bool {
        guard !ended else { return false }
        let tag = retainedTag(operation)
        let result = grpc_call_start_batch(call, ops, count, tag, nil)
        guard result == GRPC_CALL_OK else {
            releaseTag(tag)
            return false
        }
        batchesInFlight += 1
        return true
    }

    override final func complete(operation: Int, success: Bool) {
        switch operation {
        case Operation.send:
            finishBatch { sendDidCompleteLocked(success: success) }
        case Operation.receive:
            // A receive that continues finishes its batch once the next one has started.
            if !receiveDidComplete(success: success) { finishBatch() }
        case Operation.close:
            lock.withLock {
                isOver = true
                sendsClosed = true
            }
            closeDidComplete(success: success)
            finishBatch()
        default:
            finishBatch()
        }
    }

    /// Counts a batch as done (after `locked`, run under the same lock); delivers the call's
    /// end and releases it when that was the last.
    private func finishBatch(_ locked: () -> Void = {}) {
        var deliverEnd = false
        var release = false
        lock.withLock {
            locked()
            batchesInFlight -= 1
            if isOver, !receiveInFlight, !endDelivered {
                endDelivered = true
                deliverEnd = true
            }
            if isOver, batchesInFlight == 0, !ended {
                ended = true
                release = true
            }
        }
        if deliverEnd { didEnd() }
        if release {
            grpc_call_unref(call)
            owner.callDidEnd(self)
        }
    }
}
