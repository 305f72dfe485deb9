import AgentPluginABI

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One live agent: the Swift object behind the C `instance` pointer (retained by create,
/// released by destroy), with the C thunks that reach it.
///
/// Each message runs as a task: the C handler copies what it needs out of the borrowed
/// `agentd_message`, starts the task and returns `AGENTD_PENDING`; the task decodes the payload,
/// awaits the Swift handler and answers with `reply` or `fail`. The runtime delivers the
/// agent's next message only after that answer, which is what keeps one instance's handlers
/// from overlapping.
final class AgentInstance: @unchecked Sendable {
    // @unchecked: `agent` is used by one handler at a time (the runtime's per-agent mailbox
    // delivers the next message only after the previous one was answered), or by snapshot /
    // restore, which the runtime calls between messages.
    let agent: AnyObject
    let binding: AgentTypeBinding
    let context: AgentContext

    init(agent: AnyObject, binding: AgentTypeBinding, context: AgentContext) {
        self.agent = agent
        self.binding = binding
        self.context = context
    }

    private var host: HostFunctions { binding.host }

    /// The bytes of `agentd_message` this SDK reads (everything up to `call`).
    private static let messageSize =
        MemoryLayout<agentd_message>.offset(of: \agentd_message.call)! + MemoryLayout<OpaquePointer?>.size

    // MARK: C thunks

    /// The `agentd_handler_fn` of every Swift handler.
    static func handle(_ instance: UnsafeMutableRawPointer?, _ message: UnsafePointer<agentd_message>?)
        -> agentd_status
    {
        guard let instance, let message, Int(message.pointee.size) >= messageSize else { return AGENTD_MISUSE }
        return Unmanaged<AgentInstance>.fromOpaque(instance).takeUnretainedValue().deliver(message.pointee)
    }

    static func destroy(_ instance: UnsafeMutableRawPointer?) {
        guard let instance else { return }
        Unmanaged<AgentInstance>.fromOpaque(instance).release()
    }

    static func snapshot(_ instance: UnsafeMutableRawPointer?, _ write: agentd_write_fn?, _ sink: UnsafeMutableRawPointer?)
        -> agentd_status
    {
        guard let instance, let write else { return AGENTD_MISUSE }
        let live = Unmanaged<AgentInstance>.fromOpaque(instance).takeUnretainedValue()
        guard let state = live.binding.state else { return AGENTD_NOT_FOUND }
        do {
            let bytes = try state.snapshot(live.agent)
            bytes.withView { write(sink, $0) }
            return AGENTD_OK
        } catch {
            live.context.logger.error("snapshot of \(live.context.agentID) failed: \(error)")
            return AGENTD_FAILED
        }
    }

    static func restore(_ instance: UnsafeMutableRawPointer?, _ bytes: agentd_bytes) -> agentd_status {
        guard let instance else { return AGENTD_MISUSE }
        let live = Unmanaged<AgentInstance>.fromOpaque(instance).takeUnretainedValue()
        guard let state = live.binding.state else { return AGENTD_NOT_FOUND }
        do {
            try state.restore(live.agent, Data(bytes))
            return AGENTD_OK
        } catch let error as DecodingError {
            live.context.logger.error(
                "restoring \(live.context.agentID) failed: its snapshot does not decode: \(MessageCoding.describe(error))")
            return AGENTD_INVALID_ARGUMENT
        } catch let error as AgentError {
            live.context.logger.error("restoring \(live.context.agentID) failed: \(error.message)")
            return error.code.cStatus
        } catch {
            live.context.logger.error("restoring \(live.context.agentID) failed: \(error)")
            return AGENTD_FAILED
        }
    }

    // MARK: Delivery

    /// Copies the borrowed message, starts its handler's task, returns `AGENTD_PENDING`.
    private func deliver(_ message: agentd_message) -> agentd_status {
        let call = CallToken(pointer: message.call)
        let isRPC = message.is_rpc != 0
        let messageType = String(message.message_type)
        let handlers = binding.handlers[messageType]
        guard let handler = isRPC ? handlers?.rpc : handlers?.event else {
            return refuse(
                call, isRPC: isRPC, .unknownMessageType,
                "agent type \(binding.name) has no \(isRPC ? "RPC" : "event") handler for \(messageType)")
        }
        let rawContentType = String(message.content_type)
        let contentType = ContentType.canonical(rawContentType)
        guard handler.contentTypes.contains(contentType) else {
            return refuse(
                call, isRPC: isRPC, .invalidArgument,
                "\(messageType) arrived as \(rawContentType): agent type \(binding.name) reads it only as "
                    + handler.contentTypes.joined(separator: " or "))
        }
        let senderType = String(message.sender_type)
        let topicType = String(message.topic_type)
        var delivery = MessageContext(
            agentContext: context,
            sender: senderType.isEmpty ? nil : AgentID(type: senderType, key: String(message.sender_key)),
            topic: isRPC || topicType.isEmpty ? nil : TopicID(type: topicType, source: String(message.topic_source)),
            messageID: String(message.message_id),
            isRPC: isRPC)
        // ABI 1.3's fields, when the runtime's message has them.
        if Int(message.size) >= MemoryLayout<agentd_message>.offset(of: \agentd_message.tracestate)! + MemoryLayout<agentd_str>.size,
           message.traceparent.length > 0 {
            delivery.traceparent = String(message.traceparent)
            delivery.tracestate = message.tracestate.length > 0 ? String(message.tracestate) : nil
        }
        let payload = Data(message.payload)

        // The answer may come before this function returns AGENTD_PENDING (the ABI allows it).
        switch binding.start {
        case .immediate:
            if #available(macOS 26, *) {
                Task.immediate { await self.run(handler, payload, contentType, delivery, call) }
            } else {
                Task { await self.run(handler, payload, contentType, delivery, call) }
            }
        case .enqueued:
            Task { await self.run(handler, payload, contentType, delivery, call) }
        }
        return AGENTD_PENDING
    }

    /// Runs the handler and answers the call. (Not inlined: the two ways of starting its task
    /// would each get a copy, in every plugin.)
    @inline(never)
    private func run(
        _ handler: MessageHandlers.Entry, _ payload: Data, _ contentType: String, _ delivery: MessageContext,
        _ call: CallToken
    ) async {
        let status: agentd_status
        do {
            switch try await handler.run(agent, payload, contentType, delivery) {
            case .finished:
                status = host.reply(call, messageType: "", contentType: "", payload: Data())
            case .answer(let answer):
                status = host.reply(
                    call, messageType: answer.messageType, contentType: answer.contentType, payload: answer.payload)
            }
        } catch {
            let failure = error as? AgentError ?? AgentError(.failed, String(describing: error), cause: error)
            status = host.fail(call, failure.code, failure.message)
        }
        if status != AGENTD_OK {
            context.logger.error(
                "the runtime refused the answer to message \(delivery.messageID): \(AgentError.Code(status))")
        }
    }

    /// Turns a message away without a task, failing it with `text` (for an event, the runtime
    /// logs it) and returning the error status (for an RPC whose answer the runtime refused,
    /// the status of `fail`).
    private func refuse(_ call: CallToken, isRPC: Bool, _ code: AgentError.Code, _ text: String) -> agentd_status {
        let failed = host.fail(call, code, text)
        return isRPC && failed != AGENTD_OK ? failed : code.cStatus
    }
}
