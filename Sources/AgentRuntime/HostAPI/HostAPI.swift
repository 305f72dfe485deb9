import AgentCore
import AgentPluginABI
import Logging

/// The `agentd_host_api` table every plugin receives: C entry points that find the runtime
/// object behind each handle a plugin passes — through the handle's ``HandleSpace`` — refuse
/// stale or foreign ones with AGENTD_MISUSE, and forward to that runtime's parts.
enum HostAPI {
    /// One table for the process, allocated once and never freed (plugins keep the pointer).
    /// It holds only functions; which runtime a call reaches is decided by its handles.
    nonisolated(unsafe) static let table: UnsafeMutablePointer<agentd_host_api> = {
        // nonisolated(unsafe): written once here, read-only afterwards.
        let table = UnsafeMutablePointer<agentd_host_api>.allocate(capacity: 1)
        var api = agentd_host_api()
        api.size = UInt32(MemoryLayout<agentd_host_api>.size)
        api.abi_major = UInt16(AGENTD_ABI_MAJOR)
        api.abi_minor = UInt16(AGENTD_ABI_MINOR)
        api.publish = hostPublish
        api.send = hostSend
        api.reply = hostReply
        api.fail = hostFail
        api.log = hostLog
        api.setting = hostSetting
        api.plugin_publish = hostPluginPublish
        api.plugin_send = hostPluginSend
        api.state_changed = hostStateChanged
        table.initialize(to: api)
        return table
    }()
}

// MARK: Resolving handles

private func agent(_ handle: OpaquePointer?) -> AgentInstance? {
    HandleSpaces.space(of: handle)?.agents.resolve(handle)
}

private func pluginReference(_ handle: OpaquePointer?) -> PluginReference? {
    HandleSpaces.space(of: handle)?.plugins.resolve(handle)
}

/// The call `handle` names, taken out of its table (it is being answered).
private func takeCall(_ handle: OpaquePointer?) -> HandlerCall? {
    guard let call = HandleSpaces.space(of: handle)?.calls.remove(handle) else { return nil }
    call.agent.context.invoker.didTake(call)
    return call
}

/// ABI 1.0's `from` = NULL names no runtime: the process's only runtime serves it (its
/// plugins' references all carry its dispatch context).
private func soleRuntime() -> DispatchContext? {
    HandleSpaces.sole?.plugins.all.lazy.compactMap(\.context).first
}

// MARK: Entry points

private let hostPublish: @convention(c) (
    OpaquePointer?, agentd_str, agentd_str, agentd_str, agentd_str, agentd_bytes
) -> agentd_status = { from, topicType, topicSource, messageType, contentType, payload in
    let sender: AgentInstance?
    let context: DispatchContext
    if from == nil {
        guard let sole = soleRuntime() else { return AGENTD_MISUSE }
        (sender, context) = (nil, sole)
    } else {
        guard let agent = agent(from) else { return AGENTD_MISUSE }
        (sender, context) = (agent, agent.context)
    }
    return context.outbox.publish(
        sender: sender?.id, topicType: topicType.string, topicSource: topicSource.string,
        messageType: messageType.string, contentType: contentType.string, payload: payload.buffer,
        trace: sender?.currentTrace)
}

private let hostSend: @convention(c) (
    OpaquePointer?, agentd_str, agentd_str, agentd_str, agentd_str, agentd_bytes, agentd_response_fn?,
    UnsafeMutableRawPointer?
) -> agentd_status = { from, targetType, targetKey, messageType, contentType, payload, callback, context in
    guard let callback else { return AGENTD_MISUSE }
    let sender: AgentID?
    let plugin: LoadedPlugin?
    let dispatch: DispatchContext
    var trace: TraceContext?
    if from == nil {
        // ABI 1.0 without an agent: the completion is the plugin's code, so its image names
        // the plugin, and the plugin its runtime.
        let address = unsafeBitCast(callback, to: UnsafeRawPointer.self)
        guard let reference = HandleSpaces.all.lazy.compactMap({ $0.plugin(containing: address) }).first,
              let context = reference.context
        else { return AGENTD_MISUSE }
        (sender, plugin, dispatch) = (nil, reference.plugin, context)
    } else {
        guard let agent = agent(from) else { return AGENTD_MISUSE }
        // The completion is the agent's plugin's code: that version stays loaded until it is called.
        (sender, plugin, dispatch) = (agent.id, agent.type?.plugin, agent.context)
        trace = agent.currentTrace
    }
    return dispatch.requests.send(
        sender: sender, plugin: plugin, targetType: targetType.string, targetKey: targetKey.string,
        messageType: messageType.string, contentType: contentType.string, payload: payload.buffer,
        callback: callback, context: context, trace: trace)
}

