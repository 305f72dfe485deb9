import AgentCore
import AgentRuntime
import ArgumentParser
import Foundation
import Logging

/// Options shared by the commands that poke a running system.
struct ClientOptions: ParsableArguments {
    @Option(help: "The host to join (HOST:PORT).")
    var host: String = "127.0.0.1:50051"

    @Option(help: "The message type (AutoGen's data type: the bare class name for JSON).")
    var type: String

    @Option(help: "The payload, as JSON text.")
    var json: String

    func connect() throws -> WorkerClient {
        var logger = Logger(label: "agentd.client")
        logger.logLevel = .warning
        return try WorkerClient(address: host, logger: logger)
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
        let client = try options.connect()
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
            """
    )

    @OptionGroup var options: ClientOptions

    @Option(help: "The topic, TYPE/SOURCE.")
    var topic: String

    @Option(name: .customLong("await"), help: "Print the first event published to this topic type, then exit.")
    var awaitTopic: String?

    @Option(help: "Seconds to wait for --await.")
    var timeout: Double = 10

    func run() async throws {
        guard let slash = topic.firstIndex(of: "/") else {
            throw ValidationError("--topic must be TYPE/SOURCE, not '\(topic)'")
        }
        let topicID = TopicID(type: String(topic[..<slash]), source: String(topic[topic.index(after: slash)...]))
        let client = try options.connect()
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
            await client.close()
        }
    }
}
