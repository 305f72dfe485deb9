import AgentPluginABI

/// A NUL-terminated copy of a string the runtime lends to plugins as an `agentd_str`, living
/// as long as this object.
final class CString: @unchecked Sendable {
    // @unchecked Sendable: the buffer is written once in init, only read afterwards, and freed
    // in deinit.
    private let buffer: UnsafeMutableBufferPointer<CChar>

    init(_ text: String) {
        let bytes = Array(text.utf8CString)
        buffer = UnsafeMutableBufferPointer<CChar>.allocate(capacity: bytes.count)
        _ = buffer.initialize(from: bytes)
    }

    deinit { buffer.deallocate() }

    /// The borrowed view (without the terminating NUL).
    var view: agentd_str { agentd_str(data: UnsafePointer(buffer.baseAddress), length: buffer.count - 1) }
}
