import AgentCore
import AgentRuntime
import ArgumentParser
import Foundation
import GRPCTransport
import Logging

/// How the commands that poke a running system reach its host: the address, TLS and a token.
struct HostOptions: ParsableArguments {
    @Option(help: "The host to join (HOST:PORT), or several (HOST:PORT,HOST:PORT): the first that answers.")
    var host: String = "127.0.0.1:50051"

    @Option(help: "An authorization token for a host that requires one (sent as 'authorization: Bearer TOKEN'). Other users can see it in the process list: prefer --token-file.")
    var token: String?

    @Option(help: "A file holding the authorization token (its first line that is not blank or a # comment).")
    var tokenFile: String?

    @Option(name: .customLong("tls-ca"), help: "Connect with TLS, trusting this certificate authority (PEM file).")
    var tlsCA: String?

    @Option(name: .customLong("tls-cert"), help: "A client certificate (PEM file) for a host that requires one (mutual TLS); with --tls-key. Implies TLS.")
    var tlsCertificate: String?

    @Option(name: .customLong("tls-key"), help: "The private key (PEM file) of --tls-cert.")
    var tlsKey: String?

    func validate() throws {
        if token != nil, tokenFile != nil { throw ValidationError("give --token or --token-file, not both") }
        if (tlsCertificate == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
    }

    /// The host to use: `--host` itself, or of a list the first that answers within 2 s (the
    /// first when none does, so that the error names it).
    func reachableHost() async throws -> String {
        guard host.contains(",") else { return host }
        let probe = HostConnection(
            address: host, clientID: UUID().uuidString.lowercased(), maxMessageBytes: 4 * 1024 * 1024,
            logger: Self.clientLogger, credentials: try credentials(), authToken: try authToken())
        await probe.chooseReachableHost()
        let chosen = probe.address
        await probe.close()
        return chosen
    }

    /// Plaintext, or TLS as the --tls-* options say.
    func credentials() throws -> ChannelCredentials {
        guard tlsCA != nil || tlsCertificate != nil else { return .insecure }
        return .tls(
            rootCertificates: try tlsCA.map { try Self.read($0, option: "--tls-ca") },
            certificateChain: try tlsCertificate.map { try Self.read($0, option: "--tls-cert") },
            privateKey: try tlsKey.map { try Self.read($0, option: "--tls-key") })
    }

    /// --token, or the token in --token-file.
    func authToken() throws -> String? {
        guard let tokenFile else { return token }
        let lines = try Self.read(tokenFile, option: "--token-file").split(whereSeparator: \.isNewline)
        guard let first = lines.lazy.map({ $0.trimmingCharacters(in: .whitespaces) })
            .first(where: { !$0.isEmpty && !$0.hasPrefix("#") })
        else {
            throw ValidationError("--token-file \(tokenFile) holds no token")
        }
        return first
    }

    /// A logger for the client's own messages: warnings and worse, to stderr.
    static var clientLogger: Logger {
        var logger = Logger(label: "agentd.client")
        logger.logLevel = .warning
        return logger
    }

    /// The text of a file an option names.
    private static func read(_ path: String, option: String) throws -> String {
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ValidationError("cannot read \(option) \(path): \((error as NSError).localizedDescription)")
        }
    }
}

/// Options shared by `agentd send` and `agentd publish`.
struct ClientOptions: ParsableArguments {
    @OptionGroup var connection: HostOptions

    @Option(help: "The message type (AutoGen's data type: the bare class name for JSON).")
    var type: String

    @Option(help: "The payload, as JSON text.")
    var json: String

    /// - Parameter acknowledged: ask the host to acknowledge this client's publishes.
    func connect(acknowledged: Bool = false) async throws -> WorkerClient {
        try await WorkerClient(
            address: try await connection.reachableHost(), credentials: try connection.credentials(),
            authToken: try connection.authToken(), acknowledged: acknowledged, logger: HostOptions.clientLogger)
    }
}

