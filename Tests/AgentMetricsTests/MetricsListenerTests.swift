import AgentMetrics
import AgentTestSupport
import CoreMetrics
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Metrics listener")
struct MetricsListenerTests {
    /// A registry with one counter at 3, served on a port the kernel picks.
    private func serving(limits: MetricsListener.Limits = .init()) throws -> (MetricsListener, MetricsRegistry) {
        let registry = MetricsRegistry()
        Counter(label: "test_things_total", dimensions: [("kind", "a")], factory: registry.factory).increment(by: 3)
        let listener = try MetricsListener(listen: "127.0.0.1:0", limits: limits) { registry.exposition() }
        return (listener, registry)
    }

    @Test("GET /metrics answers the exposition, on the port the kernel picked")
    func scrape() throws {
        let (listener, _) = try serving()
        defer { listener.stop() }
        #expect(listener.port > 0)
        #expect(listener.address == "127.0.0.1:\(listener.port)")
        let reply = try HTTPExchange.get("/metrics?name=x", from: listener.address)
        #expect(reply.status == 200)
        #expect(reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
        #expect(reply.headers["connection"] == "close")
        let metrics = try PrometheusExposition(parsing: reply.text)
        #expect(metrics.families["test_things_total"]?.type == "counter")
        #expect(metrics.value("test_things_total", ["kind": "a"]) == 3)
    }

    @Test("bad requests get 400, 404, 405 or 431, and the listener keeps serving")
    func badRequests() throws {
        let (listener, _) = try serving()
        defer { listener.stop() }
        let address = listener.address
        let cases: [([UInt8], Int)] = [
            (Array("GET / HTTP/1.1\r\n\r\n".utf8), 404),
            (Array("GET /metrics/x HTTP/1.1\r\n\r\n".utf8), 404),
            (Array("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n".utf8), 405),
            (Array("GET /metrics HTTP/2.0\r\n\r\n".utf8), 400),
            (Array("GET  /metrics HTTP/1.1\r\n\r\n".utf8), 400),
            (Array("get /metrics HTTP/1.1\r\n\r\n".utf8), 400),
            (Array("GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n".utf8), 400),
            ([0x16, 0x03, 0x01, 0x00, 0xA5, 0x01, 0x00], 400),  // a TLS ClientHello's first bytes
            (Array("\r\n\r\n".utf8), 400),
            (Array("GET /metrics HTTP/1.1\r\nX-Big: ".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: 20_000), 431),
        ]
        for (request, status) in cases {
            let reply = try HTTPExchange.send(request, to: address)
            #expect(reply.status == status, "\(String(decoding: request.prefix(40), as: UTF8.self))")
            #expect(try HTTPExchange.get("/metrics", from: address).status == 200)
        }
    }

    @Test("a request sent a byte at a time is answered")
    func slowButComplete() throws {
        let (listener, _) = try serving()
        defer { listener.stop() }
        let fd = try HTTPExchange.connect(to: listener.address)
        defer { close(fd) }
        for byte in "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".utf8 {
            var byte = byte
            #expect(send(fd, &byte, 1, Int32(MSG_NOSIGNAL)) == 1)
        }
        let answer = try HTTPExchange.readUntilClosed(fd, from: listener.address)
        #expect(String(decoding: answer.prefix(15), as: UTF8.self) == "HTTP/1.1 200 OK")
    }

    @Test("a client that never sends is closed at the deadline")
    func silentClient() throws {
        let (listener, _) = try serving(limits: .init(timeout: .milliseconds(200)))
        defer { listener.stop() }
        let fd = try HTTPExchange.connect(to: listener.address, timeout: .seconds(5))
        defer { close(fd) }
        let started = ContinuousClock.now
        let answer = try HTTPExchange.readUntilClosed(fd, from: listener.address)
        #expect(answer.isEmpty)
        #expect(ContinuousClock.now - started < .seconds(4))
    }

