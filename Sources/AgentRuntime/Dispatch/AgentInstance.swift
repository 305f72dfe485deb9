import AgentCore
import AgentPluginABI
import AgentState
import CRuntimeSupport
import DequeModule
import Synchronization

/// The plugin's own object for one agent: whatever its `create` stored, never dereferenced by
/// the runtime.
struct PluginInstance: @unchecked Sendable {
    // @unchecked Sendable: an opaque pointer the runtime only hands back to the plugin, and
    // only from the one worker running the agent (the header's one-handler-at-a-time promise).
    var pointer: UnsafeMutableRawPointer?
}

/// An RPC's answer held back until the agent's checkpoint is committed (so that an answered
/// RPC's effect survives a crash).
struct HeldAnswer: Sendable {
    enum Content: Sendable {
        case reply(messageType: String, contentType: String, payload: [UInt8])
        case error(String)
    }
    var requestID: String
    var content: Content
}

/// One agent (agent type + key) served by this runtime: its mailbox, its plugin instance, its
/// stored state's revision, and the state that keeps its handlers one at a time.
///
/// Its life: created (resident, no plugin instance) on its first message; activated — the
/// plugin instance created, and restored from the state store where the type keeps state — on
/// the first message it handles; checkpointed after each message that changed its state
/// (answers held until the write is committed); retired when idle or least recently used
/// (final checkpoint, `destroy`, out of the router's table).
///
/// An agent outlives plugin versions: on a reload it moves to the new version of its type
/// between two messages (with its state, where the plugin offers snapshot/restore), and the
/// messages waiting in its mailbox are delivered by the new version. When its type goes away,
/// what waits is answered with an error.
final class AgentInstance: Schedulable {
    enum Phase {
        /// Nothing to do.
        case idle
        /// In the worker pool's queue.
        case scheduled
        /// A worker is in one of its handlers or jobs.
        case running
        /// A handler returned PENDING; the next message waits for that call's answer.
        case waiting(UInt)
        /// A checkpoint is being written; the next message waits for its commit.
        case saving
        /// Out of the router's table: deliveries are refused (the router makes a new agent).
        case retired
    }

    /// The most events whose checkpoint may wait for the next message's.
    static let eventsPerCheckpoint = 64

    /// Work run on the agent's worker between two messages (state requests, retirement,
    /// trial restores of a new plugin version); `abandon` instead when the runtime stops
    /// before it ran, so that whoever waits for it is answered.
    struct Job: Sendable {
        var run: @Sendable (AgentInstance) -> Void
        var abandon: @Sendable () -> Void
    }

    /// What a delivery did.
    enum Delivery {
        case accepted
        /// The mailbox is full.
        case full
        /// The agent was retired: look it up again.
        case retired
        /// An RPC refused: the agent's handler is stuck (``markStuck()``).
        case stuck
    }

    private struct State: ~Copyable {
        var mailbox = Deque<IncomingMessage>()
        var jobs = Deque<Job>()
        var phase = Phase.idle
        /// The version of the agent type serving this agent now (nil: the type was removed).
        var currentType: PluginAgentType?
        /// The version whose create() made `instance` (nil: none made yet).
        var instanceType: PluginAgentType?
        var instance = PluginInstance()
        /// Snapshot bytes from the previous version, restored into the next instance created.
        var carriedState: [UInt8]?
        /// The revision of the stored state the instance holds (0: nothing stored).
        var revision: UInt64 = 0
        /// A digest of the bytes last written (or read) for this revision: a snapshot with the
        /// same digest is not written again. (A digest, not a copy: a copy would double the
        /// memory of every resident agent's state.)
        var lastStored: StateDigest?
        /// A pending call was answered: checkpoint before the next message.
        var checkpointDue = false
        /// The instance's state is not what is stored (a checkpoint failed): destroy it
        /// before the next message, which activates from the store again.
        var discard = false
        /// Answers of the message being handled, held for its checkpoint.
        var held: [HeldAnswer] = []
        /// The router's tick at the last delivery (for idle and least-recently-used retirement).
        var lastActive = 0
        /// Events handled since the last checkpoint (their checkpoint waits while more
        /// messages are queued).
        var uncheckpointed = 0
        /// A failure to activate was logged at error level already.
        var reportedFailure = false
        /// Its running handler's call, once it has run past the handler timeout without
        /// returning: RPCs are refused at once until it returns (events wait, within the
        /// mailbox limit).
        var stuckCall: HandlerCall?
        /// Counts the units (a job or a message) taken to run: the worker running one changes
        /// the phase afterwards only if no other run began meanwhile (a job's checkpoint may be
        /// committed, and the agent taken by another worker, before the job returns).
        var runSerial = 0

