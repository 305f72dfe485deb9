/*
 * agent_plugin.h — the C ABI between agentd's runtime and agent plugins.
 *
 * This is the one file a plugin author reads. A plugin is a shared library (.so) that
 * exports one function, `agentd_plugin_entry`, returning a descriptor of its agent types.
 * The runtime (`agentd run`) loads every plugin in its plugin directory, registers the agent
 * types and their subscriptions with the host, and calls the types' message handlers with
 * the events and RPCs addressed to their agents. Agents of other workers — AutoGen's Python
 * agents included — talk to them through the host.
 *
 * ---------------------------------------------------------------------------------------------
 * A minimal plugin
 *
 *     #include <agent_plugin.h>
 *
 *     static agentd_status on_echo(void *instance, const agentd_message *m) {
 *         // Answer the RPC with the same JSON it carried.
 *         return m->host->reply(m->call, m->message_type, m->content_type, m->payload);
 *     }
 *     static const agentd_handler handlers[] = {
 *         { sizeof(agentd_handler), "Echo", on_echo },
 *     };
 *     static const agentd_agent_type types[] = {{
 *         .size = sizeof(agentd_agent_type), .name = "echo",
 *         .handlers = handlers, .handler_count = 1,
 *     }};
 *     static const agentd_plugin plugin = {
 *         .size = sizeof(agentd_plugin), .abi_major = AGENTD_ABI_MAJOR,
 *         .abi_minor = AGENTD_ABI_MINOR, .name = "echo-plugin", .version = "1.0.0",
 *         .agent_types = types, .agent_type_count = 1,
 *     };
 *     AGENTD_EXPORT const agentd_plugin *agentd_plugin_entry(const agentd_host_api *host,
 *                                                            agentd_plugin_ref *self) {
 *         (void)host; (void)self;
 *         return &plugin;
 *     }
 *
 * Build: cc -shared -fPIC -I<dir of this header> -o libecho.so echo.c
 *
 * ---------------------------------------------------------------------------------------------
 * Versioning
 *
 * AGENTD_ABI_MAJOR changes only when an existing struct or function changes meaning; the
 * runtime refuses a plugin built for another major. AGENTD_ABI_MINOR grows when fields or
 * functions are added at the END of a struct; the runtime accepts any older minor.
 * Every struct begins with `size`: set it to sizeof(the struct) as your header declares it.
 * The runtime reads only the fields a struct's `size` covers, and a plugin must read only the
 * fields the runtime's `size` covers (check `host->size` before using a function added in a
 * later minor).
 *
 * Memory and ownership
 *
 * - Strings cross as `agentd_str` (pointer + length, UTF-8, NOT NUL-terminated) and bytes as
 *   `agentd_bytes`. Both are BORROWED for the duration of the call that passes them: copy what
 *   you keep. The same holds in both directions: the runtime copies whatever you pass it
 *   before the function returns, so you may free it afterwards.
 * - The descriptor returned by the entry (and everything it points to: names, handler tables,
 *   subscriptions) must stay valid and unchanged until the plugin is unloaded. Static const
 *   data is the simple way.
 * - The runtime never frees plugin memory and never asks the plugin to free runtime memory.
 *
 * Errors
 *
 * Functions return an `agentd_status`. Nothing may throw, longjmp or abort across the boundary:
 * a C++ plugin must catch everything in its handlers.
 *
 * Threading
 *
 * - The handlers of ONE agent instance never run concurrently: the runtime delivers one
 *   message at a time per agent id (its mailbox), in arrival order.
 * - Different instances (of the same or other types) may run in parallel on runtime threads.
 * - Every function of `agentd_host_api` is thread-safe and may be called from any thread,
 *   including threads the plugin creates, at any time while the plugin is loaded.
 * - A handler usually runs on the runtime thread that read its message from the host (no
 *   hand-off between the socket and the handler). If a handler keeps that thread for more than
 *   about 5 ms, another runtime thread takes over the reading, so a slow or blocking handler
 *   delays the others once by 5–10 ms, and does not stop them. One thread always stays free
 *   to read: at most `workers` handlers (the runtime's setting) run at once; further messages
 *   wait in their agents' mailboxes for a free thread — except while handlers do not return:
 *   a thread kept by one handler for more than 0.5 s while messages wait gets another started
 *   in its place, up to `max_workers`.
 * - A handler that has not returned after `handler_timeout` has its message answered with an
 *   error (its own later reply or fail then gets AGENTD_MISUSE), and RPCs to its agent are
 *   refused until it returns. Once every thread up to `max_workers` is held that way, `agentd
 *   run` logs which plugin, agent type and message type hold them and exits with status 75 for
 *   its supervisor to restart it. A plugin with a handler still running is never unloaded.
 * - A handler must not block for long: it occupies a runtime thread. Work that waits (a model,
 *   a tool, a network call) returns AGENTD_PENDING and answers later with `reply` / `fail`
 *   from any thread (possibly before the handler has returned: the answer may race the
 *   AGENTD_PENDING return). While a message is pending, the agent's next message is not
 *   delivered (one message at a time per agent). An event handler may return AGENTD_PENDING
 *   too, and finishes later with `reply` (its payload is ignored) or `fail` (logged).
 * - `send` completions run on a runtime thread that also reads from the host: return quickly.
 *   A completion may run BEFORE send() returns (the request is registered before it is
 *   written, so a fast answer, or a timeout, can arrive first, on another thread): set up
 *   whatever the completion reads before calling send(), and do not touch `context` after a
 *   send() that returned AGENTD_OK unless the completion cannot have freed it.
 * - create, destroy, snapshot and restore run on runtime threads, never concurrently with a
 *   handler of the same instance nor with each other for it: create on the thread that
 *   delivers the agent's first message (restore right after it, on the same thread); snapshot
 *   between two messages, on the runtime thread that finished the agent's message (or, when
 *   the handler answered later, the thread its answer came from), or on the thread serving a
 *   state request (`agentd state save`) or retiring the agent; destroy on whichever runtime
 *   thread retires the agent, unloads the plugin or moves
 *   the agent to a new version (a hot reload also creates, restores and destroys a trial
 *   instance of the new version on the reloading thread, before the swap). A plugin's
 *   `unload` runs on the thread that unloads it (the reloader, or the one stopping the
 *   runtime), after everything else. None of them runs on a thread the plugin created.
 * - `restore` failing: see agentd_agent_type.restore (the stored state is kept, the agent's
 *   messages are answered with an error; at a hot reload the new version is refused).
 *
 * Sizes
 *
 * A message (payload plus the envelope's ids, type names and metadata) must fit the host's
 * `[host] max_message_bytes` (4 MiB by default, as in AutoGen). The runtime does not check the
 * size before queueing: publish() and send() of a larger payload return AGENTD_OK, and then the
 * host refuses it — a publish is dropped (not delivered to anyone, logged by the host), and a
 * send() completes with an error response saying the message is too large. An answer over the
 * limit is refused the same way, and its caller receives an error instead.
 *
 * Enum fields
 *
 * Enum-typed fields (agentd_status, agentd_log_level, agentd_subscription_kind) are C enums:
 * int-sized (4 bytes) with every compiler on the platforms agentd supports, values 0..127.
 * Fields added in later minors use fixed-width integer types (uint32_t `flags`), and so will
 * every new one; the existing enum fields keep their type so the layout does not change.
 * ---------------------------------------------------------------------------------------------
 */
