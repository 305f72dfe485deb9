#if canImport(Glibc)
import Glibc
#endif
import CRuntimeSupport

/// The crash record shared between `agentd run`'s supervisor and its runtime child: a memfd in
/// which each handler thread of the child notes the message it is handling, and which a fatal
/// signal marks with the thread that received it (`crash_record.h`). The supervisor makes one
/// per child (``create(slots:)``) and reads it when the child is dead (``report``); the child
/// attaches to the one it inherited (``attach(fd:)``).
public final class CrashRecord: @unchecked Sendable {
    // @unchecked Sendable: `mapping` and `size` are set in init and never changed; the child
    // writes the mapped memory with atomics (C11) and the supervisor only reads it.
    private let mapping: UnsafeMutableRawPointer
    private let size: Int
    /// The memfd (close-on-exec; the supervisor dup2s it into the child).
    public let fd: Int32

    /// One slot per handler thread: more than any runtime's handler threads (a thread past the
    /// last slot handles messages unrecorded).
    public static let defaultSlots: UInt32 = 256

    /// A new record in a new memfd.
    /// - Throws: ``RuntimeError`` with the system's reason.
    public static func create(slots: UInt32 = defaultSlots) throws -> CrashRecord {
        var mapping: UnsafeMutableRawPointer?
        var size = 0
        let fd = agentd_crash_record_create(slots, &mapping, &size)
        guard fd >= 0, let mapping else {
            throw RuntimeError("cannot make the crash record (memfd_create/mmap): \(String(cString: strerror(errno)))")
        }
        return CrashRecord(mapping: mapping, size: size, fd: fd)
    }

    private init(mapping: UnsafeMutableRawPointer, size: Int, fd: Int32) {
        self.mapping = mapping
        self.size = size
        self.fd = fd
    }

    deinit {
        munmap(mapping, size)
        close(fd)
    }

    /// In the child: makes the record at `fd` this process's, and marks it on a fatal signal.
    /// From then on every handler call is noted in it.
    /// - Throws: ``RuntimeError`` if `fd` is no crash record.
    public static func attach(fd: Int32) throws {
        guard agentd_crash_record_attach(fd) == 0 else {
            throw RuntimeError("fd \(fd) is no crash record: \(String(cString: strerror(errno)))")
        }
    }

    /// In the child: notes where the code of the plugin library containing `address` lies, so
    /// that a crash in it outside any handler (a thread the plugin started) counts against the
    /// plugin. No-op in a process without a record.
    static func noteCode(containing address: UnsafeRawPointer, pluginName: String, contentHash: String) {
        pluginName.utf8CString.withUnsafeBufferPointer { name in
            contentHash.utf8CString.withUnsafeBufferPointer { hash in
                _ = agentd_crash_module_add(
                    address, agentd_crash_text(data: name.baseAddress, length: name.count - 1),
                    agentd_crash_text(data: hash.baseAddress, length: hash.count - 1))
            }
        }
    }

    /// In the child: the plugin library containing `address` is about to be unloaded.
    static func forgetCode(containing address: UnsafeRawPointer) {
        agentd_crash_module_remove(address)
    }

    /// What the record says now (the supervisor reads it once the child is dead).
    public var report: CrashReport {
        let summary = agentd_crash_record_summary(mapping)
        var busy: [Int: CrashReport.Message] = [:]
        for index in 0..<Int(agentd_crash_record_slots(mapping)) {
            var length = 0
            guard let text = agentd_crash_record_slot(mapping, UInt32(index), &length) else { continue }
            busy[index] = CrashReport.Message(UnsafeRawBufferPointer(start: text, count: length))
        }
        var plugin: CrashReport.PluginCode?
        var length = 0
        if let text = agentd_crash_record_module_at(mapping, summary.pc, &length) {
            let fields = UnsafeRawBufferPointer(start: text, count: length).split(separator: 0, omittingEmptySubsequences: false)
            if fields.count == 2 {
                plugin = CrashReport.PluginCode(
                    name: String(decoding: fields[0], as: UTF8.self), contentHash: String(decoding: fields[1], as: UTF8.self))
            }
        }
        return CrashReport(signal: summary.signal, crashedSlot: Int(summary.slot), busy: busy, pc: summary.pc, crashedInPlugin: plugin)
    }
}

/// A dead runtime's crash record, read: the fatal signal its handler caught, the message the
/// crashing thread was handling, and the messages other threads were handling.
public struct CrashReport: Sendable, Equatable {
    /// One message a handler thread was handling.
    public struct Message: Sendable, Equatable {
        public var pluginName: String
        public var pluginVersion: String
        public var pluginHash: String
        public var agentType: String
        public var agentKey: String
        /// RPC (else an event).
        public var isRPC: Bool
        public var messageType: String
        /// The host's request id of an RPC, or the id of an event.
        public var requestID: String
        public var senderType: String
        public var senderKey: String

        init(_ text: UnsafeRawBufferPointer) {
            var fields = text.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
            while fields.count < Int(AGENTD_CRASH_FIELDS) { fields.append("") }
            pluginName = fields[0]
            pluginVersion = fields[1]
            pluginHash = fields[2]
            agentType = fields[3]
            agentKey = fields[4]
            isRPC = fields[5] == "rpc"
            messageType = fields[6]
            requestID = fields[7]
            senderType = fields[8]
            senderKey = fields[9]
        }

        /// `RPC 'Crash' to segfault/k1 (request 17, from caller/1)`.
        public var description: String {
            let sender = senderType.isEmpty ? "" : ", from \(senderType)/\(senderKey)"
            return isRPC
                ? "RPC '\(messageType)' to \(agentType)/\(agentKey) (request \(requestID)\(sender))"
                : "event '\(messageType)' to \(agentType)/\(agentKey) (id \(requestID)\(sender))"
        }
    }

    /// The fatal signal a handler caught (0: none was caught — the process was killed, or ended
    /// in a way no handler sees).
    public var signal: Int32
    /// The slot of the thread that received it (-1: none, or a thread in no handler).
    public var crashedSlot: Int
    /// What each thread in a handler was handling, by slot.
    public var busy: [Int: Message]
    /// The instruction the crashing thread was at (0: unknown).
    public var pc: UInt64 = 0
    /// The plugin whose code that instruction is in (nil: none — the runtime's own code, a
    /// system library, or unknown).
    public var crashedInPlugin: PluginCode? = nil

    /// A loaded plugin's code, as the record names it.
    public struct PluginCode: Sendable, Equatable {
        public var name: String
        public var contentHash: String
    }

    /// The message whose handler crashed, when the crashing thread was in one.
    public var crashed: Message? { busy[crashedSlot] }
}

/// Signal names for messages (`SIGSEGV`).
public enum SignalName {
    public static func of(_ signal: Int32) -> String {
        switch signal {
        case SIGSEGV: "SIGSEGV"
        case SIGBUS: "SIGBUS"
        case SIGFPE: "SIGFPE"
        case SIGILL: "SIGILL"
        case SIGABRT: "SIGABRT"
        case SIGTRAP: "SIGTRAP"
        case SIGSYS: "SIGSYS"
        case SIGKILL: "SIGKILL"
        case SIGTERM: "SIGTERM"
        case SIGINT: "SIGINT"
        case SIGHUP: "SIGHUP"
        case SIGPIPE: "SIGPIPE"
        default: "signal \(signal)"
        }
    }
}
