import AgentPluginABI
import AgentSDK
import AgentTestSupport
import Dispatch
import Foundation
import Synchronization
import Testing

/// A runtime in miniature, for driving a plugin through the C ABI exactly as `agentd run` does:
/// a host API table whose functions (C function pointers) record what the plugin publishes,
/// answers and logs, serve settings, and answer `send`s from another thread.
///
/// It keeps agents' state as the runtime does with a state store: ``LoadedPlugin/activate(_:)``
/// creates an agent and restores it from the store, ``FakeAgent/handle(_:json:rpc:topic:sender:contentType:)``
/// checkpoints after the message (snapshot into the store; for an RPC, before the answer is
/// returned), following `state_changed` the way the runtime does (see ``FakeAgent``), and
/// ``FakeAgent/retire()`` takes a final checkpoint and destroys the instance. (It has no
/// mailbox, so it never leaves an event's checkpoint to the next message's as the runtime
/// does while messages are queued.)
///
/// The host table it offers is the current one, or ABI 1.0's or 1.1's (``HostTable``): the
/// functions past the size it claims are traps that record the misuse instead of acting.
///
/// The C functions cannot capture, so they find their runtime through the pointers the plugin
/// hands back: the plugin reference, an agent reference (a ``FakeAgent``) or a call token (a
/// ``FakeCall``).
final class FakeRuntime: @unchecked Sendable {
    // @unchecked: `recorded` is behind a Mutex; the rest is immutable after init.

    struct Publication: Sendable, Equatable {
        var from: AgentID?
        var topic: TopicID
        var messageType: String
        var contentType: String
        var payload: [UInt8]

        init(from: AgentID?, topic: TopicID, messageType: String, contentType: String, payload: [UInt8]) {
            self.from = from
            self.topic = topic
            self.messageType = messageType
            self.contentType = contentType
            self.payload = payload
        }

        init(from: AgentID?, topic: TopicID, messageType: String, contentType: String, json: String) {
            self.init(from: from, topic: topic, messageType: messageType, contentType: contentType, payload: Array(json.utf8))
        }

        /// The payload as text.
        var json: String { String(decoding: payload, as: UTF8.self) }
    }

    struct LogLine: Sendable {
        var level: agentd_log_level.RawValue
        var agent: AgentID?
        var text: String
    }

    /// An RPC a plugin sent.
    struct Request: Sendable {
        var from: AgentID?
        var target: AgentID
        var messageType: String
        var contentType: String
        var payload: [UInt8]

        /// The payload as text.
        var json: String { String(decoding: payload, as: UTF8.self) }
    }

    /// How the runtime answers a `send`.
    enum Response: Sendable {
        /// `send` itself fails with this status (nothing sent, no callback).
        case refuse(agentd_status.RawValue)
        /// The callback gets an error.
        case error(agentd_status.RawValue, String)
        /// The callback gets this answer (application/json).
        case answer(messageType: String, json: String)
        /// The callback gets this answer, in any content type.
        case binaryAnswer(messageType: String, contentType: String, payload: [UInt8])
    }

    /// Which host API table the runtime offers: how much of `agentd_host_api` its `size` covers.
    enum HostTable: Sendable {
        /// ABI 1.0: up to `setting`.
        case abi10
        /// ABI 1.1: up to `plugin_send`.
        case abi11
        /// This header's table (ABI 1.2: `state_changed`).
        case current

        var size: Int {
            switch self {
            case .abi10: MemoryLayout<agentd_host_api>.offset(of: \.plugin_publish)!
            case .abi11: MemoryLayout<agentd_host_api>.offset(of: \.state_changed)!
            case .current: MemoryLayout<agentd_host_api>.size
            }
        }

        var minor: UInt16 {
            switch self {
            case .abi10: 0
            case .abi11: 1
            case .current: UInt16(AGENTD_ABI_MINOR)
            }
        }
    }

    /// One write into the fake state store.
    struct Checkpoint: Sendable, Equatable {
        var agent: AgentID
        var state: String
    }

    private struct Recorded {
        var publications: [Publication] = []
        var logs: [LogLine] = []
        var requests: [Request] = []
        /// The state store: each agent's last checkpoint.
        var store: [AgentID: String] = [:]
        var checkpoints: [Checkpoint] = []
        /// Snapshots taken for checkpoints, written or not.
        var snapshotsTaken = 0
        /// Agent types that called `state_changed`: from then on only the messages that call
        /// it are checkpointed.
        var typesReportingChanges: Set<String> = []
        /// Host functions the plugin called beyond the table's `size`.
        var misuses: [String] = []
    }