    @Test("connections that hold every place do not keep a scraper out")
    func slowloris() throws {
        let limits = MetricsListener.Limits(maxConnections: 4, timeout: .seconds(30))
        let (listener, _) = try serving(limits: limits)
        defer { listener.stop() }
        var idle: [Int32] = []
        defer { for fd in idle { close(fd) } }
        for _ in 0..<(limits.maxConnections * 2) {
            let fd = try HTTPExchange.connect(to: listener.address)
            _ = "GET /met".utf8.withContiguousStorageIfAvailable { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            idle.append(fd)
        }
        let started = ContinuousClock.now
        #expect(try HTTPExchange.get("/metrics", from: listener.address).status == 200)
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test("a client that sends a request and never reads is cut off at the deadline, and others are served meanwhile")
    func clientThatNeverReads() throws {
        let registry = MetricsRegistry()
        // An exposition of about 6 MB: more than the socket buffers between the two hold.
        let padding = String(repeating: "x", count: 2000)
        for index in 0..<3000 {
            Counter(label: "test_many_total", dimensions: [("n", "\(index)\(padding)")], factory: registry.factory).increment()
        }
        let listener = try MetricsListener(listen: "127.0.0.1:0", limits: .init(timeout: .seconds(1))) {
            registry.exposition()
        }
        defer { listener.stop() }
        let fd = try HTTPExchange.connect(to: listener.address, receiveBuffer: 4096)
        defer { close(fd) }
        let deadline = ContinuousClock.now + .seconds(1)
        _ = "GET /metrics HTTP/1.1\r\n\r\n".utf8.withContiguousStorageIfAvailable { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        let reply = try HTTPExchange.get("/metrics", from: listener.address)
        #expect(reply.status == 200)
        let full = reply.body.count
        #expect(try PrometheusExposition(parsing: reply.text).samples("test_many_total").count == 3000)
        // The first client reads only after its deadline (what is tested is a time limit: the
        // wait is for the time to pass), when the listener has given up on it.
        let left = deadline + .milliseconds(300) - .now
        if left > .zero { usleep(UInt32(left.components.seconds * 1_000_000 + left.components.attoseconds / 1_000_000_000_000)) }
        let partial = try HTTPExchange.readUntilClosed(fd, from: listener.address)
        #expect(partial.count < full)
    }

    @Test("an address it cannot listen on is an error naming it")
    func cannotListen() throws {
        let (listener, _) = try serving()
        defer { listener.stop() }
        #expect {
            _ = try MetricsListener(listen: listener.address) { [] }
        } throws: { error in
            (error as? MetricsListenerError)?.code == .cannotListen && "\(error)".contains(listener.address)
        }
        #expect {
            _ = try MetricsListener(listen: "127.0.0.1") { [] }
        } throws: { error in
            (error as? MetricsListenerError)?.code == .invalidAddress
        }
    }

    @Test("IPv6 loopback in brackets")
    func ipv6() throws {
        let registry = MetricsRegistry()
        let listener: MetricsListener
        do {
            listener = try MetricsListener(listen: "[::1]:0") { registry.exposition() }
        } catch {
            return  // no IPv6 on this machine
        }
        defer { listener.stop() }
        #expect(listener.address == "[::1]:\(listener.port)")
        #expect(try HTTPExchange.get("/metrics", from: listener.address).status == 200)
    }

    @Test("registries are independent, and timers render as histograms in seconds")
    func registries() throws {
        let first = MetricsRegistry()
        let second = MetricsRegistry()
        Counter(label: "test_total", factory: first.factory).increment(by: 2)
        Counter(label: "test_total", factory: second.factory).increment(by: 5)
        let timer = CoreMetrics.Timer(label: "test_duration_seconds", factory: first.factory)
        timer.recordNanoseconds(80_000)
        timer.recordNanoseconds(3_000_000)
        let one = try PrometheusExposition(parsing: String(decoding: first.exposition(), as: UTF8.self))
        let two = try PrometheusExposition(parsing: String(decoding: second.exposition(), as: UTF8.self))
        #expect(one.value("test_total") == 2)
        #expect(two.value("test_total") == 5)
        #expect(one.families["test_duration_seconds"]?.type == "histogram")
        #expect(one.value("test_duration_seconds_count") == 2)
        #expect(one.value("test_duration_seconds_bucket", ["le": "0.0001"]) == 1)
        #expect(one.value("test_duration_seconds_bucket", ["le": "0.005"]) == 2)
        #expect(abs((one.value("test_duration_seconds_sum") ?? 0) - 0.00308) < 1e-9)
    }

    @Test("the exposition parser refuses malformed text")
    func strictParser() {
        let bad = [
            "x_total 1\n",  // no TYPE
            "# TYPE x_total counter\nx_total one\n",
            "# TYPE x_total counter\nx_total{a=\"1} 1\n",
            "# TYPE x_total counter\nx_total{a=\"1\"} 1\nx_total{a=\"1\"} 2\n",
            "# TYPE x_total counter\nx_total -1\n",
            "# TYPE x_total counter\nx_total 1",
            "# TYPE x gauge\n# TYPE y gauge\nx 1\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        ]
        for text in bad {
            #expect(throws: PrometheusExposition.Malformed.self, "\(text)") { try PrometheusExposition(parsing: text) }
        }
    }
}
