import AgentPluginABI
import Dispatch
import Foundation
import Testing

@testable import AgentSDK

/// What the SDK adds to each message, measured the way the runtime drives a plugin: one runtime
/// thread delivers a message, waits for its answer, delivers the next. Prints a table; run with
///
///     AGENTSDK_MEASURE=1 swift test -c release --filter HandlerOverhead
///
/// The baseline is a C-style handler that answers inline through the same host table.
@Suite("Per-message overhead (AGENTSDK_MEASURE=1)", .enabled(if: ProcessInfo.processInfo.environment["AGENTSDK_MEASURE"] != nil))
struct HandlerOverheadTests {
    struct Ping: AgentMessage {
        var n: Int
    }

    final class Pinged: Agent {
        static let type = "pinged"
        init(context: AgentContext) {}
        static func handlers(_ registry: inout HandlerRegistry<Pinged>) {
            registry.on(Ping.self) { _, _, _ in }
            registry.onRPC(Echo.self) { _, echo, _ in echo }
        }
    }

    /// Signalled by the host table's reply and fail.
    static let answered = DispatchSemaphore(value: 0)

    nonisolated(unsafe) static let host: UnsafeMutablePointer<agentd_host_api> = {
        var table = agentd_host_api()
        table.size = UInt32(MemoryLayout<agentd_host_api>.size)
        table.abi_major = UInt16(AGENTD_ABI_MAJOR)
        table.abi_minor = UInt16(AGENTD_ABI_MINOR)
        table.publish = { _, _, _, _, _, _ in AGENTD_OK }
        table.send = { _, _, _, _, _, _, _, _ in AGENTD_UNAVAILABLE }
        table.reply = { _, _, _, _ in
            HandlerOverheadTests.answered.signal()
            return AGENTD_OK
        }
        table.fail = { _, _, _ in
            HandlerOverheadTests.answered.signal()
            return AGENTD_OK
        }
        table.log = { _, _, _, _ in }
        table.setting = { _, _, _ in AGENTD_NOT_FOUND }
        let pointer = UnsafeMutablePointer<agentd_host_api>.allocate(capacity: 1)
        pointer.initialize(to: table)
        return pointer
    }()

    /// Delivers `count` messages one after the other on a plain thread; returns ns per message.
    static func measure(_ handle: agentd_handler_fn, instance: UnsafeMutableRawPointer?, messageType: String,
                        json: String, rpc: Bool, count: Int) -> Double
    {
        nonisolated(unsafe) var nanoseconds = 0.0
        nonisolated(unsafe) let instance = instance
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            messageType.withCString { type in
                json.withCString { body in
                    "application/json".withCString { contentType in
                        var message = agentd_message()
                        message.size = UInt32(MemoryLayout<agentd_message>.size)
                        message.host = UnsafePointer(host)
                        message.message_type = agentd_str(data: type, length: strlen(type))
                        message.content_type = agentd_str(data: contentType, length: strlen(contentType))
                        message.payload = agentd_bytes(
                            data: UnsafeRawPointer(body).assumingMemoryBound(to: UInt8.self), length: strlen(body))
                        message.is_rpc = rpc ? 1 : 0
                        message.call = OpaquePointer(bitPattern: 1)
                        for _ in 0..<(count / 10) {  // warm up
                            _ = handle(instance, &message)
                            answered.wait()
                        }
                        let start = DispatchTime.now().uptimeNanoseconds
                        for _ in 0..<count {
                            _ = handle(instance, &message)
                            answered.wait()
                        }
                        nanoseconds = Double(DispatchTime.now().uptimeNanoseconds - start) / Double(count)
                    }
                }
            }
            done.signal()
        }
        thread.start()
        done.wait()
        return nanoseconds
    }

    @Test("Task.immediate and Task against an inline C handler")
    func overhead() throws {
        let count = 50_000
        let inline: agentd_handler_fn = { _, message in
            message!.pointee.host.pointee.reply!(message!.pointee.call, agentd_str(), agentd_str(), agentd_bytes())
        }
        let baseline = Self.measure(inline, instance: nil, messageType: "Ping", json: #"{"n": 1}"#, rpc: false,
                                    count: count)
        var rows = [("C handler answering inline (baseline)", baseline, baseline)]
        for start in [HandlerStart.immediate, .enqueued] {
            var plugin = Plugin(name: "bench", version: "1", agents: [Pinged.self])
            plugin.handlerStart = start
            let descriptor = try #require(plugin.export(UnsafePointer(Self.host), nil))
            let type = descriptor.pointee.agent_types!
            var instance: UnsafeMutableRawPointer?
            #expect(type.pointee.create!(nil, type, nil, agentd_str(), &instance) == AGENTD_OK)
            defer { type.pointee.destroy!(instance) }
            let handle = type.pointee.handlers![0].handle!
            let event = Self.measure(handle, instance: instance, messageType: "Ping", json: #"{"n": 1}"#,
                                     rpc: false, count: count)
            let rpc = Self.measure(handle, instance: instance, messageType: "Echo", json: #"{"text": "hello"}"#,
                                   rpc: true, count: count)
            rows.append(("Swift SDK, \(start): event Ping (decode)", event, baseline))
            rows.append(("Swift SDK, \(start): RPC Echo (decode + encode)", rpc, baseline))
        }
        print("\nper message, \(count) messages in a row:")
        for (name, ns, base) in rows {
            print(name.padding(toLength: 52, withPad: " ", startingAt: 0),
                  String(format: "%8.2f µs   +%6.2f µs over the baseline", ns / 1000, (ns - base) / 1000))
        }
    }
}