    let api: UnsafeMutablePointer<agentd_host_api>
    private let recorded = Mutex(Recorded())
    /// Settings as NUL-terminated copies that live as long as the runtime.
    private let settings: [String: UnsafeMutablePointer<CChar>]
    private let respond: @Sendable (Request) -> Response

    /// - Parameters:
    ///   - settings: The plugin's `[plugin.NAME]` section.
    ///   - abiMajor: What the host table claims.
    ///   - respond: How `send`s are answered (on another thread).
    ///   - hostTable: Which ABI minor's table to offer.
    init(settings: [String: String] = [:], abiMajor: UInt16 = UInt16(AGENTD_ABI_MAJOR), hostTable: HostTable = .current,
         respond: @escaping @Sendable (Request) -> Response = { _ in .error(AGENTD_NOT_FOUND.rawValue, "no such agent") })
    {
        self.settings = settings.mapValues { strdup($0)! }
        self.respond = respond
        api = .allocate(capacity: 1)
        var table = agentd_host_api()
        table.size = UInt32(hostTable.size)
        table.abi_major = abiMajor
        table.abi_minor = hostTable.minor
        table.publish = { from, topicType, topicSource, messageType, contentType, payload in
            guard let agent = FakeAgent.from(from) else { return AGENTD_MISUSE }
            agent.runtime.recorded.withLock {
                $0.publications.append(Publication(
                    from: agent.id, topic: TopicID(type: String(borrowed: topicType), source: String(borrowed: topicSource)),
                    messageType: String(borrowed: messageType), contentType: String(borrowed: contentType), payload: [UInt8](borrowed: payload)))
            }
            return AGENTD_OK
        }
        table.send = { from, targetType, targetKey, messageType, contentType, payload, onResponse, context in
            guard let agent = FakeAgent.from(from), let onResponse else { return AGENTD_MISUSE }
            let request = Request(
                from: agent.id, target: AgentID(type: String(borrowed: targetType), key: String(borrowed: targetKey)),
                messageType: String(borrowed: messageType), contentType: String(borrowed: contentType),
                payload: [UInt8](borrowed: payload))
            let runtime = agent.runtime
            runtime.recorded.withLock { $0.requests.append(request) }
            let response = runtime.respond(request)
            if case .refuse(let status) = response { return agentd_status(rawValue: status) }
            let completion = Completion(callback: onResponse, context: context)
            // Answer on another thread, as the runtime's reader thread would.
            DispatchQueue.global().async { completion.complete(with: response) }
            return AGENTD_OK
        }
        table.reply = { call, messageType, contentType, payload in
            guard let call = FakeCall.from(call) else { return AGENTD_MISUSE }
            let type = String(borrowed: messageType)
            let contentType = String(borrowed: contentType)
            // JSON (and an event's empty answer) as text; anything else as its bytes.
            guard contentType.isEmpty || contentType == "application/json" else {
                return call.record(.binaryReply(messageType: type, contentType: contentType, payload: [UInt8](borrowed: payload)))
            }
            return call.record(.reply(messageType: type, contentType: contentType, json: String(borrowed: payload)))
        }
        table.fail = { call, status, message in
            guard let call = FakeCall.from(call) else { return AGENTD_MISUSE }
            // As the runtime: the status it was given when it takes the answer, MISUSE when not.
            let recorded = call.record(.fail(status: status.rawValue, message: String(borrowed: message)))
            return recorded == AGENTD_OK ? status : recorded
        }
        table.log = { plugin, agent, level, message in
            guard let plugin else { return }
            let runtime = Unmanaged<FakeRuntime>.fromOpaque(UnsafeRawPointer(plugin)).takeUnretainedValue()
            let line = LogLine(level: level.rawValue, agent: FakeAgent.from(agent)?.id, text: String(borrowed: message))
            runtime.recorded.withLock { $0.logs.append(line) }
        }
        table.setting = { plugin, key, value in
            guard let plugin, let value else { return AGENTD_MISUSE }
            let runtime = Unmanaged<FakeRuntime>.fromOpaque(UnsafeRawPointer(plugin)).takeUnretainedValue()
            guard let text = runtime.settings[String(borrowed: key)] else { return AGENTD_NOT_FOUND }
            value.pointee = agentd_str(data: text, length: strlen(text))
            return AGENTD_OK
        }
        table.plugin_publish = { plugin, _, _, _, _, _ in
            guard let plugin else { return AGENTD_MISUSE }
            let runtime = Unmanaged<FakeRuntime>.fromOpaque(UnsafeRawPointer(plugin)).takeUnretainedValue()
            return runtime.beyondTable("plugin_publish", at: \.plugin_publish) ?? AGENTD_UNAVAILABLE
        }
        table.plugin_send = { plugin, _, _, _, _, _, _, _ in
            guard let plugin else { return AGENTD_MISUSE }
            let runtime = Unmanaged<FakeRuntime>.fromOpaque(UnsafeRawPointer(plugin)).takeUnretainedValue()
            return runtime.beyondTable("plugin_send", at: \.plugin_send) ?? AGENTD_UNAVAILABLE
        }
        table.state_changed = { reference in
            guard let agent = FakeAgent.from(reference) else { return AGENTD_MISUSE }
            if let refused = agent.runtime.beyondTable("state_changed", at: \.state_changed) { return refused }
            agent.stateDidChange()
            agent.runtime.recorded.withLock { _ = $0.typesReportingChanges.insert(agent.id.type) }
            return AGENTD_OK
        }
        api.initialize(to: table)
    }