private let hostReply: @convention(c) (OpaquePointer?, agentd_str, agentd_str, agentd_bytes) -> agentd_status = {
    handle, messageType, contentType, payload in
    guard let call = takeCall(handle) else { return AGENTD_MISUSE }
    call.agent.context.invoker.reply(call, messageType: messageType, contentType: contentType, payload: payload)
    return AGENTD_OK
}

private let hostFail: @convention(c) (OpaquePointer?, agentd_status, agentd_str) -> agentd_status = {
    handle, status, message in
    guard let call = takeCall(handle) else { return AGENTD_MISUSE }
    call.agent.context.invoker.fail(call, status: status, message: message.string)
    return status
}

private let hostLog: @convention(c) (OpaquePointer?, OpaquePointer?, agentd_log_level, agentd_str) -> Void = {
    pluginHandle, agentHandle, level, message in
    let agent = agent(agentHandle)
    let reference = pluginReference(pluginHandle)
    guard let logger = agent?.context.logger ?? reference?.logger ?? soleRuntime()?.logger else { return }
    var metadata: Logger.Metadata = [:]
    if let reference {
        metadata["plugin"] = "\(reference.plugin?.name ?? reference.path)"
        metadata["plugin.path"] = "\(reference.path)"
    }
    if let agent { metadata["agent.id"] = "\(agent.id)" }
    let text = Logger.Message(stringLiteral: message.string)
    switch level {
    case AGENTD_LOG_DEBUG: logger.debug(text, metadata: metadata)
    case AGENTD_LOG_INFO: logger.info(text, metadata: metadata)
    case AGENTD_LOG_WARNING: logger.warning(text, metadata: metadata)
    default: logger.error(text, metadata: metadata)
    }
}

private let hostSetting: @convention(c) (OpaquePointer?, agentd_str, UnsafeMutablePointer<agentd_str>?) -> agentd_status = {
    pluginHandle, key, value in
    guard let value, let reference = pluginReference(pluginHandle) else { return AGENTD_MISUSE }
    guard let plugin = reference.plugin else { return AGENTD_UNAVAILABLE }
    guard let found = plugin.setting(key.string) else { return AGENTD_NOT_FOUND }
    value.pointee = found
    return AGENTD_OK
}

private let hostPluginPublish: @convention(c) (
    OpaquePointer?, agentd_str, agentd_str, agentd_str, agentd_str, agentd_bytes
) -> agentd_status = { pluginHandle, topicType, topicSource, messageType, contentType, payload in
    guard let reference = pluginReference(pluginHandle) else { return AGENTD_MISUSE }
    guard reference.plugin != nil, let context = reference.context else { return AGENTD_UNAVAILABLE }
    return context.outbox.publish(
        sender: nil, topicType: topicType.string, topicSource: topicSource.string,
        messageType: messageType.string, contentType: contentType.string, payload: payload.buffer)
}

private let hostPluginSend: @convention(c) (
    OpaquePointer?, agentd_str, agentd_str, agentd_str, agentd_str, agentd_bytes, agentd_response_fn?,
    UnsafeMutableRawPointer?
) -> agentd_status = { pluginHandle, targetType, targetKey, messageType, contentType, payload, callback, context in
    guard let callback, let reference = pluginReference(pluginHandle) else { return AGENTD_MISUSE }
    guard let plugin = reference.plugin, let dispatch = reference.context else { return AGENTD_UNAVAILABLE }
    return dispatch.requests.send(
        sender: nil, plugin: plugin, targetType: targetType.string, targetKey: targetKey.string,
        messageType: messageType.string, contentType: contentType.string, payload: payload.buffer,
        callback: callback, context: context)
}

private let hostStateChanged: @convention(c) (OpaquePointer?) -> agentd_status = { handle in
    guard let agent = agent(handle) else { return AGENTD_MISUSE }
    agent.stateDidChange()
    return AGENTD_OK
}