#ifndef AGENTD_AGENT_PLUGIN_H
#define AGENTD_AGENT_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AGENTD_ABI_MAJOR 1
#define AGENTD_ABI_MINOR 3

/** The symbol every plugin exports (see agentd_plugin_entry_fn). */
#define AGENTD_PLUGIN_ENTRY_SYMBOL "agentd_plugin_entry"

#if defined(__GNUC__) || defined(__clang__)
#define AGENTD_EXPORT __attribute__((visibility("default")))
#else
#define AGENTD_EXPORT
#endif

/** A borrowed UTF-8 string: `length` bytes at `data`, not NUL-terminated. */
typedef struct agentd_str {
    const char *data;
    size_t length;
} agentd_str;

/** Borrowed bytes. */
typedef struct agentd_bytes {
    const uint8_t *data;
    size_t length;
} agentd_bytes;

/** Outcome of a call across the boundary. */
typedef enum agentd_status {
    AGENTD_OK = 0,
    /** Returned by a handler: the RPC will be answered later with reply() or fail(). */
    AGENTD_PENDING = 1,
    /** The input was not acceptable (for example malformed JSON or protobuf in a payload). */
    AGENTD_INVALID_ARGUMENT = 2,
    /** No handler for this message type. */
    AGENTD_UNKNOWN_MESSAGE_TYPE = 3,
    /** The target (agent type, call, setting) does not exist. */
    AGENTD_NOT_FOUND = 4,
    /** Not possible now (shutting down, no connection to the host). */
    AGENTD_UNAVAILABLE = 5,
    /** The answer did not come in time. */
    AGENTD_TIMEOUT = 6,
    /** The agent or plugin failed; the message says why. */
    AGENTD_FAILED = 7,
    /** The call was made wrongly (reply twice, a null where a value is required). */
    AGENTD_MISUSE = 8,
} agentd_status;

