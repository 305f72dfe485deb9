import AgentCluster
import AgentTestSupport
import Synchronization
import Testing

@Suite("NATS connection against a real nats-server")
struct NATSConnectionTests {
    @Test("a message published is delivered to the subscriber, headers and reply subject included")
    func publishSubscribeRoundTrip() async throws {
        let server = try await NATSServer.start()
        let connection = try await connect(server)
        let received = Received<NATSMessage>()
        let subscription = try connection.subscribe(to: "greetings.*") { received.append($0) }
        try await connection.flush()  // the server has the subscription

        try connection.publish("greetings.plain", payload: Array(text: "hello"))
        try connection.publish("greetings.headed", payload: Array(text: "with headers"), replyTo: "answers.here",
                               headers: ["agentd-caller-host": "host-a", "trace": "1"])
        let messages = try #require(await received.wait(count: 2))
        #expect(messages[0].subject == "greetings.plain")
        #expect(messages[0].payload.text == "hello")
        #expect(messages[0].replySubject == nil)
        #expect(messages[0].headers.isEmpty)
        #expect(messages[1].subject == "greetings.headed")
        #expect(messages[1].payload.text == "with headers")
        #expect(messages[1].replySubject == "answers.here")
        #expect(messages[1].headers["agentd-caller-host"] == "host-a")
        #expect(messages[1].headers["trace"] == "1")

        subscription.unsubscribe()
        await subscription.finished()
        try connection.publish("greetings.late", payload: [])
        try await connection.flush()
        #expect(received.all.count == 2)
        await connection.close()
    }

    @Test("an empty payload and a large one arrive intact, publishes sent at once")
    func payloadSizes() async throws {
        let server = try await NATSServer.start()
        let connection = try await connect(server) { $0.sendImmediately = true }
        let received = Received<NATSMessage>()
        _ = try connection.subscribe(to: "sizes") { received.append($0) }
        try await connection.flush()
        let large = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try connection.publish("sizes", payload: [])
        try connection.publish("sizes", payload: large)
        let messages = try #require(await received.wait(count: 2))
        #expect(messages[0].payload.isEmpty)
        #expect(messages[1].payload == large)
        await connection.close()
    }

    @Test("a queue group delivers each message to exactly one of its members")
    func queueGroup() async throws {
        let server = try await NATSServer.start()
        let connection = try await connect(server)
        let other = try await connect(server)
        let first = Received<Int>(), second = Received<Int>(), third = Received<Int>()
        _ = try connection.subscribe(to: "work", queueGroup: "workers") { first.append(Int($0.payload.text)!) }
        _ = try connection.subscribe(to: "work", queueGroup: "workers") { second.append(Int($0.payload.text)!) }
        _ = try other.subscribe(to: "work", queueGroup: "workers") { third.append(Int($0.payload.text)!) }
        try await connection.flush()
        try await other.flush()

        let count = 300
        for index in 0..<count { try connection.publish("work", payload: Array(text: "\(index)")) }
        try await connection.flush()
        let done = await poll(timeout: .seconds(10)) { first.all.count + second.all.count + third.all.count >= count }
        #expect(done)
        let delivered = first.all + second.all + third.all
        #expect(delivered.count == count)
        #expect(Set(delivered) == Set(0..<count))
        // Each member got some (the server spreads them at random).
        #expect(!first.all.isEmpty && !second.all.isEmpty && !third.all.isEmpty)
        await connection.close()
        await other.close()
    }

