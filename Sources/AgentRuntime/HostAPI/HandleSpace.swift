import CRuntimeSupport
import Logging
import Synchronization

/// One runtime's handles: the plugins it loaded, its agents and the handler calls it has
/// open, each in a ``HandleTable`` of its own. Two runtimes in one process have two spaces and
/// never see each other's handles.
///
/// The host API is a table of plain C functions that receive nothing but the handles a plugin
/// passes, so the only way from a handle to its runtime is through the handle itself: it
/// carries its space's number, and ``HandleSpaces`` maps live numbers to spaces. That index is
/// the one piece of process-wide state the ABI requires; it holds no handles of its own.
final class HandleSpace: Sendable {
    let number: UInt16
    let plugins: HandleTable<PluginReference>
    let agents: HandleTable<AgentInstance>
    let calls: HandleTable<HandlerCall>
    private let closed = Atomic(false)

    /// A new space, registered until ``close()``.
    init() {
        number = HandleSpaces.reserveNumber()
        plugins = HandleTable(space: number, kind: .plugin)
        agents = HandleTable(space: number, kind: .agent)
        calls = HandleTable(space: number, kind: .call)
        HandleSpaces.register(self)
    }

    /// Stops resolving this space's handles (the runtime is stopping). Idempotent.
    func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        HandleSpaces.release(number)
    }

    deinit { close() }

    /// The loaded plugin whose image contains `address` (a function of the plugin's, such as
    /// a `send` completion).
    func plugin(containing address: UnsafeRawPointer) -> PluginReference? {
        guard let base = agentd_image_base(address) else { return nil }
        return plugins.all.first { $0.plugin?.imageBase == base }
    }
}

/// The live handle spaces by number: how a C entry point finds the runtime a handle belongs to.
enum HandleSpaces {
    private struct Entry {
        weak var space: HandleSpace?
    }

    private struct Directory: ~Copyable {
        var spaces: [UInt16: Entry] = [:]
        /// Numbers handed out and not yet released (reserved before the space registers).
        var taken: Set<UInt16> = []
        var next: UInt16 = 1
    }

    private static let directory = Mutex(Directory())

    static func reserveNumber() -> UInt16 {
        directory.withLock { directory in
            precondition(directory.taken.count < Int(UInt16.max), "more than 65,535 runtimes in one process")
            while directory.next == 0 || directory.taken.contains(directory.next) { directory.next &+= 1 }
            let number = directory.next
            directory.next &+= 1
            directory.taken.insert(number)
            return number
        }
    }

    static func register(_ space: HandleSpace) {
        directory.withLock { $0.spaces[space.number] = Entry(space: space) }
    }

    /// Forgets a space and frees its number.
    static func release(_ number: UInt16) {
        directory.withLock { directory in
            directory.spaces[number] = nil
            directory.taken.remove(number)
        }
    }

    /// The space that issued `handle`, while it is live.
    static func space(of handle: OpaquePointer?) -> HandleSpace? {
        // The space's number is the handle's top 16 bits (see ``HandleTable``); 0 is none.
        let number = UInt16(truncatingIfNeeded: UInt(bitPattern: Int(bitPattern: handle)) >> 48)
        guard number != 0 else { return nil }
        return directory.withLock { $0.spaces[number]?.space }
    }

    /// The only live space of the process, if there is exactly one: where an ABI 1.0 call
    /// that names no plugin or agent (`publish(NULL, …)`) goes.
    static var sole: HandleSpace? {
        directory.withLock { directory in
            let live = directory.spaces.values.compactMap(\.space)
            return live.count == 1 ? live[0] : nil
        }
    }

    /// Every live space (to find the one whose plugin contains a code address).
    static var all: [HandleSpace] {
        directory.withLock { $0.spaces.values.compactMap(\.space) }
    }
}
