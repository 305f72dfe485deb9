// CounterAgent: an example C plugin whose agents keep their state. Written against agent_plugin.h
// alone, as an outside author would; copy it to start a plugin of your own.
//
// Plugin "counter-plugin" 1.0.0 offers one agent type, `counter`, subscribed to topic type
// `counter-adds`. Each agent (one per key) holds a count, kept by the runtime's state store:
// it survives the runtime stopping or being killed, and the agent being retired when idle.
//
//   RPC `Add` {"amount": N}        adds N (an integer, may be negative), then answers
//                                  `Count` {"count": <total>, "key": "<the agent's key>"}
//   RPC `Get` (any JSON payload)   answers `Count` without changing anything
//   event `Add` {"amount": N}      published to (counter-adds, K): agent K adds N
//
// The state is JSON, {"count": N}, so that `agentd state save` shows it as is. restore() refuses
// anything else — not JSON, other members, a count that is not an integer — with
// AGENTD_INVALID_ARGUMENT and a log line: the runtime then keeps the stored state and answers
// the agent's messages with an error until it is replaced or deleted (`agentd state load` /
// `agentd state delete`).
//
// Checkpoints: a handler that changed the count calls host->state_changed() (ABI 1.2) before it
// answers. The runtime then writes the snapshot to its store and sends the answer only once the
// write is committed: a caller that got `Count` back knows the addition is stored. `Get` does not
// call it, so reading costs no snapshot. On a runtime older than ABI 1.2 (its host table ends
// before state_changed) the plugin skips the call, and the runtime snapshots after every message
// instead, writing the snapshot when it differs from the stored one.

#include <agent_plugin.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Kept from the entry: every later call to the host needs them.
static const agentd_host_api *g_host;
static agentd_plugin_ref *g_self;

#include <agent_plugin_json.h>

// --- The agent ----------------------------------------------------------------------------------

typedef struct counter {
    agentd_agent_ref *agent;  // for log lines; valid until destroy()
    int64_t count;
} counter;

// Tells the runtime that the message being handled changed the agent's state (ABI 1.2: a
// plugin may call only the functions the runtime's table covers; an older runtime snapshots
// after every message instead).
static void state_changed(const agentd_message *m) {
    if (AGENTD_HOST_HAS(m->host, state_changed) && m->host->state_changed) m->host->state_changed(m->agent);
}

static void log_line(agentd_agent_ref *agent, agentd_log_level level, const char *text) {
    if (g_host) g_host->log(g_self, agent, level, agentd_cstr(text));
}

// Fails the message with `text` (for an RPC the caller's error; for an event the runtime logs it)
// and returns `status`.
static agentd_status fail_text(const agentd_message *m, agentd_status status, const char *text) {
    m->host->fail(m->call, status, agentd_cstr(text));
    return status;
}

// Answers `Count` {"count": N, "key": K}.
static agentd_status reply_count(const counter *self, const agentd_message *m) {
    char number[32];
    snprintf(number, sizeof number, "%" PRId64, self->count);
    json_buffer reply = {0};
    buffer_append_str(&reply, "{\"count\": ");
    buffer_append_str(&reply, number);
    buffer_append_str(&reply, ", \"key\": ");
    json_append_string(&reply, m->agent_key.data, m->agent_key.length);
    buffer_append_str(&reply, "}");
    return agentd_reply_json(m, "Count", &reply);
}

static agentd_status on_add(void *instance, const agentd_message *m) {
    counter *self = instance;
    json_scanner scanner;
    int64_t amount = 0;
    char why[256];
    switch (json_find_integer_member(&scanner, m->payload, "amount", &amount, NULL)) {
    case INTEGER_FOUND:
        break;
    case INTEGER_MISSING:
        return fail_text(m, AGENTD_INVALID_ARGUMENT, "counter: Add has no \"amount\" member (expected {\"amount\": <integer>})");
    case INTEGER_NOT_INTEGER:
        return fail_text(m, AGENTD_INVALID_ARGUMENT,
                         "counter: the \"amount\" of Add is not an integer within 64 bits (expected {\"amount\": <integer>})");
    case INTEGER_MALFORMED:
        snprintf(why, sizeof why, "counter: malformed JSON in Add: %s (at byte %zu); expected {\"amount\": <integer>}",
                 scanner.error, scanner.error_offset);
        return fail_text(m, AGENTD_INVALID_ARGUMENT, why);
    case INTEGER_NO_MEMORY:
        return fail_text(m, AGENTD_FAILED, "counter: out of memory");
    }
    int64_t total;
    if (__builtin_add_overflow(self->count, amount, &total)) {
        snprintf(why, sizeof why, "counter: adding %" PRId64 " to %" PRId64 " would leave 64 bits; nothing was added",
                 amount, self->count);
        return fail_text(m, AGENTD_INVALID_ARGUMENT, why);
    }
    self->count = total;
    state_changed(m);  // before the answer: the runtime checkpoints, then lets the answer go
    if (!m->is_rpc) return AGENTD_OK;
    return reply_count(self, m);
}