    @Test("request and reply through a reply subject, by hand and with request()")
    func requestReply() async throws {
        let server = try await NATSServer.start()
        let responder = try await connect(server)
        let requester = try await connect(server)
        _ = try responder.subscribe(to: "echo") { [responder] message in
            guard let reply = message.replySubject else { return }
            try? responder.publish(reply, payload: Array(text: "echo: ") + message.payload,
                                   headers: ["from": message.headers["from"] ?? "?"])
        }
        try await responder.flush()

        // By hand: an inbox subscription and a publish naming it.
        let inbox = requester.newInbox()
        #expect(inbox.hasPrefix("_INBOX."))
        let answers = Received<NATSMessage>()
        _ = try requester.subscribe(to: inbox) { answers.append($0) }
        try await requester.flush()
        try requester.publish("echo", payload: Array(text: "one"), replyTo: inbox, headers: ["from": "a"])
        let answer = try #require(await answers.wait(count: 1)?.first)
        #expect(answer.payload.text == "echo: one")
        #expect(answer.headers["from"] == "a")

        // With request(): many at once over the connection's one inbox.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<20 {
                group.addTask {
                    let reply = try await requester.request("echo", payload: Array(text: "\(index)"), headers: ["from": "b"],
                                                            timeout: .seconds(5))
                    #expect(reply.payload.text == "echo: \(index)")
                    #expect(reply.headers["from"] == "b")
                }
            }
            try await group.waitForAll()
        }
        await responder.close()
        await requester.close()
    }

    @Test("a request nobody subscribes to fails at once with no responders; one nobody answers times out")
    func requestFailures() async throws {
        let server = try await NATSServer.start()
        let connection = try await connect(server)
        let clock = ContinuousClock()
        let start = clock.now
        let error = await #expect(throws: NATSError.self) {
            _ = try await connection.request("nobody.here", payload: [], timeout: .seconds(60))
        }
        #expect(error?.code == .noResponders)
        #expect(error?.subject == "nobody.here")
        // Long before the request's own 60 s timeout (alone: milliseconds; the bound is loose
        // because a full parallel run has kept tasks from running for 11–12 s).
        #expect(clock.now - start < .seconds(30))

        _ = try connection.subscribe(to: "silent") { _ in }
        try await connection.flush()
        let timeout = await #expect(throws: NATSError.self) {
            _ = try await connection.request("silent", payload: [], timeout: .milliseconds(200))
        }
        #expect(timeout?.code == .timeout)

        // A request still waiting when the connection closes is answered then.
        let waiting = Task { try await connection.request("silent", payload: [], timeout: .seconds(30)) }
        #expect(await poll { (try? await connection.flush()) != nil })
        await connection.close()
        let closed = await #expect(throws: NATSError.self) { _ = try await waiting.value }
        #expect(closed?.code == .connectionClosed)
    }

    @Test("no server at the address: connect fails at once, naming the address")
    func absentServer() async throws {
        // Ports nothing listens on (not a port just freed: a server of another test may take it).
        let addresses = ["nats://127.0.0.1:1", "nats://127.0.0.1:9"]
        let clock = ContinuousClock()
        let start = clock.now
        let error = await #expect(throws: NATSError.self) {
            _ = try await NATSConnection.connect(.init(servers: addresses), logger: LogCapture().logger())
        }
        // Not a hang (nothing waits for a server to appear). Alone it fails in milliseconds; the
        // bound is loose because in a full parallel run on two loaded cores the answer has been
        // seen to take 11-12 s to reach this task (other suites hold the cooperative threads).
        #expect(clock.now - start < .seconds(30))
        #expect(error?.code == .connectionFailed)
        #expect(error?.address == addresses.joined(separator: ", "))
        #expect(error?.description.contains("nats://127.0.0.1:1, nats://127.0.0.1:9") == true)
    }

    @Test("server list parsing: commas, spaces, default scheme; a bad entry is named")
    func serverList() throws {
        let servers = try NATSConnection.Options.parseServers(" nats://a:4222,b:4223 , tls://c.example:4443")
        #expect(servers == ["nats://a:4222", "nats://b:4223", "tls://c.example:4443"])
        let error = #expect(throws: NATSError.self) { try NATSConnection.Options.parseServers("nats://a:4222, http://b:80") }
        #expect(error?.code == .invalidArgument)
        #expect(error?.description.contains("http://b:80") == true)
        #expect(throws: NATSError.self) { try NATSConnection.Options.parseServers("nats://nohost") }
        #expect(throws: NATSError.self) { try NATSConnection.Options.parseServers(" , ") }
    }

    @Test("server killed and restarted: disconnected, then reconnected, and subscriptions resume")
    func reconnectAfterRestart() async throws {
        let server = try await NATSServer.start()
        let log = LogCapture()
        let connection = try await connect(server, log: log)
        let events = collectEvents(of: connection)
        let received = Received<String>()
        _ = try connection.subscribe(to: "after.restart") { received.append($0.payload.text) }
        try await connection.flush()
        try connection.publish("after.restart", payload: Array(text: "before"))
        #expect(await received.wait(count: 1) != nil)

        server.kill()
        #expect(await events.wait(until: \.isDisconnected) != nil)
        #expect(connection.status != .connected)
        let flushWhileDown = await #expect(throws: NATSError.self) { try await connection.flush(timeout: .milliseconds(100)) }
        #expect(flushWhileDown?.code == .disconnected || flushWhileDown?.code == .timeout)

        try await server.restart()
        #expect(await events.wait(until: \.isReconnected) != nil)
        let order = events.all.filter { $0.isDisconnected || $0.isReconnected }
        #expect(order.first?.isDisconnected == true)
        #expect(connection.status == .connected)
        #expect(connection.connectedURL?.hasSuffix(":\(server.port)") == true)
        #expect(log.records { $0.message.contains("reconnecting") }.count >= 1)

        try connection.publish("after.restart", payload: Array(text: "after"))
        #expect(await received.wait(count: 2)?.last == "after")
        await connection.close()
    }

    @Test("close twice, and close while handlers run and messages pour in: no crash, closed said once")
    func closeTwiceWithCallbacksInFlight() async throws {
        let server = try await NATSServer.start()
        let connection = try await connect(server)
        let publisher = try await connect(server)
        let events = collectEvents(of: connection)
        let handled = Atomic<Int>(0)
        var subscriptions: [NATSSubscription] = []
        for index in 0..<8 {
            subscriptions.append(try connection.subscribe(to: "flood.\(index % 4)") { _ in
                handled.add(1, ordering: .relaxed)
                // A handler that takes a little while, so that some run during the close.
                var spin = 0
                for value in 0..<20_000 { spin &+= value }
                precondition(spin > 0)
            })
        }
        try await connection.flush()
        let flooding = Task {
            var index = 0
            while !Task.isCancelled {
                try? publisher.publish("flood.\(index % 4)", payload: Array(repeating: 7, count: 64))
                index += 1
                if index % 500 == 0 { await Task.yield() }
            }
        }
        // (The flood runs on the shared task threads, which a full parallel run has held up for
        // 11–12 s: a deadline far past that; alone it takes milliseconds.)
        #expect(await poll(timeout: .seconds(60)) { handled.load(ordering: .relaxed) > 1_000 })

        async let first: Void = connection.close()
        async let second: Void = connection.close()
        _ = await (first, second)
        await connection.close()
        for subscription in subscriptions {
            subscription.unsubscribe()  // after close: nothing to do, no crash
            await subscription.finished()
        }
        #expect(connection.status == .closed)
        #expect(await events.wait(until: \.isClosed) != nil)
        #expect(events.all.filter(\.isClosed).count == 1)

        let error = #expect(throws: NATSError.self) { try connection.publish("flood.0", payload: []) }
        #expect(error?.code == .connectionClosed)
        #expect(throws: NATSError.self) { _ = try connection.subscribe(to: "late") { _ in } }
        let flushError = await #expect(throws: NATSError.self) { try await connection.flush() }
        #expect(flushError?.code == .connectionClosed)
        flooding.cancel()
        await publisher.close()
    }

    @Test("a connection dropped without close, with live subscriptions, is torn down without a crash")
    func droppedWithoutClose() async throws {
        let server = try await NATSServer.start()
        let received = Received<String>()
        do {
            let connection = try await connect(server)
            _ = try connection.subscribe(to: "dropped") { received.append($0.payload.text) }
            try await connection.flush()
            try connection.publish("dropped", payload: Array(text: "x"))
            #expect(await received.wait(count: 1) != nil)
        }
        // Another connection still works: the library is in a sound state.
        let other = try await connect(server)
        let echoed = Received<String>()
        _ = try other.subscribe(to: "still") { echoed.append($0.payload.text) }
        try await other.flush()
        try other.publish("still", payload: Array(text: "fine"))
        #expect(await echoed.wait(count: 1) == ["fine"])
        await other.close()
    }

    @Test("drain: queued messages are handled, then the connection closes")
    func drain() async throws {
        let server = try await NATSServer.start()
        let connection = try await connect(server)
        let publisher = try await connect(server)
        let received = Received<Int>()
        let subscription = try connection.subscribe(to: "drained") { received.append(Int($0.payload.text)!) }
        try await connection.flush()
        for index in 0..<200 { try publisher.publish("drained", payload: Array(text: "\(index)")) }
        try await publisher.flush()
        #expect(await received.wait(count: 1) != nil)
        try await connection.drain(timeout: .seconds(10))
        await subscription.finished()
        #expect(received.all == Array(0..<200))
        #expect(connection.status == .closed)
        await publisher.close()
    }

    @Test("a token the server requires: accepted when given, refused (naming the address) when wrong")
    func tokenAuthentication() async throws {
        let server = try await NATSServer.start(jetStream: false, extraArguments: ["--auth", "s3cret"])
        let connection = try await connect(server) { $0.token = "s3cret" }
        try await connection.flush()
        await connection.close()
        let error = await #expect(throws: NATSError.self) {
            _ = try await connect(server) { $0.token = "wrong" }
        }
        #expect(error?.code == .connectionFailed)
        #expect(error?.description.contains(server.url) == true)
    }

    @Test("a credentials file that is not there is an error naming it")
    func missingCredentialsFile() async throws {
        let server = try await NATSServer.start(jetStream: false)
        let error = await #expect(throws: NATSError.self) {
            _ = try await connect(server) { $0.credentialsFile = "/nonexistent/agentd.creds" }
        }
        #expect(error?.description.contains("/nonexistent/agentd.creds") == true)
    }

    @Test("TLS with a CA, a client certificate and an expected hostname")
    func tls() async throws {
        let certificates = try TestCertificates.shared()
        let server = try await NATSServer.start(jetStream: false, extraArguments: [
            "--tls", "--tlscert", certificates.server.certificatePath, "--tlskey", certificates.server.privateKeyPath,
            "--tlscacert", certificates.caPath, "--tlsverify",
        ])
        let connection = try await connect(server) {
            $0.tls = .init(caFile: certificates.caPath, certificateFile: certificates.client.certificatePath,
                           privateKeyFile: certificates.client.privateKeyPath, expectedHostname: "localhost")
        }
        let received = Received<String>()
        _ = try connection.subscribe(to: "secure") { received.append($0.payload.text) }
        try await connection.flush()
        try connection.publish("secure", payload: Array(text: "over TLS"))
        #expect(await received.wait(count: 1) == ["over TLS"])
        await connection.close()

        // A client certificate from another authority is refused.
        let refused = await #expect(throws: NATSError.self) {
            _ = try await connect(server) {
                $0.tls = .init(caFile: certificates.caPath, certificateFile: certificates.strangerClient.certificatePath,
                               privateKeyFile: certificates.strangerClient.privateKeyPath)
            }
        }
        #expect(refused?.code == .connectionFailed)
        // A CA file that is not there is named.
        let missing = await #expect(throws: NATSError.self) {
            _ = try await connect(server) { $0.tls = .init(caFile: "/nonexistent/ca.pem") }
        }
        #expect(missing?.description.contains("/nonexistent/ca.pem") == true)
    }
}