        /// Whether the plugin instance belongs to a version other than the current one.
        var needsMigration: Bool {
            guard let instanceType else { return false }
            return !instanceType.isSameVersion(as: currentType)
        }

        var hasWork: Bool {
            !mailbox.isEmpty || !jobs.isEmpty || needsMigration || discard || checkpointDue || uncheckpointed > 0
        }
    }

    let id: AgentID
    let context: DispatchContext
    private let handleBits: UInt
    private let typeText: CString
    private let keyText: CString
    private let state: Mutex<State>
    /// The trace context of the handler running now (W3C), carried by what it sends.
    private let trace = Mutex<TraceContext?>(nil)
    /// ``trace`` may be set (spares the lock on the common path, where no message is traced).
    private let traced = Atomic<Bool>(false)

    /// The trace context of the handler running now, if its message carried one.
    var currentTrace: TraceContext? {
        guard traced.load(ordering: .relaxed) else { return nil }
        return trace.withLock { $0 }
    }

    /// Sets (or clears) the running handler's trace context.
    func setTrace(_ context: TraceContext?) {
        if context == nil, !traced.load(ordering: .relaxed) { return }
        trace.withLock { $0 = context }
        traced.store(context != nil, ordering: .relaxed)
    }
    /// The size of the state the agent holds as far as the runtime knows it: the snapshot last
    /// written, read or carried from a previous version (0 without one).
    private let stateBytes = Atomic<Int>(0)

    /// A resident agent's fixed cost besides its id: the instance, its mailbox, its lock, its
    /// entries in the router's and the handle table (measured order of magnitude).
    static let residentOverhead = 512

    /// What the agent holds in memory as the runtime can know it — its type and key (each
    /// kept twice: as Swift strings and as the C strings plugins see), a fixed overhead, and
    /// its state's last known size — what `max_resident_bytes` bounds. (The plugin's own
    /// memory for the instance is not known to the runtime; messages waiting in the mailbox
    /// are bounded by `mailbox_limit`.)
    var residentBytes: Int {
        Self.residentOverhead + 2 * (id.type.utf8.count + id.key.utf8.count) + stateBytes.load(ordering: .relaxed)
    }

    /// The agent now holds `bytes` of state: the runtime's resident total follows.
    private func holdState(_ bytes: Int) {
        let old = stateBytes.exchange(bytes, ordering: .relaxed)
        if old != bytes { context.residentBytes.add(bytes - old, ordering: .relaxed) }
    }

    /// The plugin said (`state_changed`) that the message being handled changed the state.
    private let changed = Atomic<Bool>(false)
    /// Its agent type's handler calls and failures (nil: the runtime keeps no metrics).
    let handlerTally: HandlerTally?

    init(handle: OpaquePointer, id: AgentID, type: PluginAgentType, context: DispatchContext, tick: Int) {
        handleBits = UInt(bitPattern: Int(bitPattern: handle))
        self.id = id
        self.context = context
        handlerTally = context.metrics?.handlerTally(forType: id.type)
        typeText = CString(id.type)
        keyText = CString(id.key)
        state = Mutex(State(currentType: type, lastActive: tick))
    }

    /// The `agentd_agent_ref *` the plugin receives.
    var handle: OpaquePointer { OpaquePointer(bitPattern: handleBits)! }
    var typeView: agentd_str { typeText.view }
    var keyView: agentd_str { keyText.view }

    /// The version serving this agent now.
    var type: PluginAgentType? { state.withLock { $0.currentType } }

    /// The plugin whose code runs for this agent now: its instance's version, else the one
    /// serving it.
    var runningPlugin: LoadedPlugin? { state.withLock { ($0.instanceType ?? $0.currentType)?.plugin } }

    /// Whether answers of `type`'s handlers wait for a checkpoint.
    func keepsState(_ type: PluginAgentType) -> Bool { context.states != nil && type.offersState }

    /// `state_changed` from the plugin (any thread).
    func stateDidChange() {
        changed.store(true, ordering: .relaxed)
        let running = state.withLock { $0.instanceType ?? $0.currentType }
        running?.declaration.reportsStateChanges.store(true, ordering: .relaxed)
    }

    // MARK: Mailbox (any thread)

    /// Queues a message; schedules the agent if it was idle. Refuses — queuing nothing — when
    /// `limit` messages wait already, or when the agent was retired.
    func deliver(_ message: IncomingMessage, limit: Int, tick: Int) -> Delivery {
        let (delivery, schedule): (Delivery, Bool) = state.withLock { state in
            if case .retired = state.phase { return (.retired, false) }
            if state.stuckCall != nil && message.kind == .request { return (.stuck, false) }
            guard state.mailbox.count < limit else { return (.full, false) }
            state.mailbox.append(message)
            state.lastActive = tick
            guard case .idle = state.phase else { return (.accepted, false) }
            state.phase = .scheduled
            return (.accepted, true)
        }
        if schedule { context.workers.schedule(self) }
        return delivery
    }