    /// Records a call of a function the table's `size` does not cover (the plugin read past
    /// what the runtime offers); AGENTD_MISUSE then, nil when the call is allowed.
    private func beyondTable(_ name: String, at field: PartialKeyPath<agentd_host_api>) -> agentd_status? {
        let offset = MemoryLayout<agentd_host_api>.offset(of: field)!
        guard offset >= Int(api.pointee.size) else { return nil }
        recorded.withLock { $0.misuses.append("\(name) called, but the host table's size (\(api.pointee.size)) ends at or before it (offset \(offset))") }
        return AGENTD_MISUSE
    }

    deinit {
        api.deallocate()
        settings.values.forEach { free($0) }
    }

    /// The `agentd_plugin_ref *` this runtime gives the plugin.
    var pluginReference: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    var publications: [Publication] { recorded.withLock { $0.publications } }
    var logs: [LogLine] { recorded.withLock { $0.logs } }
    var requests: [Request] { recorded.withLock { $0.requests } }
    /// Host functions called beyond the table's size (a correct plugin: none).
    var misuses: [String] { recorded.withLock { $0.misuses } }

    /// The agent's last checkpoint in the state store, or nil.
    func storedState(_ agent: AgentID) -> String? { recorded.withLock { $0.store[agent] } }

    /// Every write into the state store, in order.
    var checkpoints: [Checkpoint] { recorded.withLock { $0.checkpoints } }

    /// How many snapshots checkpoints took (including those equal to the stored state).
    var snapshotsTaken: Int { recorded.withLock { $0.snapshotsTaken } }

    /// Puts a state into the store, as `agentd state load` would for an agent not resident.
    func store(_ state: String, for agent: AgentID) { recorded.withLock { $0.store[agent] = state } }

    /// Whether an agent of `type` has called `state_changed` (the runtime then checkpoints
    /// only the messages that call it).
    func reportsStateChanges(_ type: String) -> Bool { recorded.withLock { $0.typesReportingChanges.contains(type) } }

    /// Writes `state` as `agent`'s checkpoint unless it equals the stored one.
    fileprivate func write(_ state: String, for agent: AgentID) {
        recorded.withLock { recorded in
            recorded.snapshotsTaken += 1
            guard recorded.store[agent] != state else { return }
            recorded.store[agent] = state
            recorded.checkpoints.append(Checkpoint(agent: agent, state: state))
        }
    }

    /// Calls the plugin's `export` as the entry would.
    func load(_ plugin: Plugin) -> LoadedPlugin? {
        plugin.export(UnsafePointer(api), pluginReference).map { LoadedPlugin(runtime: self, descriptor: $0) }
    }

    /// Calls a plugin's C entry, as the loader does.
    func load(entry: agentd_plugin_entry_fn) -> LoadedPlugin? {
        entry(UnsafePointer(api), pluginReference).map { LoadedPlugin(runtime: self, descriptor: $0) }
    }
}

/// A `send` callback and its context, handed to another thread.
private struct Completion: @unchecked Sendable {
    // @unchecked: the ABI lets the runtime call the callback from any thread.
    let callback: agentd_response_fn
    let context: UnsafeMutableRawPointer?

