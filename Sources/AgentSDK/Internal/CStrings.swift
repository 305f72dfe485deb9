import AgentPluginABI

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

// Conversions between Swift values and the ABI's borrowed views. A view made here lives only
// for the closure it is passed to; the runtime copies what it keeps before returning.

extension String {
    /// Copies a borrowed `agentd_str` (empty for a NULL view).
    init(_ view: agentd_str) {
        guard let data = view.data, view.length > 0 else {
            self = ""
            return
        }
        self = String(decoding: UnsafeRawBufferPointer(start: data, count: view.length), as: UTF8.self)
    }

    /// Calls `body` with a borrowed view of the string's UTF-8.
    func withView<R>(_ body: (agentd_str) throws -> R) rethrows -> R {
        var text = self
        return try text.withUTF8 { utf8 in
            let base = utf8.baseAddress.map(UnsafeRawPointer.init) ?? emptyText
            return try body(agentd_str(data: base.assumingMemoryBound(to: CChar.self), length: utf8.count))
        }
    }

    /// A NUL-terminated copy on the heap that is never freed: for descriptor strings, which
    /// must live as long as the plugin stays loaded.
    func permanentCString() -> UnsafePointer<CChar> {
        let bytes = utf8CString
        let copy = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count)
        bytes.withUnsafeBufferPointer { copy.initialize(from: $0.baseAddress!, count: $0.count) }
        return UnsafePointer(copy)
    }
}

/// A valid address for empty views: some readers reject NULL even with length 0.
private var emptyText: UnsafeRawPointer { UnsafeRawPointer(("" as StaticString).utf8Start) }

extension Data {
    /// Copies borrowed `agentd_bytes` (empty for a NULL view).
    init(_ view: agentd_bytes) {
        guard let data = view.data, view.length > 0 else {
            self = Data()
            return
        }
        self = Data(bytes: data, count: view.length)
    }

    /// Calls `body` with a borrowed view of the bytes.
    func withView<R>(_ body: (agentd_bytes) throws -> R) rethrows -> R {
        try withUnsafeBytes { raw in
            let base = raw.baseAddress ?? emptyText
            return try body(agentd_bytes(data: base.assumingMemoryBound(to: UInt8.self), length: raw.count))
        }
    }
}