    /// Queues a job to run between two messages (before the queued messages); false if the
    /// agent was retired.
    func enqueue(_ run: @escaping @Sendable (AgentInstance) -> Void, abandon: @escaping @Sendable () -> Void = {}) -> Bool {
        let job = Job(run: run, abandon: abandon)
        let (accepted, schedule): (Bool, Bool) = state.withLock { state in
            if case .retired = state.phase { return (false, false) }
            state.jobs.append(job)
            guard case .idle = state.phase else { return (true, false) }
            state.phase = .scheduled
            return (true, true)
        }
        if schedule { context.workers.schedule(self) }
        return accepted
    }

    /// Queues `job` if the agent is idle (nothing runs, waits or is queued) and was last
    /// active before `tick`; true if queued.
    func enqueueIfIdle(since tick: Int, _ run: @escaping @Sendable (AgentInstance) -> Void) -> Bool {
        let job = Job(run: run, abandon: {})
        let queued: Bool = state.withLock { state in
            guard case .idle = state.phase, state.mailbox.isEmpty, state.jobs.isEmpty,
                  state.lastActive < tick else { return false }
            state.jobs.append(job)
            state.phase = .scheduled
            return true
        }
        if queued { context.workers.schedule(self) }
        return queued
    }

    /// The router's tick at the last delivery, if the agent is idle now (nil: busy).
    var idleSince: Int? {
        state.withLock { state in
            guard case .idle = state.phase, state.mailbox.isEmpty, state.jobs.isEmpty else { return nil }
            return state.lastActive
        }
    }

    /// Nothing runs, waits or is queued for this agent.
    var isIdle: Bool {
        state.withLock { state in
            switch state.phase {
            case .idle, .retired: return state.mailbox.isEmpty && state.jobs.isEmpty
            default: return false
            }
        }
    }

    /// Abandons the queued jobs (the runtime has stopped): each one's waiter is answered.
    func abandonJobs() {
        let jobs = state.withLock { state in
            defer { state.jobs.removeAll() }
            return Array(state.jobs)
        }
        for job in jobs { job.abandon() }
    }

    /// Marks the agent's running handler (`call`) as stuck (past the handler timeout, not
    /// returned): RPCs to it are refused from now on until ``handlerDidReturn(_:)``.
    /// - Returns: false if it was marked already.
    func markStuck(_ call: HandlerCall) -> Bool {
        state.withLock { state in
            guard state.stuckCall == nil else { return false }
            state.stuckCall = call
            return true
        }
    }

    /// Takes the RPCs waiting in the mailbox out, to be answered with an error, while the
    /// agent is stuck on `call` (events stay queued).
    func takeQueuedRequests(stuckOn call: HandlerCall) -> [IncomingMessage] {
        state.withLock { state in
            guard state.stuckCall === call else { return [] }
            let requests = state.mailbox.filter { $0.kind == .request }
            if !requests.isEmpty { state.mailbox.removeAll { $0.kind == .request } }
            return Array(requests)
        }
    }

    /// The handler marked stuck on `call` returned: RPCs are taken again.
    func handlerDidReturn(_ call: HandlerCall) {
        state.withLock { state in
            if state.stuckCall === call { state.stuckCall = nil }
        }
    }

    /// The call of the agent's running handler, if it was marked stuck.
    var stuckCall: HandlerCall? { state.withLock { $0.stuckCall } }

    /// Removes and returns the queued messages (shutdown).
    func takeQueued() -> [IncomingMessage] {
        state.withLock { state in
            defer { state.mailbox.removeAll() }
            return Array(state.mailbox)
        }
    }

    /// Moves the agent to another version of its type (nil: the type is gone). Takes effect
    /// between two messages: a handler running now finishes on the version it started on.
    func retarget(to type: PluginAgentType?) {
        let schedule: Bool = state.withLock { state in
            state.currentType = type
            guard case .idle = state.phase else { return false }
            state.phase = .scheduled
            return true
        }
        if schedule { context.workers.schedule(self) }
    }

