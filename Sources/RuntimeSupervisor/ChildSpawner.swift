#if canImport(Glibc)
import Glibc
#endif
import GRPCTransport
import HostLauncher
import Synchronization

/// Spawns the runtime child and waits for it to end, on one thread that lives as long as the
/// supervisor: the child asks the kernel to kill it when the thread that spawned it ends
/// (`PR_SET_PDEATHSIG`), which must therefore be no thread of a pool that may retire it.
///
/// One child at a time: ``spawn(_:)`` waits until the previous child has been reaped.
final class ChildSpawner: Sendable {
    /// How a child process ended.
    enum Exit: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)

        var description: String {
            switch self {
            case .exited(let status): "exit status \(status)"
            case .signaled(let signal): "signal \(signal)"
            }
        }
    }

    /// What to run: the program, its arguments (the first is argv[0]), and the fds it gets at
    /// given numbers (each dup2'd there; every other close-on-exec fd stays closed).
    struct Launch: Sendable {
        var executable: String
        var arguments: [String]
        var environment: [String]
        var fds: [(source: Int32, target: Int32)]
    }

    private struct Job: Sendable {
        var launch: Launch
        var started: @Sendable (Result<pid_t, SpawnError>) -> Void
        var ended: @Sendable (Exit) -> Void
    }

    struct SpawnError: Error, CustomStringConvertible {
        var errno: Int32
        var description: String { String(cString: strerror(errno)) }
    }

    private let jobs = Mutex<[Job]>([])
    private let wake = Latch()

    init() {
        // Never joined: it serves until the process ends.
        _ = NativeThread.start(name: "agentd-spawner", stackSize: 256 << 10) { [self] in loop() }
    }

    /// Starts `launch`; returns its pid, and calls `ended` (on the spawner's thread) once it
    /// has ended and been reaped.
    func spawn(_ launch: Launch, ended: @escaping @Sendable (Exit) -> Void) async throws(SpawnError) -> pid_t {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<pid_t, SpawnError>, Never>) in
            jobs.withLock { $0.append(Job(launch: launch, started: { continuation.resume(returning: $0) }, ended: ended)) }
            wake.open()
        }
        return try result.get()
    }

    private func loop() {
        while true {
            wake.wait()
            guard let job = jobs.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else { continue }
            let pid: pid_t
            switch Self.start(job.launch) {
            case .failure(let error):
                job.started(.failure(error))
                continue
            case .success(let started):
                pid = started
                job.started(.success(started))
            }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            // WIFEXITED / WTERMSIG, which do not import into Swift.
            let exit: Exit = (status & 0x7f) == 0 ? .exited((status >> 8) & 0xff) : .signaled(status & 0x7f)
            job.ended(exit)
        }
    }

    private static func start(_ launch: Launch) -> Result<pid_t, SpawnError> {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (source, target) in launch.fds { posix_spawn_file_actions_adddup2(&actions, source, target) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The child starts with no signal blocked and every signal at its default action: the
        // supervisor ignores SIGTERM, SIGINT and SIGHUP for its own signal handling, and an
        // ignored signal stays ignored across exec.
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in 1..<32 where signal != SIGKILL && signal != SIGSTOP { sigaddset(&defaults, Int32(signal)) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = launch.arguments.map { strdup($0) } + [nil]
        let envp = launch.environment.map { strdup($0) } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid = pid_t()
        let result = posix_spawn(&pid, launch.executable, &actions, &attributes, argv, envp)
        return result == 0 ? .success(pid) : .failure(SpawnError(errno: result))
    }
}