typedef enum agentd_log_level {
    AGENTD_LOG_DEBUG = 0,
    AGENTD_LOG_INFO = 1,
    AGENTD_LOG_WARNING = 2,
    AGENTD_LOG_ERROR = 3,
} agentd_log_level;

/** Opaque: the loaded plugin, as the runtime knows it. Valid until the plugin is unloaded. */
typedef struct agentd_plugin_ref agentd_plugin_ref;

/** Opaque: one agent instance, as the runtime knows it. Valid from create() until destroy()
 *  returns; use it to publish or send as this agent, from any thread. */
typedef struct agentd_agent_ref agentd_agent_ref;

/** Opaque: one message being handled. An RPC is answered exactly once, with reply() or
 *  fail(); the token is invalid afterwards (and after the handler returns anything but
 *  AGENTD_PENDING). */
typedef struct agentd_call agentd_call;

struct agentd_host_api;

/** What a handler receives: flat views of one event or RPC, all borrowed for the call. */
typedef struct agentd_message {
    uint32_t size;
    /** The host functions (the same table the entry received). */
    const struct agentd_host_api *host;
    /** The agent the message is for (this instance). */
    agentd_agent_ref *agent;
    agentd_str agent_type;
    agentd_str agent_key;
    /** The sending agent; empty strings when the sender is not an agent. */
    agentd_str sender_type;
    agentd_str sender_key;
    /** Events: the topic it was published to. Empty for RPCs. */
    agentd_str topic_type;
    agentd_str topic_source;
    /** The event's id, or the RPC's request id. */
    agentd_str message_id;
    /** The payload's type name: AutoGen's data_type / dataschema (for JSON, the bare class
     *  name such as "Echo"; for protobuf, the full message name such as "pkg.Sample"). */
    agentd_str message_type;
    /** "application/json" or "application/x-protobuf". */
    agentd_str content_type;
    /** The payload exactly as it came: JSON text, or protobuf bytes of `message_type`. */
    agentd_bytes payload;
    /** Non-zero for an RPC (answer it), zero for an event. */
    int32_t is_rpc;
    /** The token to answer an RPC with (reply / fail), or to finish a pending event. */
    agentd_call *call;
    /* ---- ABI 1.3 (read only when `size` covers them) ---- */
    /**
     * W3C trace context of the span the runtime started for this handler, when the message
     * carried one (AutoGen puts `traceparent`/`tracestate` in an RPC's metadata and reads them
     * from an event's attributes): the message's trace id, a new span id, the message's flags.
     * Empty when the message carried none. Everything the handler sends while it runs (publish,
     * send, its answer) carries this context, so a trace continues through the agent; a plugin
     * that records spans itself uses it as its handler span.
     */
    agentd_str traceparent;
    agentd_str tracestate;
} agentd_message;

/**
 * Handles one message for one agent instance.
 *
 * For an RPC: answer with host->reply() or host->fail() and return (the status you return
 * after answering is only logged; the runtime never answers twice), or return AGENTD_PENDING
 * and answer later from any thread. Returning AGENTD_OK without having answered sends an
 * empty answer (no payload, empty message type); returning an error status without having
 * called fail() sends an error answer naming the status.
 * For an event: return AGENTD_OK, or call host->fail() with the reason (it is logged) and
 * return the error status, or return AGENTD_PENDING and finish later with reply() / fail().
 *
 * A token stays answerable until it is answered: after that, or for a token the runtime
 * never issued, reply() and fail() return AGENTD_MISUSE and do nothing (never a crash).
 * reply() and fail() may be called from anywhere, including a send() completion.
 */
