@testable import AgentRuntime
import Testing

@Suite("Handles given to plugins")
struct HandleTableTests {
    final class Thing: Sendable {
        let name: String
        init(_ name: String) { self.name = name }
    }

    @Test("a handle resolves to its object until removed, then to nothing; removing twice finds it once")
    func lifecycle() throws {
        let space = HandleSpace()
        defer { space.close() }
        let table = HandleTable<Thing>(space: space.number, kind: .agent)
        var handle: OpaquePointer?
        let thing = table.insert { issued in
            handle = issued
            return Thing("a")
        }
        #expect(table.resolve(handle) === thing)
        #expect(table.remove(handle) === thing)
        #expect(table.resolve(handle) == nil)
        #expect(table.remove(handle) == nil)
    }

    @Test("a handle of another kind, another space, or made up finds nothing")
    func foreignHandles() throws {
        let first = HandleSpace()
        let second = HandleSpace()
        defer {
            first.close()
            second.close()
        }
        #expect(first.number != second.number)
        let agents = HandleTable<Thing>(space: first.number, kind: .agent)
        let calls = HandleTable<Thing>(space: first.number, kind: .call)
        let otherAgents = HandleTable<Thing>(space: second.number, kind: .agent)
        var handle: OpaquePointer?
        _ = agents.insert { issued in
            handle = issued
            return Thing("a")
        }
        _ = calls.insert { _ in Thing("c") }
        _ = otherAgents.insert { _ in Thing("b") }
        // Serial 1 exists in all three tables: only the issuing one answers.
        #expect(calls.resolve(handle) == nil)
        #expect(otherAgents.resolve(handle) == nil)
        #expect(agents.resolve(nil) == nil)
        #expect(agents.resolve(OpaquePointer(bitPattern: 0xdead_beef)) == nil)
        // The directory finds the issuing space while it is live, and nothing after.
        #expect(HandleSpaces.space(of: handle) === first)
        first.close()
        #expect(HandleSpaces.space(of: handle) == nil)
    }
}