    func complete(with response: FakeRuntime.Response) {
        var status = AGENTD_OK
        var error = ""
        var messageType = ""
        var contentType = "application/json"
        var payload: [UInt8] = []
        switch response {
        case .refuse: return
        case .error(let code, let text):
            status = agentd_status(rawValue: code)
            error = text
        case .answer(let type, let body):
            messageType = type
            payload = Array(body.utf8)
        case .binaryAnswer(let type, let bodyType, let body):
            messageType = type
            contentType = bodyType
            payload = body
        }
        error.withCString { errorText in
            messageType.withCString { typeText in
                contentType.withCString { contentType in
                    payload.withUnsafeBufferPointer { body in
                        var answer = agentd_response()
                        answer.size = UInt32(MemoryLayout<agentd_response>.size)
                        answer.status = status
                        answer.error = agentd_str(data: errorText, length: strlen(errorText))
                        answer.message_type = agentd_str(data: typeText, length: strlen(typeText))
                        answer.content_type = agentd_str(data: contentType, length: strlen(contentType))
                        answer.payload = agentd_bytes(data: body.baseAddress, length: body.count)
                        callback(context, &answer)
                    }
                }
            }
        }
    }
}

/// A plugin descriptor the fake runtime got from an entry.
struct LoadedPlugin: @unchecked Sendable {
    // @unchecked: the descriptor is immutable.
    let runtime: FakeRuntime
    let descriptor: UnsafePointer<agentd_plugin>

    var agentTypes: UnsafeBufferPointer<agentd_agent_type> {
        UnsafeBufferPointer(start: descriptor.pointee.agent_types, count: descriptor.pointee.agent_type_count)
    }

    func agentType(_ name: String) -> UnsafePointer<agentd_agent_type>? {
        for index in agentTypes.indices where String(cString: agentTypes[index].name) == name {
            return agentTypes.baseAddress! + index
        }
        return nil
    }

    /// Creates an instance through the type's `create`, as the runtime does on a first message.
    func create(_ id: AgentID) throws -> FakeAgent {
        let type = try #require(agentType(id.type), "no agent type \(id.type)")
        let agent = FakeAgent(runtime: runtime, id: id, type: type)
        var instance: UnsafeMutableRawPointer?
        let status = id.key.withCString { key in
            type.pointee.create!(runtime.pluginReference, type, agent.reference,
                                 agentd_str(data: key, length: strlen(key)), &instance)
        }
        guard status == AGENTD_OK else { throw CreateFailed(status: status.rawValue) }
        agent.instance = instance
        return agent
    }

    /// Activates an agent as the runtime does on its first message with a state store:
    /// `create`, then `restore` from the stored state when there is one.
    /// - Throws: ``CreateFailed``, or ``RestoreRefused`` (the instance is destroyed then).
    func activate(_ id: AgentID) throws -> FakeAgent {
        let agent = try create(id)
        guard let stored = runtime.storedState(id), agent.type.pointee.restore != nil else { return agent }
        let status = agent.restore(stored)
        guard status == AGENTD_OK else {
            agent.destroy()
            throw RestoreRefused(status: status.rawValue)
        }
        return agent
    }
}

struct CreateFailed: Error, Equatable {
    var status: agentd_status.RawValue
}

struct RestoreRefused: Error, Equatable {
    var status: agentd_status.RawValue
}

/// One agent as the fake runtime knows it: its `agentd_agent_ref *` and the plugin's instance.
///
/// Where its type offers snapshot and restore, ``handle(_:json:rpc:topic:sender:contentType:)``
/// checkpoints after each message as the runtime does: until an agent of the type has called
/// `state_changed`, the snapshot is taken after every message and written when it differs
/// from the stored one; after that, only the messages during which `state_changed` was called
/// are checkpointed.
final class FakeAgent: @unchecked Sendable {
    // @unchecked: `instance` is set once, right after create, before any other use (and
    // cleared by destroy, after the last); `changed` is atomic.
    let runtime: FakeRuntime
    let id: AgentID
    let type: UnsafePointer<agentd_agent_type>
    var instance: UnsafeMutableRawPointer?
    /// `state_changed` was called since the last checkpoint.
    private let changed = Atomic<Bool>(false)

    init(runtime: FakeRuntime, id: AgentID, type: UnsafePointer<agentd_agent_type>) {
        self.runtime = runtime
        self.id = id
        self.type = type
    }