typedef agentd_status (*agentd_handler_fn)(void *instance, const agentd_message *message);

/** One entry of an agent type's handler table. */
typedef struct agentd_handler {
    uint32_t size;
    /** The message type it handles (see agentd_message.message_type); "*" handles any type
     *  that has no handler of its own. NUL-terminated. */
    const char *message_type;
    agentd_handler_fn handle;
} agentd_handler;

typedef enum agentd_subscription_kind {
    /** Topics whose type equals `topic`. */
    AGENTD_SUBSCRIBE_TOPIC_TYPE = 0,
    /** Topics whose type starts with `topic`. */
    AGENTD_SUBSCRIBE_TOPIC_PREFIX = 1,
} agentd_subscription_kind;

/** A subscription of an agent type: a matching topic (type, source) is delivered to agent
 *  (this type, key = source). */
typedef struct agentd_subscription {
    uint32_t size;
    agentd_subscription_kind kind;
    /** NUL-terminated. */
    const char *topic;
} agentd_subscription;

/** Receives the bytes of a snapshot (may be called several times; the runtime appends). */
typedef void (*agentd_write_fn)(void *sink, agentd_bytes bytes);

/** An agent type a plugin offers. */
typedef struct agentd_agent_type {
    uint32_t size;
    /** AutoGen's rule: letters, digits, '_', '-', '.'. Unique across all loaded plugins.
     *  NUL-terminated. */
    const char *name;
    /** A one-line description for logs and `agentd plugin check`. May be NULL. */
    const char *description;
    const agentd_subscription *subscriptions;
    size_t subscription_count;
    const agentd_handler *handlers;
    size_t handler_count;
    /**
     * Creates the instance for `agent` (called lazily, on its first message; key borrowed).
     * `type` is this very struct (so one create function can serve several types; see
     * `context`). Store your state in *instance (may stay NULL). Optional: without it
     * instances are NULL.
     */
    agentd_status (*create)(agentd_plugin_ref *plugin, const struct agentd_agent_type *type,
                            agentd_agent_ref *agent, agentd_str key, void **instance);
    /** Destroys an instance: at unload, or when the runtime retires an idle or least recently
     *  used agent (after its final checkpoint, when the type has snapshot/restore). Optional. */
    void (*destroy)(void *instance);
    /** Optional (with restore): writes the instance's state. Called between messages, never
     *  during a handler. The runtime keeps what it writes in its state store (a checkpoint,
     *  after each message that changed the state; see state_changed), and hands it to the
     *  next version of the plugin at a hot reload. Write JSON where you can: the state
     *  commands (`agentd state save`) then show it as it is. */
    agentd_status (*snapshot)(void *instance, agentd_write_fn write, void *sink);
    /** Optional (with snapshot): takes over state a snapshot wrote — called right after
     *  create() when the agent is activated with a stored state (after a restart or a
     *  retirement), when a new version takes over a live agent, and for `agentd state load`.
     *  Refuse a state you cannot read with AGENTD_INVALID_ARGUMENT (log why): the stored state
     *  is then left untouched and the agent's messages are answered with an error until an
     *  operator loads a state it accepts or deletes it; a new plugin version whose restore
     *  refuses a live agent's state is not put in service. */
    agentd_status (*restore)(void *instance, agentd_bytes state);
    /** Anything the plugin wants to find again from `type` in create(); the runtime never
     *  reads it. May be NULL. */
    const void *context;
    /* ---- ABI 1.3 ---- */
    /** AGENTD_AGENT_TYPE_* bits (0: none). Read only when `size` covers it. */
    uint32_t flags;
} agentd_agent_type;