    /// A pending call was answered (from any thread): the agent checkpoints (where it keeps
    /// state) and takes its next message.
    func callDidComplete(_ call: HandlerCall) {
        // The handler's span ends with its answer: what the agent sends later is not in it.
        setTrace(nil)
        let resume: Bool = state.withLock { state in
            call.completed.store(true, ordering: .relaxed)
            guard case .waiting(let key) = state.phase, key == call.key else { return false }
            if call.checkpoints { state.checkpointDue = true }
            if !state.hasWork {
                state.phase = .idle
                return false
            }
            state.phase = .scheduled
            return true
        }
        if resume { context.workers.schedule(self) }
    }

    /// Holds an answer of the message being handled until its checkpoint is committed.
    func hold(_ answer: HeldAnswer) {
        state.withLock { $0.held.append(answer) }
    }

    // MARK: Running (the worker thread that took the agent from the run queue)

    /// Runs the next job or handles the next message: first drops an instance whose state was
    /// not saved, writes a checkpoint a pending call left due, and migrates to a new version
    /// if one is serving.
    func runNext() {
        // The version is read in the same critical section that finds the instance on it: a
        // retarget landing between a migration check and the read would hand the message to a
        // new version while the old version's instance (and its state) is still in place.
        enum Step {
            case discard
            case checkpoint(PluginAgentType?)
            case migrate
            /// A unit to run, with the run serial it was taken under.
            case job(Job, serial: Int)
            case handle(IncomingMessage, PluginAgentType?, serial: Int)
            case idle
        }
        var unit: Step?
        while unit == nil {
            let step: Step = state.withLock { state in
                if state.discard { return .discard }
                if state.checkpointDue {
                    state.checkpointDue = false
                    return .checkpoint(state.instanceType)
                }
                // Events whose checkpoint waited are written before the instance moves on or
                // the agent goes idle.
                if state.uncheckpointed > 0 && (state.needsMigration || state.mailbox.isEmpty) {
                    return .checkpoint(state.instanceType)
                }
                if state.needsMigration { return .migrate }
                if let job = state.jobs.popFirst() {
                    state.phase = .running
                    state.runSerial &+= 1
                    return .job(job, serial: state.runSerial)
                }
                guard let message = state.mailbox.popFirst() else {
                    state.phase = .idle
                    return .idle
                }
                state.phase = .running
                state.runSerial &+= 1
                return .handle(message, state.currentType, serial: state.runSerial)
            }
            switch step {
            case .discard: discardInstance()
            case .checkpoint(let type):
                if checkpoint(type) { return }
            case .migrate: migrate()
            case .idle: return
            case .job, .handle: unit = step
            }
        }
        let serial: Int
        switch unit {
        case .job(let job, let taken):
            serial = taken
            job.run(self)
        case .handle(let message, let type, let taken):
            serial = taken
            if let pending = handle(message, on: type) {
                let waiting: Bool = state.withLock { state in
                    guard !pending.completed.load(ordering: .relaxed) else { return false }
                    state.phase = .waiting(pending.key)
                    return true
                }
                if waiting { return }
            }
            if let type, keepsState(type) {
                // An event's checkpoint may wait while more messages are queued (at most
                // `eventsPerCheckpoint`): no answer depends on it, and the agent's last message
                // before it goes idle is always checkpointed.
                let (deferred, instanceType): (Bool, PluginAgentType?) = state.withLock { state in
                    if state.held.isEmpty && !state.mailbox.isEmpty && state.uncheckpointed < Self.eventsPerCheckpoint {
                        state.uncheckpointed += 1
                        return (true, state.instanceType)
                    }
                    return (false, state.instanceType)
                }
                if !deferred, checkpoint(instanceType) { return }
            }
        default:
            return
        }
        let reschedule: Bool = state.withLock { state in
            // Only the phase this run set: a checkpoint the job wrote may have been committed,
            // and the agent taken by another worker, meanwhile.
            guard case .running = state.phase, state.runSerial == serial else { return false }
            let more = state.hasWork
            state.phase = more ? .scheduled : .idle
            return more
        }
        if reschedule { context.workers.schedule(self) }
    }

