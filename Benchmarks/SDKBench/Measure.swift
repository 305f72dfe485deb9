import AgentPluginABI
@_spi(Benchmarks) import AgentSDK
import Dispatch
import Foundation

struct Ping: AgentMessage {
    var n: Int
}

struct Echo: AgentMessage {
    var text: String
}

/// The measured agent: an event handler that does nothing and an RPC handler that answers with
/// what it got, so that a figure is the SDK's own work (decode, task, encode, answer).
final class Pinged: Agent {
    static let type = "pinged"
    init(context: AgentContext) {}
    static func handlers(_ registry: inout HandlerRegistry<Pinged>) {
        registry.on(Ping.self) { _, _, _ in }
        registry.onRPC(Echo.self) { _, echo, _ in echo }
    }
}

/// One message as the runtime hands it to a handler.
struct Delivery {
    var messageType: String
    var json: String
    var rpc: Bool

    static let ping = Delivery(messageType: "Ping", json: #"{"n": 1}"#, rpc: false)
    static let echo = Delivery(messageType: "Echo", json: #"{"text": "hello"}"#, rpc: true)
}

/// A handler the runtime can call: the function and the instance it takes.
struct Target: @unchecked Sendable {
    // @unchecked Sendable: the instance is only used from the one delivering thread.
    var handle: agentd_handler_fn
    var instance: UnsafeMutableRawPointer?

    /// The baseline: a C-style handler answering inline through the same host table.
    static let inlineC = Target(
        handle: { _, message in
            message!.pointee.host.pointee.reply!(message!.pointee.call, agentd_str(), agentd_str(), agentd_bytes())
        },
        instance: nil)

    /// `Pinged`'s handler for `messageType`, in a plugin whose handlers start as `start` says.
    static func swift(_ start: HandlerStart, messageType: String) -> Target {
        var plugin = Plugin(name: "sdk-bench", version: "1", agents: [Pinged.self])
        plugin.handlerStart = start
        guard let descriptor = plugin.export(UnsafePointer(BenchHost.table), nil),
              let type = descriptor.pointee.agent_types,
              let create = type.pointee.create
        else { fatalError("the SDK refused the benchmark plugin") }
        var instance: UnsafeMutableRawPointer?
        guard create(nil, type, nil, agentd_str(), &instance) == AGENTD_OK else {
            fatalError("creating the benchmark agent failed")
        }
        let handlers = UnsafeBufferPointer(start: type.pointee.handlers, count: type.pointee.handler_count)
        guard let handle = handlers.first(where: { String(cString: $0.message_type) == messageType })?.handle else {
            fatalError("no handler for \(messageType)")
        }
        return Target(handle: handle, instance: instance)
    }
}

/// Delivers `count` copies of `delivery` to `target` one after the other on a thread of its
/// own, as the runtime's thread does (deliver, wait for the answer, deliver the next), after
/// a tenth as many to warm up.
/// - Returns: nanoseconds per message.
func nanosecondsPerMessage(_ target: Target, _ delivery: Delivery, count: Int) -> Double {
    nonisolated(unsafe) var nanoseconds = 0.0
    let done = DispatchSemaphore(value: 0)
    let thread = Thread {
        delivery.messageType.withCString { type in
            delivery.json.withCString { body in
                "application/json".withCString { contentType in
                    var message = agentd_message()
                    message.size = UInt32(MemoryLayout<agentd_message>.size)
                    message.host = UnsafePointer(BenchHost.table)
                    message.message_type = agentd_str(data: type, length: strlen(type))
                    message.content_type = agentd_str(data: contentType, length: strlen(contentType))
                    message.payload = agentd_bytes(
                        data: UnsafeRawPointer(body).assumingMemoryBound(to: UInt8.self), length: strlen(body))
                    message.is_rpc = delivery.rpc ? 1 : 0
                    message.call = OpaquePointer(bitPattern: 1)
                    for _ in 0..<max(1, count / 10) {
                        _ = target.handle(target.instance, &message)
                        BenchHost.answered.wait()
                    }
                    let start = DispatchTime.now().uptimeNanoseconds
                    for _ in 0..<count {
                        _ = target.handle(target.instance, &message)
                        BenchHost.answered.wait()
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

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}