    var reference: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    static func from(_ reference: OpaquePointer?) -> FakeAgent? {
        reference.map { Unmanaged<FakeAgent>.fromOpaque(UnsafeRawPointer($0)).takeUnretainedValue() }
    }

    /// Delivers one message through the type's handler table, as the runtime's mailbox does.
    /// Returns the handler's status and the call, whose answer may come later.
    func deliver(
        _ messageType: String, json: String, rpc: Bool, topic: TopicID? = nil, sender: AgentID? = nil,
        contentType: String = "application/json", messageID: String = "m-1"
    ) -> (status: agentd_status, call: FakeCall) {
        deliver(messageType, payload: Array(json.utf8), rpc: rpc, topic: topic, sender: sender, contentType: contentType,
                messageID: messageID)
    }

    /// ``deliver(_:json:rpc:topic:sender:contentType:messageID:)`` with a payload of any bytes.
    func deliver(
        _ messageType: String, payload: [UInt8], rpc: Bool, topic: TopicID? = nil, sender: AgentID? = nil,
        contentType: String, messageID: String = "m-1"
    ) -> (status: agentd_status, call: FakeCall) {
        let call = FakeCall()
        let handlers = UnsafeBufferPointer(start: type.pointee.handlers, count: type.pointee.handler_count)
        guard let handler = handlers.first(where: { String(cString: $0.message_type) == messageType })?.handle else {
            return (AGENTD_UNKNOWN_MESSAGE_TYPE, call)
        }
        // Every view points into copies that die when this function returns: the plugin must
        // copy what it keeps.
        let texts: [String] = [
            id.type, id.key, sender?.type ?? "", sender?.key ?? "", topic?.type ?? "", topic?.source ?? "",
            messageID, messageType, contentType,
        ]
        var strings = texts.map { strdup($0)! }
        let body = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(payload.count, 1))
        _ = body.initialize(from: payload)
        defer {
            for string in strings {
                memset(string, 0x55, strlen(string))
                free(string)
            }
            strings.removeAll()
            body.update(repeating: 0x55)
            body.deallocate()
        }
        func view(_ index: Int) -> agentd_str { agentd_str(data: strings[index], length: strlen(strings[index])) }
        var message = agentd_message()
        message.size = UInt32(MemoryLayout<agentd_message>.size)
        message.host = UnsafePointer(runtime.api)
        message.agent = reference
        message.agent_type = view(0)
        message.agent_key = view(1)
        message.sender_type = view(2)
        message.sender_key = view(3)
        message.topic_type = view(4)
        message.topic_source = view(5)
        message.message_id = view(6)
        message.message_type = view(7)
        message.content_type = view(8)
        message.payload = agentd_bytes(data: body.baseAddress, length: payload.count)
        message.is_rpc = rpc ? 1 : 0
        message.call = call.token
        let status = handler(instance, &message)
        return (status, call)
    }

    /// Delivers a message and waits for its answer (a handler that answered inline, or one
    /// that returned AGENTD_PENDING and answered later), then checkpoints as the runtime does
    /// before it lets an RPC's answer go out.
    func handle(
        _ messageType: String, json: String, rpc: Bool, topic: TopicID? = nil, sender: AgentID? = nil,
        contentType: String = "application/json"
    ) async throws -> FakeCall.Answer {
        try await handle(messageType, payload: Array(json.utf8), rpc: rpc, topic: topic, sender: sender,
                         contentType: contentType)
    }

    /// ``handle(_:json:rpc:topic:sender:contentType:)`` with a payload of any bytes.
    func handle(
        _ messageType: String, payload: [UInt8], rpc: Bool, topic: TopicID? = nil, sender: AgentID? = nil,
        contentType: String
    ) async throws -> FakeCall.Answer {
        let (status, call) = deliver(messageType, payload: payload, rpc: rpc, topic: topic, sender: sender,
                                     contentType: contentType)
        let answer: FakeCall.Answer
        switch status {
        case AGENTD_PENDING:
            answer = try await call.answer()
        case AGENTD_OK:
            // An event handler that returns OK is done; an RPC's must have answered.
            guard let first = call.answers.first ?? (rpc ? nil : .returned(status: status.rawValue)) else {
                throw NotAnswered(status: status.rawValue)
            }
            answer = first
        default:
            answer = call.answers.first ?? .returned(status: status.rawValue)
        }
        guard checkpoint() else {
            // The runtime answers a held RPC with an error and drops the instance.
            destroy()
            return rpc ? .fail(status: AGENTD_FAILED.rawValue, message: "The state of agent \(id) could not be saved.") : answer
        }
        return answer
    }

    /// `state_changed` from the plugin.
    fileprivate func stateDidChange() {
        changed.store(true, ordering: .relaxed)
    }

    /// The runtime's checkpoint after a message: nothing for a type without snapshot/restore,
    /// nor for a message that did not call `state_changed` once the type has called it; else
    /// the snapshot, written when it differs from the stored state. False if the snapshot failed.
    @discardableResult
    func checkpoint() -> Bool {
        let dirty = changed.exchange(false, ordering: .relaxed)
        guard type.pointee.snapshot != nil, type.pointee.restore != nil else { return true }
        if !dirty && runtime.reportsStateChanges(id.type) { return true }
        let (status, state) = snapshot()
        guard status == AGENTD_OK else { return false }
        runtime.write(state, for: id)
        return true
    }

    /// Retires the agent as the runtime does when it is idle: a final checkpoint, then destroy.
    func retire() {
        checkpoint()
        destroy()
    }

    func snapshot() -> (status: agentd_status, bytes: String) {
        let sink = UnsafeMutablePointer<[UInt8]>.allocate(capacity: 1)
        sink.initialize(to: [])
        defer { sink.deinitialize(count: 1); sink.deallocate() }
        let status = type.pointee.snapshot!(instance, { sink, bytes in
            let sink = sink!.assumingMemoryBound(to: [UInt8].self)
            sink.pointee += UnsafeBufferPointer(start: bytes.data, count: bytes.length)
        }, sink)
        return (status, String(decoding: sink.pointee, as: UTF8.self))
    }

    func restore(_ state: String) -> agentd_status {
        var copy = Array(state.utf8)
        return copy.withUnsafeMutableBufferPointer { bytes in
            type.pointee.restore!(instance, agentd_bytes(data: bytes.baseAddress, length: bytes.count))
        }
    }

    func destroy() {
        type.pointee.destroy?(instance)
        instance = nil
    }
}

