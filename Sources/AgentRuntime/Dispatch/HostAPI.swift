import AgentPluginABI
import Logging

/// The `agentd_host_api` table every plugin receives: C entry points that find the runtime
/// object behind each opaque reference (refusing stale ones) and forward to it.
enum HostAPI {
    /// One table for the process, allocated once and never freed (plugins keep the pointer).
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
        table.initialize(to: api)
        return table
    }()
}

/// The runtime for a call made as `from` (or the process's runtime when `from` is NULL).
private func core(for from: OpaquePointer?) -> (RuntimeCore, AgentInstance?)? {
    if from == nil { return RuntimeCore.default.map { ($0, nil) } }
    guard let agent = AgentReferences.resolve(from) else { return nil }
    return (agent.core, agent)
}

private let hostPublish: @convention(c) (
    OpaquePointer?, agentd_str, agentd_str, agentd_str, agentd_str, agentd_bytes
) -> agentd_status = { from, topicType, topicSource, messageType, contentType, payload in
    guard let (core, agent) = core(for: from) else { return from == nil ? AGENTD_UNAVAILABLE : AGENTD_MISUSE }
    return core.publish(
        from: agent, topicType: topicType.string, topicSource: topicSource.string,
        messageType: messageType.string, contentType: contentType.string, payload: payload.buffer)
}

private let hostSend: @convention(c) (
    OpaquePointer?, agentd_str, agentd_str, agentd_str, agentd_str, agentd_bytes, agentd_response_fn?,
    UnsafeMutableRawPointer?
) -> agentd_status = { from, targetType, targetKey, messageType, contentType, payload, callback, context in
    guard let callback else { return AGENTD_MISUSE }
    guard let (core, agent) = core(for: from) else { return from == nil ? AGENTD_UNAVAILABLE : AGENTD_MISUSE }
    return core.sendRequest(
        from: agent, targetType: targetType.string, targetKey: targetKey.string, messageType: messageType.string,
        contentType: contentType.string, payload: payload.buffer, callback: callback, context: context)
}

private let hostReply: @convention(c) (OpaquePointer?, agentd_str, agentd_str, agentd_bytes) -> agentd_status = {
    token, messageType, contentType, payload in
    guard let call = HandlerCalls.take(token: token) else { return AGENTD_MISUSE }
    call.agent.core.reply(call, messageType: messageType, contentType: contentType, payload: payload)
    return AGENTD_OK
}

private let hostFail: @convention(c) (OpaquePointer?, agentd_status, agentd_str) -> agentd_status = {
    token, status, message in
    guard let call = HandlerCalls.take(token: token) else { return AGENTD_MISUSE }
    call.agent.core.fail(call, status: status, message: message.string)
    return status
}

private let hostLog: @convention(c) (OpaquePointer?, OpaquePointer?, agentd_log_level, agentd_str) -> Void = {
    pluginPointer, agentPointer, level, message in
    let agent = AgentReferences.resolve(agentPointer)
    let plugin = PluginReferences.lookup(pluginPointer)
    guard let logger = agent?.core.logger ?? plugin?.reference.logger ?? RuntimeCore.default?.logger else { return }
    var metadata: Logger.Metadata = [:]
    if let plugin {
        metadata["plugin"] = "\(plugin.plugin?.name ?? plugin.path)"
        metadata["plugin.path"] = "\(plugin.path)"
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
    pluginPointer, key, value in
    guard let value, let reference = PluginReferences.lookup(pluginPointer) else { return AGENTD_MISUSE }
    guard let plugin = reference.plugin else { return AGENTD_UNAVAILABLE }
    guard let found = plugin.setting(key.string) else { return AGENTD_NOT_FOUND }
    value.pointee = found
    return AGENTD_OK
}
