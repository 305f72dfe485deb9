import AgentConfig
import Testing

/// Which changed keys SIGHUP applies and which need a restart.
@Suite("ConfigurationReload: changed keys, live or at a restart")
struct ConfigurationReloadTests {
    static func document(_ text: String) throws -> IniDocument {
        try IniDocument.parse(text: text, path: "agentd.ini")
    }

    @Test("live keys are applied; every other changed, added or removed key is named as needing a restart")
    func classifies() throws {
        let old = try Self.document("""
            [runtime]
            mailbox_limit = 10
            workers = 2
            [log]
            level = info
            [plugin.greeter]
            greeting = Hello
            shared = false
            old = gone
            """)
        let new = try Self.document("""
            [runtime]
            mailbox_limit = 20
            rpc_timeout = 5
            workers = 4
            [host]
            listen = 127.0.0.1:0
            [log]
            level = debug
            [plugin.greeter]
            greeting = Hi
            shared = true
            """)
        let reload = ConfigurationReload(from: old, to: new)
        #expect(reload.applied == [
            "[runtime] mailbox_limit", "[runtime] rpc_timeout", "[log] level", "[plugin.greeter] greeting",
            "[plugin.greeter] old",
        ])
        #expect(reload.needsRestart == ["[runtime] workers", "[host] listen", "[plugin.greeter] shared"])
    }

    @Test("the same file changes nothing")
    func unchanged() throws {
        let text = "[runtime]\nworkers = 2\n[plugin.x]\na = b\n"
        #expect(ConfigurationReload(from: try Self.document(text), to: try Self.document(text)).isEmpty)
    }
}