    /// Hands one message to the handler; returns the call if the handler left it pending.
    private func handle(_ message: IncomingMessage, on type: PluginAgentType?) -> HandlerCall? {
        let invoker = context.invoker
        guard let type else {
            invoker.refuseForRemovedType(message, agent: self)
            return nil
        }
        if let skipped = context.skippedEvents, message.kind == .event, skipped.contains(message.messageID.string) {
            context.logger.warning("event dropped: its handler crashed an earlier runtime process", metadata: [
                "agent.id": "\(id)", "message.type": "\(message.messageType.string)", "message.id": "\(message.messageID.string)",
            ])
            return nil
        }
        if type.plugin.isDisabled.load(ordering: .acquiring) {
            invoker.refuseDisabled(message, agent: self, type: type)
            return nil
        }
        guard let handler = type.handler(for: message.messageType.string) else {
            invoker.refuseUnhandled(message, agent: self, type: type)
            return nil
        }
        // Noted in the crash record (when the process has one) while the plugin's code runs:
        // its create/restore and the handler.
        note(message, type)
        defer { agentd_crash_slot_leave() }
        switch pluginInstance(for: type) {
        case .failure(let failure):
            let first = state.withLock { state in
                defer { state.reportedFailure = true }
                return !state.reportedFailure
            }
            invoker.refuse(message, agent: self, type: type, creationFailure: failure.message, firstTime: first)
            return nil
        case .success(let instance):
            state.withLock { $0.reportedFailure = false }
            return invoker.invoke(handler, instance: instance, message: message, agent: self, type: type)
        }
    }

    /// Notes `message` in the crash record's slot of this thread.
    private func note(_ message: IncomingMessage, _ type: PluginAgentType) {
        let identity = type.plugin.crashIdentity
        let kind: StaticString = message.kind == .request ? "rpc" : "event"
        var noted = agentd_crash_message()
        noted.plugin_name = .init(identity.name.view)
        noted.plugin_version = .init(identity.version.view)
        noted.plugin_hash = .init(identity.hash.view)
        noted.agent_type = .init(typeView)
        noted.agent_key = .init(keyView)
        noted.kind = agentd_crash_text(
            data: UnsafeRawPointer(kind.utf8Start).assumingMemoryBound(to: CChar.self), length: kind.utf8CodeUnitCount)
        noted.message_type = .init(message.messageType)
        noted.request_id = .init(message.messageID)
        noted.sender_type = .init(message.senderType)
        noted.sender_key = .init(message.senderKey)
        withExtendedLifetime((identity, message)) { agentd_crash_slot_enter(&noted) }
    }

    /// The plugin instance for `type`, created — and restored: from the previous version's
    /// snapshot after a reload, else from the state store — on first use.
    private func pluginInstance(for type: PluginAgentType) -> Result<PluginInstance, StateControlError> {
        let (existing, made, carried) = state.withLock { ($0.instanceType, $0.instance, $0.carriedState) }
        if type.isSameVersion(as: existing) { return .success(made) }
        var stored: StoredState?
        if carried == nil, keepsState(type), let states = context.states {
            do throws(StateStoreError) {
                stored = try states.store.get(id)
            } catch {
                return .failure(StateControlError("Agent \(id) cannot start: its stored state cannot be read (\(error)). Nothing was changed; the message was not handled."))
            }
        }
        let created: UnsafeMutableRawPointer?
        switch create(on: type) {
        case .failure(let failure): return .failure(failure)
        case .success(let pointer): created = pointer
        }
        if let bytes = carried ?? stored?.bytes, let restore = type.descriptor.pointee.restore {
            let status = bytes.withUnsafeBufferPointer { restore(created, agentd_bytes(data: $0.baseAddress, length: $0.count)) }
            if status != AGENTD_OK {
                if let destroy = type.descriptor.pointee.destroy { destroy(created) }
                let source = carried != nil
                    ? "the state its previous version's snapshot wrote (\(bytes.count) bytes)"
                    : "its stored state (revision \(stored?.revision ?? 0), \(bytes.count) bytes in \(context.states?.name ?? "the store"))"
                return .failure(StateControlError(
                    "Agent \(id) cannot start: plugin \(type.plugin.name) \(type.plugin.version) refused \(source) with \(StatusText.name(status)). The state is kept: load new state (agentd state load) or delete it (agentd state delete)."))
            }
            if carried != nil {
                context.logger.debug("agent state carried to the new version", metadata: [
                    "agent.id": "\(id)", "plugin.version": "\(type.plugin.version)", "state.bytes": "\(bytes.count)",
                ])
            }
        }
        type.plugin.instanceDidStart()
        context.states?.activations.add(1, ordering: .relaxed)
        context.logger.debug("agent activated", metadata: [
            "agent.id": "\(id)", "plugin.version": "\(type.plugin.version)",
            "state": "\(carried != nil ? "carried from the previous version" : stored.map { "revision \($0.revision)" } ?? "none stored")",
        ])
        let instance = PluginInstance(pointer: created)
        if let bytes = carried ?? stored?.bytes { holdState(bytes.count) }
        state.withLock { state in
            state.instanceType = type
            state.instance = instance
            if let stored {
                state.revision = stored.revision
                state.lastStored = StateDigest(stored.bytes)
            } else if carried == nil {
                state.revision = 0
                state.lastStored = nil
            }
            state.carriedState = nil
        }
        return .success(instance)
    }