static agentd_status on_get(void *instance, const agentd_message *m) {
    if (!m->is_rpc) return AGENTD_OK;  // a Get event asks nothing
    return reply_count(instance, m);
}

static agentd_status counter_create(agentd_plugin_ref *plugin, const agentd_agent_type *type,
                                    agentd_agent_ref *agent, agentd_str key, void **instance) {
    (void)plugin;
    (void)type;
    (void)key;
    counter *self = calloc(1, sizeof *self);
    if (!self) return AGENTD_FAILED;
    self->agent = agent;
    *instance = self;
    return AGENTD_OK;
}

static void counter_destroy(void *instance) { free(instance); }

// Writes {"count": N}. Called between messages, never during a handler.
static agentd_status counter_snapshot(void *instance, agentd_write_fn write, void *sink) {
    const counter *self = instance;
    char state[48];
    int n = snprintf(state, sizeof state, "{\"count\": %" PRId64 "}", self->count);
    agentd_bytes bytes = {(const uint8_t *)state, (size_t)n};
    write(sink, bytes);
    return AGENTD_OK;
}

// Takes over {"count": N} (from the state store, or from the previous version on a hot reload).
static agentd_status counter_restore(void *instance, agentd_bytes state) {
    counter *self = instance;
    json_scanner scanner;
    int64_t count = 0;
    size_t members = 0;
    json_integer_result found = json_find_integer_member(&scanner, state, "count", &count, &members);
    if (found == INTEGER_FOUND && members == 1) {
        self->count = count;
        return AGENTD_OK;
    }
    const char *why = found == INTEGER_MALFORMED ? scanner.error
                      : found == INTEGER_FOUND  ? "it has members other than \"count\""
                      : found == INTEGER_MISSING ? "it has no \"count\" member"
                      : found == INTEGER_NOT_INTEGER ? "its \"count\" is not an integer within 64 bits"
                                                     : "out of memory";
    // The state as a JSON string, cut short: readable whatever bytes it holds.
    json_buffer excerpt = {0};
    json_append_string(&excerpt, state.data ? (const char *)state.data : "", state.length > 80 ? 80 : state.length);
    char line[400];
    snprintf(line, sizeof line, "counter: refusing a state that is not {\"count\": <integer>}: %s; the state (%zu bytes%s) is %s",
             why, state.length, state.length > 80 ? ", first 80 shown" : "", excerpt.out_of_memory ? "?" : excerpt.data);
    buffer_free(&excerpt);
    log_line(self->agent, AGENTD_LOG_ERROR, line);
    return found == INTEGER_NO_MEMORY ? AGENTD_FAILED : AGENTD_INVALID_ARGUMENT;
}

// --- The descriptor -------------------------------------------------------------------------------

static const agentd_handler counter_handlers[] = {
    {sizeof(agentd_handler), "Add", on_add},
    {sizeof(agentd_handler), "Get", on_get},
};

static const agentd_subscription counter_subscriptions[] = {
    {sizeof(agentd_subscription), AGENTD_SUBSCRIBE_TOPIC_TYPE, "counter-adds"},
};

static const agentd_agent_type counter_types[] = {{
    .size = sizeof(agentd_agent_type),
    .name = "counter",
    .description = "Keeps a count per key: Add {\"amount\": N} and Get answer Count {\"count\", \"key\"}",
    .subscriptions = counter_subscriptions,
    .subscription_count = sizeof counter_subscriptions / sizeof counter_subscriptions[0],
    .handlers = counter_handlers,
    .handler_count = sizeof counter_handlers / sizeof counter_handlers[0],
    .create = counter_create,
    .destroy = counter_destroy,
    .snapshot = counter_snapshot,
    .restore = counter_restore,
    .context = NULL,
}};

static const agentd_plugin counter_plugin = {
    .size = sizeof(agentd_plugin),
    .abi_major = AGENTD_ABI_MAJOR,
    .abi_minor = AGENTD_ABI_MINOR,
    .name = "counter-plugin",
    .version = "1.0.0",
    .agent_types = counter_types,
    .agent_type_count = sizeof counter_types / sizeof counter_types[0],
    .unload = NULL,
};

AGENTD_EXPORT const agentd_plugin *agentd_plugin_entry(const agentd_host_api *host, agentd_plugin_ref *self) {
    g_host = host;
    g_self = self;
    return &counter_plugin;
}
