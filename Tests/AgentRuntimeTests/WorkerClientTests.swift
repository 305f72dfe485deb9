import AgentCore
import AgentHost
import AgentRuntime
import AgentTestSupport
import Logging
import Testing

@Suite("WorkerClient")
struct WorkerClientTests {
    @Test("a client that was used and closed is freed, with its connection, once its user lets it go")
    func closedClientIsFreed() async throws {
        let host = try AgentHost(
            configuration: .init(listen: "127.0.0.1:0"),
            logger: Logger(label: "test.host", factory: { _ in SwiftLogNoOpLogHandler() }))
        weak var released: WorkerClient?
        do {
            let client = try WorkerClient(address: "127.0.0.1:\(host.port)")
            released = client
            // An RPC (answered at once with an error: nobody serves the type) and a publish, so
            // that every part of the client has been at work.
            await #expect(throws: RuntimeError.self) {
                _ = try await client.send(Array("{}".utf8), messageType: "Ping", to: AgentID(type: "nobody", key: "k"))
            }
            try client.publish(Array("{}".utf8), messageType: "Ping", to: TopicID(type: "t", source: "s"))
            await client.close()
        }
        // (Its deadline sweeper lets go within one 50 ms tick.)
        let freed = await poll(timeout: .seconds(5)) { released == nil }
        #expect(freed, "the client is still alive: something it owns holds it")
        await host.shutdown()
    }
}