    /// Calls the type's `create` for this agent.
    private func create(on type: PluginAgentType) -> Result<UnsafeMutableRawPointer?, StateControlError> {
        var created: UnsafeMutableRawPointer?
        if let create = type.descriptor.pointee.create {
            let status = create(type.plugin.reference, type.descriptor, handle, keyView, &created)
            guard status == AGENTD_OK else {
                return .failure(StateControlError("creating agent \(id) failed with \(StatusText.name(status))"))
            }
        }
        return .success(created)
    }

    /// The instance's snapshot (owner thread, between messages).
    private func snapshot(_ type: PluginAgentType, _ instance: PluginInstance) -> Result<[UInt8], StateControlError> {
        guard let take = type.descriptor.pointee.snapshot else {
            return .failure(StateControlError("agent type '\(id.type)' keeps no state: plugin \(type.plugin.name) offers no snapshot"))
        }
        var bytes: [UInt8] = []
        let status = withUnsafeMutablePointer(to: &bytes) { sink in
            take(instance.pointer, snapshotWriter, UnsafeMutableRawPointer(sink))
        }
        guard status == AGENTD_OK else {
            return .failure(StateControlError("the snapshot of agent \(id) by plugin \(type.plugin.name) failed with \(StatusText.name(status))"))
        }
        return .success(bytes)
    }

    // MARK: Checkpoints

    /// Writes the instance's state to the store if the message just handled changed it, and
    /// releases the held answers once the write is committed (at once when nothing is
    /// written). True if a write was submitted: the agent is `saving` until its commit.
    /// - Parameter then: called after the commit (or at once when nothing is written).
    /// - Parameter afterWrite: called after the commit of a write, and only if there was one.
    @discardableResult
    private func checkpoint(_ type: PluginAgentType?, force: Bool = false,
                            then: (@Sendable (Result<Void, StateControlError>) -> Void)? = nil,
                            afterWrite: (@Sendable (Result<Void, StateControlError>) -> Void)? = nil) -> Bool {
        let (held, instance, revision, lastStored) = state.withLock { state in
            defer {
                state.held = []
                state.uncheckpointed = 0
            }
            return (state.held, state.instance, state.revision, state.lastStored)
        }
        let dirty = changed.exchange(false, ordering: .relaxed)
        guard let type, let states = context.states, type.offersState else {
            release(held)
            then?(.success(()))
            return false
        }
        if !force && !dirty && type.declaration.reportsStateChanges.load(ordering: .relaxed) {
            release(held)
            then?(.success(()))
            return false
        }
        let bytes: [UInt8]
        switch snapshot(type, instance) {
        case .failure(let failure):
            state.withLock { $0.discard = true }
            context.logger.error("checkpoint failed: the agent's snapshot failed; it restarts from the stored state", metadata: [
                "agent.id": "\(id)", "plugin": "\(type.plugin.name)", "reason": "\(failure.message)",
            ])
            release(held, failure: "The state of agent \(id) could not be saved (\(failure.message)); the message's effect was not kept.")
            then?(.failure(failure))
            return false
        case .success(let taken):
            bytes = taken
        }
        if !force && StateDigest(bytes) == lastStored {
            release(held)
            then?(.success(()))
            return false
        }
        state.withLock { $0.phase = .saving }
        states.writer.submit(StateWrite(agent: id, bytes: bytes, expectedRevision: revision)) { [self] result in
            checkpointDidFinish(result, bytes: bytes, held: held) { outcome in
                then?(outcome)
                afterWrite?(outcome)
            }
        }
        return true
    }

    /// A checkpoint's commit is done (the writer thread): the held answers go out — as
    /// errors if the write failed, and then the instance is dropped so that the next message
    /// starts from what is stored.
    private func checkpointDidFinish(_ result: Result<UInt64, StateStoreError>, bytes: [UInt8], held: [HeldAnswer],
                                     then: @Sendable (Result<Void, StateControlError>) -> Void) {
        let failure: StateControlError?
        switch result {
        case .success(let revision):
            state.withLock { state in
                state.revision = revision
                state.lastStored = StateDigest(bytes)
            }
            holdState(bytes.count)
            failure = nil
        case .failure(let error):
            state.withLock { $0.discard = true }
            context.states?.checkpointFailed(id, error)
            let reason = error.code == .conflict
                ? "another writer changed its stored state (revision \(error.foundRevision ?? 0) found)"
                : error.description
            failure = StateControlError("The state of agent \(id) could not be saved: \(reason); the message's effect was not kept.")
        }
        release(held, failure: failure?.message)
        let schedule: Bool = state.withLock { state in
            guard case .saving = state.phase else { return false }
            state.phase = state.hasWork ? .scheduled : .idle
            return state.hasWork
        }
        then(failure.map { .failure($0) } ?? .success(()))
        if schedule { context.workers.schedule(self) }
    }

