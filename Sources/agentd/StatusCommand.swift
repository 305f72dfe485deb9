import AgentHost
import AgentRuntime
import ArgumentParser
import Foundation
import GRPCTransport

/// `agentd status`: a host's workers and facts, and what each agentd runtime among the workers
/// serves.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show a host's workers and, for agentd runtimes, their plugins and resident agents.",
        discussion: """
            Asks the host (/agentd.Status/Get) for its address, uptime, cluster and connected \
            workers (client id, peer, agent types, subscriptions, outbound queue depth, events \
            dropped), then asks each worker that is an agentd runtime (it has a control channel \
            open) for its plugins and resident agents, through the host's control channel \
            (clientid=ID). A runtime that does not answer within --timeout shows "no answer"; \
            other workers (AutoGen's Python ones) show what the host knows of them.

            With a list of hosts, the first that answers is shown. --json prints one JSON object \
            (keys sorted; the host's keys, and in each worker runtime_status, runtime and \
            runtime_error).

            Exit status: 0 shown; 1 the host answered with an error (an AutoGen host has no \
            status call); 2 the host is unreachable or refused the call.
            """
    )

    @OptionGroup var connection: HostOptions

    @Flag(help: "Print JSON for scripts instead of text.")
    var json = false

    @Option(help: "Seconds each runtime has to answer.")
    var timeout: Double = 2

    func validate() throws {
        guard timeout > 0, timeout.isFinite else { throw ValidationError("--timeout must be a positive number of seconds") }
    }

    func run() async throws {
        let address = try await connection.reachableHost()
        let credentials = try connection.credentials()
        let token = try connection.authToken()
        let (raw, host) = try await hostStatus(address: address, credentials: credentials, token: token)
        let runtimes = await runtimeStatuses(of: host.workers, address: address, credentials: credentials, token: token)
        let report = StatusReport(hostRaw: raw, host: host, runtimes: runtimes)
        if json {
            FileHandle.standardOutput.write(try report.json())
            FileHandle.standardOutput.write(Data("\n".utf8))
        } else {
            print(report.text)
        }
    }

    /// The host's answer to `/agentd.Status/Get`, raw and decoded.
    private func hostStatus(
        address: String, credentials: ChannelCredentials, token: String?
    ) async throws -> ([String: Any], StatusReport.Host) {
        let channel = Channel(configuration: .init(target: address, credentials: credentials))
        var metadata = Metadata()
        if let token { metadata.add("authorization", "Bearer \(token)") }
        let bytes: [UInt8]
        do {
            bytes = try await channel.unary(
                method: AgentHost.statusMethod, request: MessageBuffer([UInt8]()), metadata: metadata,
                deadline: .after(.seconds(10))
            ).bytes
            await channel.shutdown()
        } catch {
            await channel.shutdown()
            throw fail(Self.explain(error, address: address))
        }
        do {
            let raw = try JSONSerialization.jsonObject(with: Data(bytes))
            guard let object = raw as? [String: Any] else { throw fail((1, "the host at \(address) answered something other than a JSON object")) }
            return (object, try StatusReport.decoder().decode(StatusReport.Host.self, from: Data(bytes)))
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw fail((1, "the host at \(address) answered a status that cannot be read: \(error)"))
        }
    }

    /// Each agentd runtime's answer to a status request, asked all at once on one control
    /// channel; other workers are not asked.
    private func runtimeStatuses(
        of workers: [StatusReport.Host.Worker], address: String, credentials: ChannelCredentials, token: String?
    ) async -> [String: StatusReport.RuntimeAnswer] {
        var answers: [String: StatusReport.RuntimeAnswer] = [:]
        for worker in workers where !worker.controlChannel { answers[worker.clientId] = .notARuntime }
        let runtimes = workers.filter(\.controlChannel).map(\.clientId)
        guard !runtimes.isEmpty else { return answers }
        let client: StateClient
        do {
            client = try StateClient(address: address, credentials: credentials, authToken: token, logger: HostOptions.clientLogger)
        } catch {
            for id in runtimes { answers[id] = .failed("cannot open a control channel: \(error)") }
            return answers
        }
        let wait = Duration.milliseconds(Int64(timeout * 1000))
        let shownTimeout = timeout == timeout.rounded() ? "\(Int(timeout)) s" : "\(timeout) s"
        await withTaskGroup(of: (String, StatusReport.RuntimeAnswer).self) { group in
            for id in runtimes {
                group.addTask {
                    do throws(StateClient.Failure) {
                        let text = try await client.runtimeStatus(ofClient: id, timeout: wait)
                        do {
                            let decoded = try StatusReport.decoder().decode(StatusReport.Runtime.self, from: Data(text.utf8))
                            return (id, .answered(json: text, decoded: decoded))
                        } catch {
                            return (id, .failed("the runtime's status cannot be read: \(error)"))
                        }
                    } catch {
                        return (id, error.code == .timedOut ? .noAnswer(timeout: shownTimeout) : .failed(error.message))
                    }
                }
            }
            for await (id, answer) in group { answers[id] = answer }
        }
        await client.close()
        return answers
    }

    /// A message on stderr, and the exit status to end with.
    private func fail(_ outcome: (status: Int32, message: String)) -> ExitCode {
        FileHandle.standardError.write(Data("agentd status: \(outcome.message)\n".utf8))
        return ExitCode(outcome.status)
    }

    /// What a failed status call means, and its exit status.
    private static func explain(_ error: any Error, address: String) -> (Int32, String) {
        guard let error = error as? TransportError else { return (2, "the host at \(address): \(error)") }
        switch error.status.code {
        case .unavailable, .deadlineExceeded:
            return (2, "the host at \(address) is unreachable (\(error.status))")
        case .unauthenticated, .permissionDenied:
            return (2, "the host at \(address) refused the call (\(error.status))")
        case .unimplemented:
            return (1, "the host at \(address) has no status call (\(error.status)); AutoGen's host has none, agentd's has")
        default:
            return (1, "the host at \(address) answered with an error: \(error.status)")
        }
    }
}
