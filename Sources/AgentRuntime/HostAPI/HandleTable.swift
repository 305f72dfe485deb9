import Synchronization

/// The handles of one kind a runtime gives plugins (`agentd_plugin_ref *`, `agentd_agent_ref *`,
/// `agentd_call *`), and what each names.
///
/// A handle is an id, not an address: a 64-bit value holding the number of the
/// ``HandleSpace`` that issued it, its kind and a serial number that is never reused. A stale
/// handle (its object removed) or a foreign one (another runtime's, another kind, or made up)
/// finds nothing instead of memory, and the plugin gets `AGENTD_MISUSE`.
///
/// Layout: bits 63…48 the space's number (never 0), 47…46 the kind, 45…0 the serial.
final class HandleTable<Object: AnyObject & Sendable>: Sendable {
    enum Kind: UInt64, Sendable {
        case plugin = 1
        case agent = 2
        case call = 3
    }

    private struct Entries: ~Copyable {
        var objects: [UInt64: Object] = [:]
        var nextSerial: UInt64 = 1
    }

    static var serialBits: UInt64 { 46 }
    private static var serialMask: UInt64 { (1 << serialBits) - 1 }

    /// The space and kind bits every handle of this table carries.
    private let prefix: UInt64
    private let entries = Mutex(Entries())

    init(space: UInt16, kind: Kind) {
        prefix = UInt64(space) << 48 | kind.rawValue << Self.serialBits
    }

    /// Issues a handle and stores the object `make` builds for it.
    func insert(_ make: (OpaquePointer) -> Object) -> Object {
        entries.withLock { entries in
            let serial = entries.nextSerial
            entries.nextSerial += 1
            let object = make(OpaquePointer(bitPattern: UInt(prefix | serial))!)
            entries.objects[serial] = object
            return object
        }
    }

    /// What `handle` names, if it is one of this table's and still live.
    func resolve(_ handle: OpaquePointer?) -> Object? {
        guard let serial = serial(of: handle) else { return nil }
        return entries.withLock { $0.objects[serial] }
    }

    /// Removes and returns what `handle` names (nil: stale, foreign, or removed already — so
    /// of two threads removing the same handle exactly one gets the object).
    func remove(_ handle: OpaquePointer?) -> Object? {
        guard let serial = serial(of: handle) else { return nil }
        return entries.withLock { $0.objects.removeValue(forKey: serial) }
    }

    /// Removes and returns the objects matching `predicate`.
    func removeAll(where predicate: (Object) -> Bool) -> [Object] {
        entries.withLock { entries in
            let serials = entries.objects.filter { predicate($0.value) }.map(\.key)
            return serials.compactMap { entries.objects.removeValue(forKey: $0) }
        }
    }

    /// Every live object.
    var all: [Object] { entries.withLock { Array($0.objects.values) } }


    private func serial(of handle: OpaquePointer?) -> UInt64? {
        guard let handle else { return nil }
        let raw = UInt64(UInt(bitPattern: Int(bitPattern: handle)))
        guard raw & ~Self.serialMask == prefix else { return nil }
        return raw & Self.serialMask
    }
}