    /// Sends held answers (as errors saying `failure` when given).
    private func release(_ held: [HeldAnswer], failure: String? = nil) {
        for answer in held {
            switch (answer.content, failure) {
            case (_, let failure?), (.error(let failure), nil):
                context.outbox.answer(requestID: answer.requestID, error: failure)
            case (.reply(let messageType, let contentType, let payload), nil):
                payload.withUnsafeBytes {
                    context.outbox.answer(requestID: answer.requestID, messageType: messageType, contentType: contentType, payload: $0)
                }
            }
        }
    }

    // MARK: Jobs (owner thread)

    /// The agent's state now: its instance's snapshot (activating it first).
    func currentState() -> Result<[UInt8], StateControlError> {
        guard let type = state.withLock({ $0.currentType }) else {
            return .failure(StateControlError("agent type '\(id.type)' is no longer served by this runtime"))
        }
        guard type.descriptor.pointee.snapshot != nil else {
            return .failure(StateControlError("agent type '\(id.type)' keeps no state: plugin \(type.plugin.name) offers no snapshot"))
        }
        switch pluginInstance(for: type) {
        case .failure(let failure): return .failure(failure)
        case .success(let instance): return snapshot(type, instance)
        }
    }

    /// Replaces the agent's state with `bytes`: a new instance restored from them, then
    /// checkpointed. `done` is called once the state is stored (or has failed).
    func replaceState(_ bytes: [UInt8], done: @escaping @Sendable (Result<Void, StateControlError>) -> Void) {
        guard let type = state.withLock({ $0.currentType }) else {
            return done(.failure(StateControlError("agent type '\(id.type)' is no longer served by this runtime")))
        }
        guard let restore = type.descriptor.pointee.restore, type.descriptor.pointee.snapshot != nil else {
            return done(.failure(StateControlError("agent type '\(id.type)' keeps no state: plugin \(type.plugin.name) offers no snapshot/restore")))
        }
        var revision: UInt64 = 0
        if let states = context.states {
            do throws(StateStoreError) {
                revision = try states.store.get(id)?.revision ?? 0
            } catch {
                return done(.failure(StateControlError("the state of agent \(id) was not replaced: \(error)")))
            }
        }
        let created: UnsafeMutableRawPointer?
        switch create(on: type) {
        case .failure(let failure): return done(.failure(failure))
        case .success(let pointer): created = pointer
        }
        let status = bytes.withUnsafeBufferPointer { restore(created, agentd_bytes(data: $0.baseAddress, length: $0.count)) }
        guard status == AGENTD_OK else {
            if let destroy = type.descriptor.pointee.destroy { destroy(created) }
            return done(.failure(StateControlError("plugin \(type.plugin.name) \(type.plugin.version) refused the state for agent \(id) with \(StatusText.name(status)); nothing was changed")))
        }
        discardInstance()
        type.plugin.instanceDidStart()
        state.withLock { state in
            state.instanceType = type
            state.instance = PluginInstance(pointer: created)
            state.carriedState = nil
            state.revision = revision
            state.lastStored = nil
            state.reportedFailure = false
        }
        checkpoint(type, force: true, then: done)
    }

    /// Forgets the agent's state: the instance is destroyed without a checkpoint and the
    /// stored state deleted.
    func forgetState() -> Result<Void, StateControlError> {
        discardInstance()
        state.withLock { state in
            state.carriedState = nil
            state.revision = 0
            state.lastStored = nil
            state.reportedFailure = false
        }
        guard let states = context.states else { return .success(()) }
        do throws(StateStoreError) {
            _ = try states.store.delete(id, ifRevision: nil)
            return .success(())
        } catch {
            return .failure(StateControlError("the stored state of agent \(id) was not deleted: \(error)"))
        }
    }

    /// Whether a new version of the type would take over this agent's state: the live
    /// instance's snapshot restored into a trial instance of `candidate` (then destroyed).
    /// Nil when it would, or when there is nothing to carry over; else why not.
    func trialRestore(into candidate: PluginAgentType) -> String? {
        let (old, instance) = state.withLock { ($0.instanceType, $0.instance) }
        guard let old, old.descriptor.pointee.snapshot != nil, let restore = candidate.descriptor.pointee.restore else {
            return nil
        }
        let bytes: [UInt8]
        switch snapshot(old, instance) {
        case .failure(let failure): return failure.message
        case .success(let taken): bytes = taken
        }
        let trial: UnsafeMutableRawPointer?
        switch create(on: candidate) {
        case .failure(let failure): return failure.message
        case .success(let pointer): trial = pointer
        }
        let status = bytes.withUnsafeBufferPointer { restore(trial, agentd_bytes(data: $0.baseAddress, length: $0.count)) }
        if let destroy = candidate.descriptor.pointee.destroy { destroy(trial) }
        guard status == AGENTD_OK else {
            return "its restore refused the live state (\(bytes.count) bytes) with \(StatusText.name(status))"
        }
        return nil
    }

