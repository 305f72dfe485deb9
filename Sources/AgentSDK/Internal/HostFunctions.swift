import AgentPluginABI

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The runtime's `agentd_host_api` for one loaded plugin, with Swift-typed calls.
///
/// Every function of the table is thread-safe and copies what it is given before returning.
final class HostFunctions: @unchecked Sendable {
    // @unchecked: immutable after init; the table's functions are thread-safe by the ABI.

    /// A copy of the runtime's table, checked to hold every function of ABI 1.0 (the later
    /// fields are zero where the runtime's table is shorter).
    private let table: agentd_host_api
    /// `state_changed` (ABI 1.2), when the runtime's table covers it; nil on older runtimes.
    private let stateChangedFunction: agentd_host_api.StateChanged?

    /// The size of ABI 1.0's table: what this SDK needs. Functions added later are called only
    /// where the runtime's table covers them (``stateChanged(agent:)``).
    static let abi10Size = MemoryLayout<agentd_host_api>.offset(of: \.plugin_publish)!
    /// The size a table needs to hold `state_changed` (ABI 1.2).
    static let abi12Size =
        MemoryLayout<agentd_host_api>.offset(of: \.state_changed)! + MemoryLayout<agentd_host_api.StateChanged?>.size
    /// The plugin as the runtime knows it (for log and setting).
    let plugin: OpaquePointer?
    /// The plugin's name, for messages.
    let pluginName: String

    /// Returns nil when the table lacks a function this SDK calls (an older or broken runtime).
    init?(api: UnsafePointer<agentd_host_api>, plugin: OpaquePointer?, pluginName: String) {
        let size = Int(api.pointee.size)
        guard api.pointee.abi_major == AGENTD_ABI_MAJOR,
              size >= Self.abi10Size
        else { return nil }
        var table = agentd_host_api()
        withUnsafeMutableBytes(of: &table) { copy in
            copy.copyMemory(from: UnsafeRawBufferPointer(start: api, count: min(size, copy.count)))
        }
        guard table.publish != nil, table.send != nil, table.reply != nil, table.fail != nil,
              table.log != nil, table.setting != nil
        else { return nil }
        self.table = table
        stateChangedFunction = size >= Self.abi12Size ? table.state_changed : nil
        self.plugin = plugin
        self.pluginName = pluginName
    }

    /// Logs with whatever table the runtime passed, before it has been validated: for the
    /// reason a plugin refuses to start.
    static func logRefusal(api: UnsafePointer<agentd_host_api>?, plugin: OpaquePointer?, _ message: String) {
        guard let api, Int(api.pointee.size) >= abi10Size, let log = api.pointee.log
        else { return }
        message.withView { log(plugin, nil, AGENTD_LOG_ERROR, $0) }
    }

    func publish(from agent: AgentReference, to topic: TopicID, messageType: String, contentType: String, payload: Data)
        -> agentd_status
    {
        topic.type.withView { topicType in
            topic.source.withView { topicSource in
                messageType.withView { messageType in
                    contentType.withView { contentType in
                        payload.withView { payload in
                            table.publish!(agent.pointer, topicType, topicSource, messageType, contentType, payload)
                        }
                    }
                }
            }
        }
    }

    func send(
        from agent: AgentReference, to target: AgentID, messageType: String, contentType: String, payload: Data,
        onResponse: agentd_response_fn, context: UnsafeMutableRawPointer
    ) -> agentd_status {
        target.type.withView { targetType in
            target.key.withView { targetKey in
                messageType.withView { messageType in
                    contentType.withView { contentType in
                        payload.withView { payload in
                            table.send!(agent.pointer, targetType, targetKey, messageType, contentType, payload,
                                        onResponse, context)
                        }
                    }
                }
            }
        }
    }

    /// Answers an RPC, or finishes a pending event (messageType empty, payload ignored).
    func reply(_ call: CallToken, messageType: String, contentType: String, payload: Data) -> agentd_status {
        messageType.withView { messageType in
            contentType.withView { contentType in
                payload.withView { payload in
                    table.reply!(call.pointer, messageType, contentType, payload)
                }
            }
        }
    }

    /// Answers an RPC with an error, or finishes a pending event as failed.
    ///
    /// - Returns: `AGENTD_OK` when the runtime took the answer, otherwise what it returned
    ///   (`AGENTD_MISUSE`: a call already answered or unknown). The runtime's `fail` returns the
    ///   status it was given when it takes the answer (so that a C handler can
    ///   `return host->fail(…)`), not `AGENTD_OK`.
    func fail(_ call: CallToken, _ code: AgentError.Code, _ message: String) -> agentd_status {
        let status = message.withView { table.fail!(call.pointer, code.cStatus, $0) }
        return status == code.cStatus ? AGENTD_OK : status
    }

    func log(agent: OpaquePointer?, level: AgentLogger.Level, _ message: String) {
        let cLevel: agentd_log_level =
            switch level {
            case .debug: AGENTD_LOG_DEBUG
            case .info: AGENTD_LOG_INFO
            case .warning: AGENTD_LOG_WARNING
            case .error: AGENTD_LOG_ERROR
            }
        message.withView { table.log!(plugin, agent, cLevel, $0) }
    }

    /// Tells the runtime that the message `agent` is handling changed its state (ABI 1.2's
    /// `state_changed`). Nil when the runtime predates it (its table is too short): nothing is
    /// called, and the runtime keeps checkpointing after every message whose snapshot differs.
    func stateChanged(agent: AgentReference) -> agentd_status? {
        stateChangedFunction.map { $0(agent.pointer) }
    }

    /// A key of the plugin's `[plugin.NAME]` section, or nil when absent.
    func setting(_ key: String) -> String? {
        var value = agentd_str()
        let status = key.withView { table.setting!(plugin, $0, &value) }
        return status == AGENTD_OK ? String(value) : nil
    }
}

extension agentd_host_api {
    /// The type of the `state_changed` field (an optional C function pointer).
    typealias StateChanged = @convention(c) (OpaquePointer?) -> agentd_status
}