/// `agentd send`: an RPC to one agent; prints the answer.
struct SendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Send an RPC to an agent and print its answer.",
        discussion: "Example: agentd send --agent echo/default --type Echo --json '{\"text\": \"hi\"}'"
    )

    @OptionGroup var options: ClientOptions

    @Option(help: "The target agent, TYPE/KEY.")
    var agent: String

    @Option(help: "Seconds to wait for the answer.")
    var timeout: Double = 30

    func run() async throws {
        guard let target = AgentID(agent) else {
            throw ValidationError("--agent must be TYPE/KEY with a valid agent type, not '\(agent)'")
        }
        let client = try await options.connect()
        do {
            let response = try await client.send(
                Array(options.json.utf8), messageType: options.type, to: target,
                timeout: .milliseconds(Int64(timeout * 1000)))
            print("\(response.messageType) \(String(decoding: response.payload, as: UTF8.self))")
            await client.close()
        } catch {
            await client.close()
            FileHandle.standardError.write(Data("agentd send: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// `agentd publish`: publishes one event; optionally prints the events of a topic type.
struct PublishCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Publish an event to a topic (and optionally print the replies on another).",
        discussion: """
            Example: agentd publish --topic greetings/s1 --type Greeting --json '{"name": "Ada"}' \
            --await greeting-replies

            With an agentd host, exits once the host has acknowledged the event (handed it to \
            every subscriber), or with status 1 if it did not within --ack-timeout (15 s). AutoGen's host \
            acknowledges nothing: the event was written to it, no more is known.
            """
    )

    @OptionGroup var options: ClientOptions

    @Option(help: "The topic, TYPE/SOURCE.")
    var topic: String

    @Option(name: .customLong("await"), help: "Print the first event published to this topic type, then exit.")
    var awaitTopic: String?

    @Option(help: "Seconds to wait for --await.")
    var timeout: Double = 10

    @Option(name: .customLong("ack-timeout"), help: "Seconds to wait for an agentd host's acknowledgement (past its own 10 s wait for a subscriber's confirmation).")
    var ackTimeout: Double = 15

    func run() async throws {
        guard let slash = topic.firstIndex(of: "/") else {
            throw ValidationError("--topic must be TYPE/SOURCE, not '\(topic)'")
        }
        let topicID = TopicID(type: String(topic[..<slash]), source: String(topic[topic.index(after: slash)...]))
        let client = try await options.connect(acknowledged: true)
        if let awaitTopic {
            try await client.subscribe(topicType: awaitTopic)
            let events = client.events()
            try client.publish(Array(options.json.utf8), messageType: options.type, to: topicID)
            let deadline = timeout
            let first = await withTaskGroup(of: WorkerClient.Event?.self) { group in
                group.addTask {
                    for await event in events { return event }
                    return nil
                }
                group.addTask {
                    try? await Task.sleep(for: .milliseconds(Int64(deadline * 1000)))
                    return nil
                }
                let result = await group.next() ?? nil
                group.cancelAll()
                return result
            }
            await client.close()
            guard let first else {
                FileHandle.standardError.write(Data("agentd publish: nothing on \(awaitTopic) within \(timeout) s\n".utf8))
                throw ExitCode(1)
            }
            print("\(first.topic) \(first.messageType) \(String(decoding: first.payload, as: UTF8.self))")
        } else {
            try client.publish(Array(options.json.utf8), messageType: options.type, to: topicID)
            try await Self.requireAcknowledged(client, host: options.connection.host, within: .milliseconds(Int64(ackTimeout * 1000)))
            await client.close()
        }
    }

    /// With our host, exits with status 1 (and says so) unless the host acknowledged the
    /// publish: handed to every recipient (README, "Acknowledged delivery"). AutoGen's host
    /// acknowledges nothing: the publish was written, no more is known.
    static func requireAcknowledged(_ client: WorkerClient, host: String, within wait: Duration) async throws {
        guard let left = await client.waitUntilAcknowledged(timeout: wait), left > 0 else { return }
        FileHandle.standardError.write(Data("agentd publish: the host at \(host) did not acknowledge the event within \(wait) (its connection broke, or it is overloaded): it may not have been delivered\n".utf8))
        await client.close()
        throw ExitCode(1)
    }
}