    /// Retires the agent (a job the router queues when it is idle): a final checkpoint, then
    /// `destroy`, then out of the router's table — unless a message came meanwhile.
    func retire(from router: LocalRouter, reason: String) {
        let (type, busy) = state.withLock { ($0.instanceType, !$0.mailbox.isEmpty) }
        if busy { return }
        if let type, keepsState(type) {
            // A final checkpoint to write: the retirement is tried again once it is committed.
            let submitted = checkpoint(type, afterWrite: { [weak router] result in
                guard let router, case .success = result else { return }
                _ = self.enqueue { $0.retire(from: router, reason: reason) }
            })
            if submitted { return }
        }
        discardInstance()
        if router.remove(self) {
            context.logger.debug("agent retired", metadata: ["agent.id": "\(id)", "reason": "\(reason)"])
        }
    }

    /// Marks the agent retired if nothing waits for it (the router's lock is held). The
    /// worker running the retirement job is the agent's only runner.
    func markRetiredIfUnused() -> Bool {
        state.withLock { state in
            guard state.mailbox.isEmpty, state.jobs.isEmpty, state.instanceType == nil else { return false }
            state.phase = .retired
            return true
        }
    }

    // MARK: Versions

    /// Moves the plugin instance off a version that no longer serves this agent: snapshot
    /// (if the new version can restore), destroy. The next message creates the new instance.
    private func migrate() {
        let (old, target, made) = state.withLock { state -> (PluginAgentType?, PluginAgentType?, PluginInstance) in
            guard state.needsMigration else { return (nil, nil, PluginInstance()) }
            defer {
                state.instanceType = nil
                state.instance = PluginInstance()
            }
            return (state.instanceType, state.currentType, state.instance)
        }
        guard let old else { return }
        var carried: [UInt8]?
        if let target, target.descriptor.pointee.restore != nil, old.descriptor.pointee.snapshot != nil {
            switch snapshot(old, made) {
            case .success(let bytes): carried = bytes
            case .failure(let failure):
                context.logger.error("snapshot failed while moving the agent to the new version; it starts from the stored state, or afresh without a store", metadata: [
                    "agent.id": "\(id)", "plugin": "\(old.plugin.name)", "reason": "\(failure.message)",
                ])
            }
        }
        if let destroy = old.descriptor.pointee.destroy { destroy(made.pointer) }
        state.withLock { $0.carriedState = carried }
        holdState(carried?.count ?? 0)
        context.retirement.instanceDidEnd(old.plugin)
    }

    /// Destroys the plugin instance without a checkpoint (shutdown, a failed checkpoint, a
    /// state replaced or deleted, retirement after its final checkpoint).
    func discardInstance() {
        let (type, made) = state.withLock { state -> (PluginAgentType?, PluginInstance) in
            defer {
                state.instanceType = nil
                state.instance = PluginInstance()
                state.discard = false
                state.held = []
                state.lastStored = nil
            }
            return (state.instanceType, state.instance)
        }
        changed.store(false, ordering: .relaxed)
        guard let type else { return }
        holdState(0)
        if let destroy = type.descriptor.pointee.destroy { destroy(made.pointer) }
        context.retirement.instanceDidEnd(type.plugin)
    }
}

/// A 64-bit keyed digest (SipHash, seeded per process) of a snapshot and its length: equal
/// snapshots give equal digests; different ones the same digest with odds of about 2^-64.
struct StateDigest: Hashable {
    private let value: Int
    init(_ bytes: [UInt8]) {
        var hasher = Hasher()
        hasher.combine(bytes.count)
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
        value = hasher.finalize()
    }
}

/// Appends a snapshot's bytes to the `[UInt8]` the sink points at.
private let snapshotWriter: agentd_write_fn = { sink, bytes in
    guard let sink, let data = bytes.data, bytes.length > 0 else { return }
    sink.assumingMemoryBound(to: [UInt8].self).pointee.append(contentsOf: UnsafeBufferPointer(start: data, count: bytes.length))
}

extension agentd_crash_text {
    init(_ view: agentd_str) { self.init(data: view.data, length: view.length) }
}
