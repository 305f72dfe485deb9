// EchoAgent: the example C plugin. Written against agent_plugin.h alone, as an outside author would.
//
// Plugin "echo-plugin" 1.0.0 offers one agent type, `echo`, with no subscriptions:
//
//   RPC `Echo`, content type application/json, payload {"text": "<string>"}
//     -> reply `Echo`, application/json, {"text": "<the same string>"}
//
// The payload must be a JSON object whose top-level member "text" is a string (other members are
// allowed and ignored; if "text" appears twice the last one wins, as in Python's json module).
// The string is decoded (escapes, surrogate pairs) and re-encoded, so the reply is canonical
// JSON whatever escaping the request used. A payload that is not valid JSON (RFC 8259, UTF-8),
// is not an object, has no "text" member or a non-string one, or a content type other than
// application/json, is answered with fail(AGENTD_INVALID_ARGUMENT, <why>).
//
// Each instance counts the Echo RPCs it answered; snapshot/restore carry that counter over a hot
// reload (state: the byte 1, then the count as 8 bytes little-endian). create() logs one line.

#include <agent_plugin.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Kept from the entry: every later call to the host needs them.
static const agentd_host_api *g_host;
static agentd_plugin_ref *g_self;

#include <agent_plugin_json.h>

// --- The agent ----------------------------------------------------------------------------------

typedef struct echo_instance {
    uint64_t echoes;  // Echo RPCs answered by this instance (carried over hot reloads)
} echo_instance;

enum { ECHO_STATE_VERSION = 1, ECHO_STATE_SIZE = 9 };

static agentd_str str_of(const char *data, size_t length) {
    agentd_str s = {data, length};
    return s;
}

static bool is_json_content_type(agentd_str ct) {
    static const char json[] = "application/json";
    size_t n = sizeof json - 1;
    if (ct.length < n) return false;
    for (size_t i = 0; i < n; i++) {
        char c = ct.data[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != json[i]) return false;
    }
    // Allow media type parameters: "application/json; charset=utf-8".
    return ct.length == n || ct.data[n] == ';' || ct.data[n] == ' ';
}

// Answers the RPC with an error and returns that error status (the runtime sees both: the answer
// the caller gets, and the handler's outcome for its log).
static agentd_status fail_text(const agentd_message *m, agentd_status status, const char *text) {
    m->host->fail(m->call, status, agentd_cstr(text));
    return status;
}

static agentd_status on_echo(void *instance, const agentd_message *m) {
    echo_instance *self = instance;
    char why[256];

    if (!m->is_rpc) {
        // An Echo event (no subscriptions, but someone may publish to an agent's direct topic):
        // nothing to answer.
        return AGENTD_OK;
    }
    if (!is_json_content_type(m->content_type)) {
        snprintf(why, sizeof why, "echo: expected content type application/json, got '%.*s'",
                 (int)(m->content_type.length > 100 ? 100 : m->content_type.length),
                 m->content_type.data ? m->content_type.data : "");
        return fail_text(m, AGENTD_INVALID_ARGUMENT, why);
    }

    json_scanner scanner;
    json_buffer text;
    switch (json_find_string_member(&scanner, m->payload, "text", &text)) {
    case MEMBER_FOUND:
        break;
    case MEMBER_MISSING:
        return fail_text(m, AGENTD_INVALID_ARGUMENT, "echo: the payload has no \"text\" member (expected {\"text\": \"...\"})");
    case MEMBER_NOT_STRING:
        return fail_text(m, AGENTD_INVALID_ARGUMENT, "echo: the \"text\" member is not a string (expected {\"text\": \"...\"})");
    case MEMBER_MALFORMED:
        snprintf(why, sizeof why, "echo: malformed JSON payload: %s (at byte %zu); expected {\"text\": \"...\"}", scanner.error,
                 scanner.error_offset);
        return fail_text(m, AGENTD_INVALID_ARGUMENT, why);
    case MEMBER_NO_MEMORY:
        return fail_text(m, AGENTD_FAILED, "echo: out of memory");
    }

    json_buffer reply = {0};
    buffer_append_str(&reply, "{\"text\": ");
    json_append_string(&reply, text.data, text.length);
    buffer_append_str(&reply, "}");
    buffer_free(&text);
    agentd_status status = agentd_reply_json(m, "Echo", &reply);
    if (status == AGENTD_OK && self) self->echoes++;
    return status;
}

static agentd_status echo_create(agentd_plugin_ref *plugin, const agentd_agent_type *type,
                                 agentd_agent_ref *agent, agentd_str key, void **instance) {
    (void)type;
    echo_instance *self = calloc(1, sizeof *self);
    if (!self) return AGENTD_FAILED;
    *instance = self;
    char line[200];
    int n = snprintf(line, sizeof line, "echo: created the instance for key '%.*s'",
                     (int)(key.length > 120 ? 120 : key.length), key.data ? key.data : "");
    if (g_host && n > 0)
        g_host->log(plugin, agent, AGENTD_LOG_INFO, str_of(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1));
    return AGENTD_OK;
}

static void echo_destroy(void *instance) { free(instance); }

static agentd_status echo_snapshot(void *instance, agentd_write_fn write, void *sink) {
    const echo_instance *self = instance;
    uint8_t state[ECHO_STATE_SIZE];
    state[0] = ECHO_STATE_VERSION;
    for (int i = 0; i < 8; i++) state[1 + i] = (uint8_t)(self->echoes >> (8 * i));
    agentd_bytes bytes = {state, sizeof state};
    write(sink, bytes);
    return AGENTD_OK;
}

static agentd_status echo_restore(void *instance, agentd_bytes state) {
    echo_instance *self = instance;
    if (state.length != ECHO_STATE_SIZE || state.data[0] != ECHO_STATE_VERSION) {
        if (g_host)
            g_host->log(g_self, NULL, AGENTD_LOG_WARNING,
                        agentd_cstr("echo: refusing a state that is not 9 bytes starting with version 1"));
        return AGENTD_INVALID_ARGUMENT;
    }
    uint64_t echoes = 0;
    for (int i = 0; i < 8; i++) echoes |= (uint64_t)state.data[1 + i] << (8 * i);
    self->echoes = echoes;
    return AGENTD_OK;
}

static const agentd_handler echo_handlers[] = {
    {sizeof(agentd_handler), "Echo", on_echo},
};

static const agentd_agent_type echo_types[] = {{
    .size = sizeof(agentd_agent_type),
    .name = "echo",
    .description = "Answers Echo {\"text\": ...} with the same text",
    .subscriptions = NULL,
    .subscription_count = 0,
    .handlers = echo_handlers,
    .handler_count = sizeof echo_handlers / sizeof echo_handlers[0],
    .create = echo_create,
    .destroy = echo_destroy,
    .snapshot = echo_snapshot,
    .restore = echo_restore,
    .context = NULL,
}};

static const agentd_plugin echo_plugin = {
    .size = sizeof(agentd_plugin),
    .abi_major = AGENTD_ABI_MAJOR,
    .abi_minor = AGENTD_ABI_MINOR,
    .name = "echo-plugin",
    .version = "1.0.0",
    .agent_types = echo_types,
    .agent_type_count = sizeof echo_types / sizeof echo_types[0],
    .unload = NULL,
};

AGENTD_EXPORT const agentd_plugin *agentd_plugin_entry(const agentd_host_api *host, agentd_plugin_ref *self) {
    g_host = host;
    g_self = self;
    return &echo_plugin;
}
