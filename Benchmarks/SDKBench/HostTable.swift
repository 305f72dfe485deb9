import AgentPluginABI
import Dispatch

/// The runtime's side of one message, without the runtime: a host table whose `reply` and
/// `fail` signal ``answered`` (what the runtime's thread waits for before the next message);
/// publishing, sending, logging and settings do nothing.
enum BenchHost {
    /// Signalled once per answered message.
    static let answered = DispatchSemaphore(value: 0)

    // nonisolated(unsafe): written once, here; plugins only read it.
    nonisolated(unsafe) static let table: UnsafeMutablePointer<agentd_host_api> = {
        var table = agentd_host_api()
        table.size = UInt32(MemoryLayout<agentd_host_api>.size)
        table.abi_major = UInt16(AGENTD_ABI_MAJOR)
        table.abi_minor = UInt16(AGENTD_ABI_MINOR)
        table.publish = { _, _, _, _, _, _ in AGENTD_OK }
        table.send = { _, _, _, _, _, _, _, _ in AGENTD_UNAVAILABLE }
        table.reply = { _, _, _, _ in
            BenchHost.answered.signal()
            return AGENTD_OK
        }
        table.fail = { _, _, _ in
            BenchHost.answered.signal()
            return AGENTD_OK
        }
        table.log = { _, _, _, _ in }
        table.setting = { _, _, _ in AGENTD_NOT_FOUND }
        let pointer = UnsafeMutablePointer<agentd_host_api>.allocate(capacity: 1)
        pointer.initialize(to: table)
        return pointer
    }()
}