/**
 * agentd_agent_type.flags: the type is SHARED (ABI 1.3). Several runtimes may serve it at once;
 * the host places each key on one of them (rendezvous hashing over the runtimes serving it) and
 * moves keys when one joins or leaves: the runtime a key leaves checkpoints and destroys its
 * instance, and the one it comes to activates it from the state store, so give the type
 * snapshot/restore and give the runtimes one store (the same `[state] path`). A message for a
 * key in transit during a move is handled by the new owner or answered with an error; a
 * checkpoint written from a stale instance is refused by the store (revision fencing), and that
 * message's answer is an error. `[plugin.NAME] shared = true | false` overrides the flag for
 * every type of the plugin. AutoGen's Python workers cannot serve a shared type (they register
 * their types the usual way: one owner).
 */
#define AGENTD_AGENT_TYPE_SHARED 1u

/** What the entry returns. */
typedef struct agentd_plugin {
    uint32_t size;
    /** Set to AGENTD_ABI_MAJOR / AGENTD_ABI_MINOR. */
    uint16_t abi_major;
    uint16_t abi_minor;
    /** NUL-terminated. */
    const char *name;
    const char *version;
    const agentd_agent_type *agent_types;
    size_t agent_type_count;
    /** Optional: called once before the plugin is unloaded, after every instance has been
     *  destroyed, every call answered and no handler runs any more. A plugin that runs threads
     *  of its own must stop and join them here: its code is unmapped right after this
     *  returns (a thread still returning from reply() would crash the process). */
    void (*unload)(void);
} agentd_plugin;

/** An RPC's answer, as a send() completion receives it (borrowed for the callback). */
typedef struct agentd_response {
    uint32_t size;
    /** AGENTD_OK with a payload, or an error status with `error` saying why. */
    agentd_status status;
    agentd_str error;
    agentd_str message_type;
    agentd_str content_type;
    agentd_bytes payload;
} agentd_response;

/** Called exactly once with the answer to a send(), on a runtime thread: with the agent's
 *  answer, or with an error when none can come (AGENTD_TIMEOUT after the runtime's
 *  rpc_timeout, AGENTD_UNAVAILABLE when the connection to the host closes or the runtime
 *  shuts down). Every outstanding completion is called before the plugin is unloaded. */
typedef void (*agentd_response_fn)(void *context, const agentd_response *response);

