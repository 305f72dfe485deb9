import AgentCore
import AgentRuntime
import ArgumentParser
import Foundation

/// `agentd state save|load|delete`: an agent's state, through a host's control channel
/// (AutoGen's `SaveStateRequest` / `LoadStateRequest`, agentd's `DeleteStateRequest`).
struct StateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "state",
        abstract: "Save, load or delete an agent's state through a host.",
        discussion: """
            The request goes to the host's control channel, addressed to agentid=TYPE/KEY; the host \
            routes it to the runtime serving TYPE (agentd's host and AutoGen's both do), which answers. \
            State text is JSON as the agent wrote it, or, for a state that is not JSON, a data URL: \
            data:application/octet-stream;base64,<base64>.

            Exit status: 0 done; 1 the host or the agent's runtime answered with an error (printed to \
            stderr); 2 the host is unreachable or refused the control channel; 3 no answer within \
            --timeout (AutoGen's host drops a request it cannot deliver without answering).
            """,
        subcommands: [Save.self, Load.self, Delete.self]
    )

    /// What every `agentd state` subcommand takes.
    struct Options: ParsableArguments {
        @OptionGroup var connection: HostOptions

        @Option(help: "The agent, TYPE/KEY.")
        var agent: String

        @Option(help: "Seconds to wait for the answer.")
        var timeout: Double = 10

        func validate() throws {
            guard AgentID(agent) != nil else {
                throw ValidationError("--agent must be TYPE/KEY with a valid agent type, not '\(agent)'")
            }
            guard timeout > 0, timeout.isFinite else { throw ValidationError("--timeout must be a positive number of seconds") }
        }

        var agentID: AgentID { AgentID(agent)! }

        var timeoutDuration: Duration { .milliseconds(Int64(timeout * 1000)) }

        /// Opens a control channel, runs `body` with it, closes it, and turns a failure into a
        /// line on stderr and the exit status.
        func withClient(command: String, _ body: (StateClient) async throws(StateClient.Failure) -> Void) async throws {
            let client = try StateClient(
                address: try await connection.reachableHost(), credentials: try connection.credentials(),
                authToken: try connection.authToken(), logger: HostOptions.clientLogger)
            let failure: StateClient.Failure?
            do {
                try await body(client)
                failure = nil
            } catch {
                failure = error
            }
            await client.close()
            guard let failure else { return }
            let (what, status): (String, Int32) = switch failure.code {
            case .answeredWithError: ("the host or the agent's runtime answered with an error: ", 1)
            case .channelFailed: ("", 2)
            case .timedOut: ("", 3)
            default: ("", 1)
            }
            FileHandle.standardError.write(Data("agentd state \(command): \(agentID): \(what)\(failure.message)\n".utf8))
            throw ExitCode(status)
        }
    }

    /// `agentd state save`: prints the agent's state.
    struct Save: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "save",
            abstract: "Print an agent's state (JSON, or a data: URL for a state that is not JSON).",
            discussion: "Example: agentd state save --host 127.0.0.1:50051 --agent counter/a > counter-a.json"
        )

        @OptionGroup var options: Options

        func run() async throws {
            try await options.withClient(command: "save") { (client) throws(StateClient.Failure) in
                let state = try await client.saveState(of: options.agentID, timeout: options.timeoutDuration)
                print(state)
            }
        }
    }

    /// `agentd state load`: replaces the agent's state.
    struct Load: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "load",
            abstract: "Replace an agent's state.",
            discussion: """
                Examples: agentd state load --agent counter/a --json '{"count": 3}'
                          agentd state load --agent counter/a --file counter-a.json

                --json must be JSON. --file takes what `agentd state save` printed: JSON, or a \
                data:...;base64,... URL; a file that is not UTF-8 text is sent as the state's raw \
                bytes (as a data URL).
                """
        )

        @OptionGroup var options: Options

        @Option(help: "The state, as JSON text.")
        var json: String?

        @Option(help: "A file holding the state (JSON, a data: URL, or raw bytes).")
        var file: String?

        func validate() throws {
            guard (json == nil) != (file == nil) else { throw ValidationError("give --json or --file (one of them)") }
            if let json {
                do {
                    try JSONSyntax.validate(Array(json.utf8))
                } catch {
                    throw ValidationError("--json is not valid JSON: \(error)")
                }
            }
        }

        func run() async throws {
            let state = try json ?? Self.stateText(ofFile: file!)
            try await options.withClient(command: "load") { (client) throws(StateClient.Failure) in
                try await client.loadState(state, into: options.agentID, timeout: options.timeoutDuration)
                print("loaded the state of \(options.agentID)")
            }
        }

        /// The state text a file holds: a data URL as is (less trailing whitespace), JSON as is,
        /// bytes that are not UTF-8 as a data URL.
        static func stateText(ofFile path: String) throws -> String {
            let bytes: [UInt8]
            do {
                bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
            } catch {
                throw ValidationError("cannot read --file \(path): \((error as NSError).localizedDescription)")
            }
            guard let text = String(validating: bytes, as: UTF8.self) else { return StateText.text(for: bytes) }
            if text.hasPrefix("data:") {
                let trimmed = String(text.reversed().drop(while: { $0.isWhitespace }).reversed())
                do {
                    _ = try StateText.snapshot(from: trimmed)
                } catch {
                    throw ValidationError("--file \(path): \(error)")
                }
                return trimmed
            }
            do {
                try JSONSyntax.validate(bytes)
            } catch {
                throw ValidationError("--file \(path) is neither JSON nor a data: URL: \(error)")
            }
            return text
        }
    }

    /// `agentd state delete`: forgets the agent.
    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "delete",
            abstract: "Forget an agent: its instance and its stored state.",
            discussion: "Example: agentd state delete --agent counter/a"
        )

        @OptionGroup var options: Options

        func run() async throws {
            try await options.withClient(command: "delete") { (client) throws(StateClient.Failure) in
                try await client.deleteState(of: options.agentID, timeout: options.timeoutDuration)
                print("deleted the state of \(options.agentID)")
            }
        }
    }
}
