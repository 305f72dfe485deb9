// What the Swift SDK adds to each message a plugin handles, measured the way the runtime drives a
// plugin: one thread delivers a message through the handler table, waits until the host table's
// `reply` is called, delivers the next. No runtime, no network: the figure is the SDK's own
// (copying the borrowed message, starting the handler's task, JSON decode, encode, answer).
//
// The baseline, measured in the same run: a C-style handler that answers inline through the same
// host table — a function call and an uncontended semaphore, nearly free. So the ratios are large,
// and the time a row adds (+µs) is the SDK's own cost; the table shows both. The Swift rows come in
// both ways a handler's task can start (AgentSDK's SPI `HandlerStart`): `immediate`
// (Task.immediate, the SDK's default: the handler runs on the runtime's thread until it first
// suspends) and `enqueued` (a plain Task on Swift's global executor).
//
//   swift run -c release sdk-bench [--messages N] [--runs N]
//
// Runs are interleaved (every row once per run) and the table shows the medians; one
// `NAME=value` line per figure follows.
@_spi(Benchmarks) import AgentSDK
import Foundation

var messages = 50_000
var runs = 3
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    guard ["--messages", "--runs"].contains(argument), let value = arguments.next().flatMap({ Int($0) }), value > 0 else {
        FileHandle.standardError.write(Data("usage: sdk-bench [--messages N] [--runs N]\n".utf8))
        exit(2)
    }
    if argument == "--messages" { messages = value } else { runs = value }
}

struct Row {
    var label: String
    var key: String
    var target: Target
    var delivery: Delivery
    var runs: [Double] = []
}

var rows = [Row(label: "C handler answering inline (baseline)", key: "c_inline", target: .inlineC, delivery: .ping)]
for start in [HandlerStart.immediate, .enqueued] {
    rows.append(Row(label: "Swift SDK, \(start): event Ping (decode)", key: "swift_\(start)_event",
                    target: .swift(start, messageType: "Ping"), delivery: .ping))
    rows.append(Row(label: "Swift SDK, \(start): RPC Echo (decode + encode)", key: "swift_\(start)_rpc",
                    target: .swift(start, messageType: "Echo"), delivery: .echo))
}
for run in 0..<runs {
    for index in rows.indices {
        rows[index].runs.append(nanosecondsPerMessage(rows[index].target, rows[index].delivery, count: messages))
    }
    FileHandle.standardError.write(Data("run \(run + 1) of \(runs) done\n".utf8))
}

func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}
func lpad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
}

let baseline = median(rows[0].runs)
print("sdk-bench: \(ProcessInfo.processInfo.activeProcessorCount) CPUs; \(messages) messages in a row per figure, \(runs) runs interleaved, medians")
print(pad("per message", 50) + lpad("µs", 9) + lpad("× baseline", 12) + lpad("+µs", 9) + "   runs (µs)")
for row in rows {
    let value = median(row.runs)
    print(pad(row.label, 50) + lpad(String(format: "%.2f", value / 1000), 9)
          + lpad(String(format: "%.1f", value / baseline), 12)
          + lpad(String(format: "%.2f", (value - baseline) / 1000), 9)
          + "   " + row.runs.map { String(format: "%.2f", $0 / 1000) }.joined(separator: ", "))
}
print("")
for row in rows {
    let value = median(row.runs)
    print("\(row.key)_us=\(String(format: "%.3f", value / 1000))")
    if row.key != rows[0].key { print("\(row.key)_over_baseline=\(String(format: "%.2f", value / baseline))") }
}