/** Functions the runtime offers plugins. All are thread-safe. */
typedef struct agentd_host_api {
    uint32_t size;
    uint16_t abi_major;
    uint16_t abi_minor;

    /** Publishes an event to topic (topic_type, topic_source) as agent `from`. The agent itself
     *  does not receive its own publish. To publish with no sending agent, use
     *  plugin_publish (ABI 1.1): `from` = NULL is ABI 1.0's way, which names no runtime, so
     *  it works only where the process runs one runtime (elsewhere it returns AGENTD_MISUSE).
     *  Returns AGENTD_UNAVAILABLE
     *  (nothing queued) when the host is unreachable and the reconnection buffer is full, or
     *  when 10,000 publishes (64 MiB) already wait to be written to a host that reads slower
     *  than this runtime publishes: publish again later. */
    agentd_status (*publish)(agentd_agent_ref *from, agentd_str topic_type, agentd_str topic_source,
                             agentd_str message_type, agentd_str content_type, agentd_bytes payload);

    /** Sends an RPC to agent (target_type, target_key) as agent `from`. To send with no
     *  sending agent, use plugin_send (ABI 1.1); `from` = NULL (ABI 1.0) is found by the
     *  plugin `on_response` belongs to. `on_response` is called exactly once, with the answer or an error (unknown agent
     *  type, timeout, disconnect). Returns AGENTD_OK when the request is on its way; any other
     *  status means nothing was sent and `on_response` is never called. */
    agentd_status (*send)(agentd_agent_ref *from, agentd_str target_type, agentd_str target_key,
                          agentd_str message_type, agentd_str content_type, agentd_bytes payload,
                          agentd_response_fn on_response, void *context);

    /** Answers an RPC. */
    agentd_status (*reply)(agentd_call *call, agentd_str message_type, agentd_str content_type,
                           agentd_bytes payload);

    /** Answers an RPC with an error; `message` is what the caller sees. For an event, finishes
     *  a pending one as failed (`message` is logged).
     *  Returns `status` itself — not AGENTD_OK — when the answer is taken, so that a handler can
     *  `return host->fail(m->call, AGENTD_INVALID_ARGUMENT, why);`, and AGENTD_MISUSE (nothing
     *  done) for a call already answered or never issued. So "taken" is: the return value
     *  equals the `status` passed. */
    agentd_status (*fail)(agentd_call *call, agentd_status status, agentd_str message);

    /** Writes a line to the runtime's log, tagged with the plugin (and agent, if not NULL). */
    void (*log)(agentd_plugin_ref *plugin, agentd_agent_ref *agent, agentd_log_level level,
                agentd_str message);

    /** Reads a setting from the plugin's section of the runtime's INI file
     *  ([plugin.NAME], NAME being the plugin's name). On AGENTD_OK *value is borrowed until
     *  the plugin is unloaded; AGENTD_NOT_FOUND if the key is absent. The plugin's name is
     *  known only once its entry has returned the descriptor: during the entry this answers
     *  AGENTD_UNAVAILABLE (read settings in create() or in a handler). */
    agentd_status (*setting)(agentd_plugin_ref *plugin, agentd_str key, agentd_str *value);

    /* ---- ABI 1.1: present when host->size covers them (check before use) ---- */

    /** Publishes as the plugin itself, with no sending agent (the event's sender is "unknown",
     *  as AutoGen writes it): `plugin` is the reference the entry received. Otherwise as
     *  publish(). Usable from any thread once the entry has returned; during the entry, and
     *  where plugins are only checked (`agentd plugin check`), AGENTD_UNAVAILABLE. */
    agentd_status (*plugin_publish)(agentd_plugin_ref *plugin, agentd_str topic_type, agentd_str topic_source,
                                    agentd_str message_type, agentd_str content_type, agentd_bytes payload);

    /** Sends an RPC as the plugin itself, with no sending agent. Otherwise as send(): on
     *  AGENTD_OK, `on_response` is called exactly once; the plugin stays loaded until then. */
    agentd_status (*plugin_send)(agentd_plugin_ref *plugin, agentd_str target_type, agentd_str target_key,
                                 agentd_str message_type, agentd_str content_type, agentd_bytes payload,
                                 agentd_response_fn on_response, void *context);

    /* ---- ABI 1.2: present when host->size covers them (check before use) ---- */

    /** Says that the message being handled by `agent` changed the agent's state, so the
     *  runtime checkpoints it (snapshot() into the state store) once the handler is done: an
     *  RPC's answer goes out only after that checkpoint is committed; an event's checkpoint may
     *  be shared with the messages queued behind it (at most 64; the agent's last message
     *  before it goes idle is always checkpointed). Call it from the handler, or before
     *  reply()/fail() of a pending call. Only types with both snapshot() and restore() keep
     *  state; for others it returns AGENTD_OK and does nothing.
     *
     *  Until an agent type has called it once, the runtime cannot tell which messages change
     *  the state: it takes a snapshot after every message and writes it when its bytes differ
     *  from the last one stored. After the first call it trusts the type: a message during
     *  which state_changed() was not called is not checkpointed, so call it every time.
     *  Check AGENTD_HOST_HAS(host, state_changed) first (older runtimes lack it, and then
     *  simply snapshot after every message). */
    agentd_status (*state_changed)(agentd_agent_ref *agent);
} agentd_host_api;

/**
 * The entry every plugin exports as `agentd_plugin_entry`. Called once per load, before
 * anything else. Keep `host` and `self` for later calls. Return the descriptor, or NULL if
 * the plugin cannot start (log why first with host->log): the runtime then refuses it.
 */
typedef const agentd_plugin *(*agentd_plugin_entry_fn)(const agentd_host_api *host,
                                                         agentd_plugin_ref *self);

/** Whether the runtime's host API table has `field` (a function added in a later minor),
 *  e.g. `if (AGENTD_HOST_HAS(host, state_changed)) host->state_changed(m->agent);` */
#define AGENTD_HOST_HAS(host, field) \
    ((host)->size >= offsetof(agentd_host_api, field) + sizeof((host)->field))

/** Convenience: an agentd_str from a NUL-terminated string. */
static inline agentd_str agentd_cstr(const char *text) {
    agentd_str s;
    size_t n = 0;
    if (text) {
        while (text[n]) n++;
    }
    s.data = text;
    s.length = n;
    return s;
}

#ifdef __cplusplus
}
#endif

#endif /* AGENTD_AGENT_PLUGIN_H */