struct NotAnswered: Error {
    var status: agentd_status.RawValue
}

/// One message being handled: the `agentd_call *` token and the answers it received.
final class FakeCall: Sendable {
    enum Answer: Sendable, Equatable {
        case reply(messageType: String, contentType: String, json: String)
        /// An answer in a content type other than JSON, as its bytes.
        case binaryReply(messageType: String, contentType: String, payload: [UInt8])
        case fail(status: agentd_status.RawValue, message: String)
        /// The handler returned this status without answering.
        case returned(status: agentd_status.RawValue)
    }

    private let recorded = Mutex<[Answer]>([])
    private let stream: AsyncStream<Answer>
    private let continuation: AsyncStream<Answer>.Continuation

    init() {
        (stream, continuation) = AsyncStream.makeStream(of: Answer.self)
    }

    var token: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    static func from(_ token: OpaquePointer?) -> FakeCall? {
        token.map { Unmanaged<FakeCall>.fromOpaque(UnsafeRawPointer($0)).takeUnretainedValue() }
    }

    /// Every answer so far (a correct plugin gives exactly one).
    var answers: [Answer] { recorded.withLock { $0 } }

    func record(_ answer: Answer) -> agentd_status {
        let first = recorded.withLock { answers in
            answers.append(answer)
            return answers.count == 1
        }
        continuation.yield(answer)
        return first ? AGENTD_OK : AGENTD_MISUSE
    }

    /// The first answer, waiting for it at most `timeout`.
    func answer(within timeout: Duration = .seconds(10)) async throws -> Answer {
        let stream = self.stream
        let answer = await withDeadline(timeout) {
            for await answer in stream { return answer }
            return nil
        }
        guard let answer else { throw TimedOut(timeout: timeout) }
        return answer
    }
}

struct TimedOut: Error {
    var timeout: Duration
}

extension String {
    init(borrowed view: agentd_str) {
        self = view.data.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: view.length), as: UTF8.self) } ?? ""
    }

    init(borrowed view: agentd_bytes) {
        self = view.data.map { String(decoding: UnsafeBufferPointer(start: $0, count: view.length), as: UTF8.self) } ?? ""
    }
}

extension [UInt8] {
    init(borrowed view: agentd_bytes) {
        self = view.data.map { Array(UnsafeBufferPointer(start: $0, count: view.length)) } ?? []
    }
}
