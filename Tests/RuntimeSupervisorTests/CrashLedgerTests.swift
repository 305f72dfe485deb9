import RuntimeSupervisor
import Testing

@Suite("CrashLedger: the disable rule")
struct CrashLedgerTests {
    @Test("the third crash of one version within the window disables it, naming the plugin, the count, the signal and the way back")
    func thirdCrashDisables() {
        var ledger = CrashLedger(limit: 3, window: .seconds(60))
        let start = ContinuousClock.now
        #expect(ledger.recordCrash(pluginName: "p", contentHash: "h1", signal: "SIGSEGV", messageType: "Crash", at: start).disabled == nil)
        #expect(ledger.recordCrash(pluginName: "p", contentHash: "h1", signal: "SIGSEGV", messageType: "Crash", at: start + .seconds(20)).disabled == nil)
        let third = ledger.recordCrash(pluginName: "p", contentHash: "h1", signal: "SIGABRT", messageType: "Boom", at: start + .seconds(59))
        #expect(third.count == 3)
        let disabled = try? #require(third.disabled)
        #expect(disabled?.reason.contains("plugin p (content hash h1) is disabled: it crashed 3 times within 60 s (the last with SIGABRT while handling 'Boom')") == true)
        #expect(disabled?.reason.contains("Drop in a new version") == true)
        #expect(ledger.disabled.keys.sorted() == ["h1"])
    }

    @Test("crashes further apart than the window, or of another version, do not add up")
    func windowAndVersion() {
        var ledger = CrashLedger(limit: 3, window: .seconds(60))
        let start = ContinuousClock.now
        _ = ledger.recordCrash(pluginName: "p", contentHash: "h1", signal: "SIGSEGV", messageType: "m", at: start)
        _ = ledger.recordCrash(pluginName: "p", contentHash: "h1", signal: "SIGSEGV", messageType: "m", at: start + .seconds(30))
        // The first is out of the window by now.
        let third = ledger.recordCrash(pluginName: "p", contentHash: "h1", signal: "SIGSEGV", messageType: "m", at: start + .seconds(61))
        #expect(third.count == 2 && third.disabled == nil)
        // Another version: counted on its own.
        let other = ledger.recordCrash(pluginName: "p", contentHash: "h2", signal: "SIGSEGV", messageType: "m", at: start + .seconds(62))
        #expect(other.count == 1 && other.disabled == nil)
        #expect(ledger.disabled.isEmpty)
    }
}
