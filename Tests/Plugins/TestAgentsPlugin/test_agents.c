// TestAgentsPlugin: agent types for the runtime's tests. Plugin "test-agents" 1.0.0.
//
// Every JSON payload below is content type application/json; a request payload that is not a
// JSON object with the named string members is refused with fail(AGENTD_INVALID_ARGUMENT, why).
//
//   failing      RPC `Boom` -> fail(AGENTD_FAILED, "boom: the handler failed on purpose"),
//                returns AGENTD_FAILED. (An event `Boom` just returns AGENTD_FAILED.)
//   silent-fail  any message type ("*") -> returns AGENTD_FAILED without calling fail().
//   none         any message type ("*") -> returns AGENTD_OK without replying (AutoGen's None).
//   deferred     RPC `Later` -> returns AGENTD_PENDING; a plugin thread replies ~50 ms later with
//                `Done` {"done": true}. Each instance counts its handlers in flight (from the
//                handler's start until just before the reply) with an atomic; once it has seen two
//                at the same time, that call and every later one on the instance fail with
//                AGENTD_FAILED "concurrent handlers: ...".
//   counter      subscribed to topic type "count" (type subscription) and topic prefix
//                "count-prefix:" (prefix subscription). Any event, whatever its message type,
//                adds 1 to the instance's counter. RPC `Get` -> `Count`
//                {"count": N, "key": "<agent key>"}; any other RPC type -> fail
//                AGENTD_UNKNOWN_MESSAGE_TYPE. snapshot/restore carry the counter (state: the byte
//                1, then the count as 8 bytes little-endian).
//   relay        RPC `Relay` {"to_type": T, "to_key": K, "text": X} -> host->send(`Echo`
//                {"text": X}) to agent T/K as this agent, returns AGENTD_PENDING; the send
//                completion replies to the original call with the answer as it came (message type,
//                content type, payload), or fails it with the answer's status and error (when the
//                error text is empty: "relay: T/K answered with status N"). If send() itself
//                refuses, the call fails at once with send's status.
//   tracer       any RPC ("*") -> `Trace` {"traceparent": P, "tracestate": S}: the W3C trace
//                context the runtime gave the handler (ABI 1.3; empty strings when none).
//   publisher    RPC `Publish` {"topic": T, "source": S, "text": X} -> host->publish(`Note`
//                {"text": X}) to topic (T, S) as this agent, then reply `Published` {"ok": true};
//                if publish refuses: fail with its status.
//                RPC `PublishAsPlugin` (same payload) -> the same through plugin_publish (ABI 1.1:
//                the plugin itself publishes, no sender); RPC `PublishAsNobody` -> the same through
//                publish(NULL, ...) (ABI 1.0's way to publish without a sender).
//   settings     RPC `Setting` {"key": K} -> host->setting(K): reply `SettingValue`
//                {"value": V}, or fail AGENTD_NOT_FOUND "settings: no setting 'K' in
//                [plugin.test-agents]" (another status: fail with it).
//   blocker      RPC `Block` {"ms": N} (N optional, default 10000) -> publishes `Blocking` {} to
//                topic (blocker-started, <agent key>) as this agent, then blocks in the handler
//                itself (on the runtime's thread) until the gate opens or N ms pass, then replies
//                `Unblocked` {"opened": true|false}.
//                RPC `Open` -> opens the gate (every Block returns), replies `Opened` {}.
//                RPC `Close` -> closes it again, replies `Closed` {}. The gate starts closed.
//                RPC `Blocked` -> `Blocking` {"blocked": N}: how many Block handlers wait now.
//                Subscribed to topic type `block-fanout`: an event `Block` there blocks the same way.
//   blocker-b    the same as blocker (its own type, the same gate and count, the same
//                subscription): an event to block-fanout blocks one agent of each type.
//   memo         keeps its state as the bytes it was given, verbatim (a fresh instance: `null`).
//                RPC `Recall` -> `Memo`, application/json, the state as its payload; RPC
//                `Remember` (any payload) -> the payload becomes the state, reply `Remembered` {}.
//                snapshot writes the state, restore takes any bytes: what the state protocol
//                loads is what it saves (a JSON state goes as JSON text).
// nanosleep and pthreads under -std=c11.
#define _POSIX_C_SOURCE 200809L

#include <agent_plugin.h>

#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const agentd_host_api *g_host;
static agentd_plugin_ref *g_self;

#include <agent_plugin_json.h>

// --- Helpers ------------------------------------------------------------------------------------

static agentd_str str_of(const char *data, size_t length) {
    agentd_str s = {data, length};
    return s;
}

static agentd_bytes bytes_of(const json_buffer *b) {
    agentd_bytes bytes = {(const uint8_t *)b->data, b->length};
    return bytes;
}

static int clip(size_t length) { return (int)(length > 200 ? 200 : length); }

// Answers the RPC with an error (when it is one) and returns `status`.
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
static agentd_status fail_with(const agentd_message *m, agentd_status status, const char *format, ...) {
    char reason[512];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(reason, sizeof reason, format, args);
    va_end(args);
    size_t length = n < 0 ? 0 : (size_t)n < sizeof reason ? (size_t)n : sizeof reason - 1;
    if (m->is_rpc) {
        m->host->fail(m->call, status, str_of(reason, length));
    } else {
        m->host->log(g_self, m->agent, AGENTD_LOG_WARNING, str_of(reason, length));
    }
    return status;
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
    return ct.length == n || ct.data[n] == ';' || ct.data[n] == ' ';
}

// Reads the string member `name` of the request's JSON object into `value`; on failure fails the
// call (AGENTD_INVALID_ARGUMENT) and returns false with *status set.
static bool require_string(const agentd_message *m, const char *agent, const char *name, json_buffer *value,
                           agentd_status *status) {
    if (!is_json_content_type(m->content_type)) {
        *status = fail_with(m, AGENTD_INVALID_ARGUMENT, "%s: expected content type application/json, got '%.*s'",
                            agent, clip(m->content_type.length), m->content_type.data ? m->content_type.data : "");
        return false;
    }
    json_scanner scanner;
    switch (json_find_string_member(&scanner, m->payload, name, value)) {
    case MEMBER_FOUND:
        return true;
    case MEMBER_MISSING:
        *status = fail_with(m, AGENTD_INVALID_ARGUMENT, "%s: the payload has no \"%s\" member", agent, name);
        return false;
    case MEMBER_NOT_STRING:
        *status = fail_with(m, AGENTD_INVALID_ARGUMENT, "%s: the \"%s\" member is not a string", agent, name);
        return false;
    case MEMBER_MALFORMED:
        *status = fail_with(m, AGENTD_INVALID_ARGUMENT, "%s: malformed JSON payload: %s (at byte %zu)", agent,
                            scanner.error, scanner.error_offset);
        return false;
    case MEMBER_NO_MEMORY:
        break;
    }
    *status = fail_with(m, AGENTD_FAILED, "%s: out of memory", agent);
    return false;
}

// A counter's state: the byte 1, then the count as 8 bytes little-endian.
enum { COUNTER_STATE_VERSION = 1, COUNTER_STATE_SIZE = 9 };

static void encode_counter(uint64_t count, uint8_t state[COUNTER_STATE_SIZE]) {
    state[0] = COUNTER_STATE_VERSION;
    for (int i = 0; i < 8; i++) state[1 + i] = (uint8_t)(count >> (8 * i));
}

static bool decode_counter(agentd_bytes state, uint64_t *count) {
    if (state.length != COUNTER_STATE_SIZE || state.data[0] != COUNTER_STATE_VERSION) return false;
    uint64_t value = 0;
    for (int i = 0; i < 8; i++) value |= (uint64_t)state.data[1 + i] << (8 * i);
    *count = value;
    return true;
}

// --- failing, silent-fail, none -----------------------------------------------------------------

static agentd_status on_boom(void *instance, const agentd_message *m) {
    (void)instance;
    if (m->is_rpc) m->host->fail(m->call, AGENTD_FAILED, agentd_cstr("boom: the handler failed on purpose"));
    return AGENTD_FAILED;
}

static agentd_status on_silent_fail(void *instance, const agentd_message *m) {
    (void)instance;
    (void)m;
    return AGENTD_FAILED;
}

static agentd_status on_none(void *instance, const agentd_message *m) {
    (void)instance;
    (void)m;
    return AGENTD_OK;
}

// --- deferred -----------------------------------------------------------------------------------

typedef struct deferred_instance {
    atomic_int active;           // handlers in flight: from the handler's start to just before the reply
    atomic_bool saw_concurrent;  // once two were in flight together, every call fails
    atomic_int threads;          // reply threads that may still touch this instance
} deferred_instance;

// Every reply thread, joined when finished (on the next Later) or at unload, so that no plugin
// code runs after unload() returns.
typedef struct reply_thread {
    pthread_t thread;
    atomic_bool finished;
    struct reply_thread *next;
} reply_thread;

static pthread_mutex_t g_threads_lock = PTHREAD_MUTEX_INITIALIZER;
static reply_thread *g_threads;

typedef struct deferred_job {
    const agentd_host_api *host;
    agentd_call *call;
    deferred_instance *instance;
    reply_thread *record;
} deferred_job;

static void reap_finished_threads_locked(void) {
    reply_thread **link = &g_threads;
    while (*link) {
        reply_thread *record = *link;
        if (atomic_load(&record->finished)) {
            pthread_join(record->thread, NULL);
            *link = record->next;
            free(record);
        } else {
            link = &record->next;
        }
    }
}

static void *deferred_reply(void *argument) {
    deferred_job *job = argument;
    struct timespec delay = {0, 50 * 1000 * 1000};
    while (nanosleep(&delay, &delay) != 0 && errno == EINTR) {
    }
    // Leave the "in flight" count before replying: the reply lets the runtime deliver the next
    // message, whose handler must not see this one as still running.
    atomic_fetch_sub(&job->instance->active, 1);
    static const char done[] = "{\"done\": true}";
    agentd_bytes payload = {(const uint8_t *)done, sizeof done - 1};
    job->host->reply(job->call, agentd_cstr("Done"), agentd_cstr("application/json"), payload);
    atomic_fetch_sub(&job->instance->threads, 1);  // the last touch of the instance
    reply_thread *record = job->record;
    free(job);
    atomic_store(&record->finished, true);
    return NULL;
}

static agentd_status on_later(void *instance, const agentd_message *m) {
    deferred_instance *self = instance;
    if (atomic_fetch_add(&self->active, 1) != 0) atomic_store(&self->saw_concurrent, true);
    if (atomic_load(&self->saw_concurrent)) {
        atomic_fetch_sub(&self->active, 1);
        return fail_with(m, AGENTD_FAILED,
                         "concurrent handlers: deferred/%.*s ran two handlers at the same time",
                         clip(m->agent_key.length), m->agent_key.data);
    }
    if (!m->is_rpc) {  // an event Later: nothing to answer
        atomic_fetch_sub(&self->active, 1);
        return AGENTD_OK;
    }

    deferred_job *job = malloc(sizeof *job);
    reply_thread *record = calloc(1, sizeof *record);
    if (!job || !record) {
        free(job);
        free(record);
        atomic_fetch_sub(&self->active, 1);
        return fail_with(m, AGENTD_FAILED, "deferred: out of memory");
    }
    job->host = m->host;
    job->call = m->call;
    job->instance = self;
    job->record = record;
    atomic_init(&record->finished, false);

    atomic_fetch_add(&self->threads, 1);
    pthread_mutex_lock(&g_threads_lock);
    reap_finished_threads_locked();
    int error = pthread_create(&record->thread, NULL, deferred_reply, job);
    if (error == 0) {
        record->next = g_threads;
        g_threads = record;
    }
    pthread_mutex_unlock(&g_threads_lock);
    if (error != 0) {
        free(job);
        free(record);
        atomic_fetch_sub(&self->threads, 1);
        atomic_fetch_sub(&self->active, 1);
        return fail_with(m, AGENTD_FAILED, "deferred: cannot start the reply thread (error %d)", error);
    }
    return AGENTD_PENDING;
}

static agentd_status deferred_create(agentd_plugin_ref *plugin, const agentd_agent_type *type,
                                     agentd_agent_ref *agent, agentd_str key, void **instance) {
    (void)plugin;
    (void)type;
    (void)agent;
    (void)key;
    deferred_instance *self = malloc(sizeof *self);
    if (!self) return AGENTD_FAILED;
    atomic_init(&self->active, 0);
    atomic_init(&self->saw_concurrent, false);
    atomic_init(&self->threads, 0);
    *instance = self;
    return AGENTD_OK;
}

static void deferred_destroy(void *instance) {
    deferred_instance *self = instance;
    // A reply may still be on its way (the runtime may retire an instance with a call pending):
    // wait for it rather than free what its thread still uses.
    struct timespec tick = {0, 1000 * 1000};
    while (atomic_load(&self->threads) != 0) nanosleep(&tick, NULL);
    free(self);
}

// --- counter ------------------------------------------------------------------------------------

typedef struct counter_instance {
    uint64_t count;  // events received
} counter_instance;

static agentd_status on_count_event(void *instance, const agentd_message *m) {
    counter_instance *self = instance;
    if (m->is_rpc) {
        return fail_with(m, AGENTD_UNKNOWN_MESSAGE_TYPE, "counter: no RPC '%.*s' (only Get)",
                         clip(m->message_type.length), m->message_type.data);
    }
    self->count++;
    return AGENTD_OK;
}

static agentd_status on_get(void *instance, const agentd_message *m) {
    counter_instance *self = instance;
    if (!m->is_rpc) {  // an event that happens to be named Get: counted like any other
        self->count++;
        return AGENTD_OK;
    }
    char number[32];
    snprintf(number, sizeof number, "%llu", (unsigned long long)self->count);
    json_buffer reply = {0};
    buffer_append_str(&reply, "{\"count\": ");
    buffer_append_str(&reply, number);
    buffer_append_str(&reply, ", \"key\": ");
    json_append_string(&reply, m->agent_key.data, m->agent_key.length);
    buffer_append_str(&reply, "}");
    return agentd_reply_json(m, "Count", &reply);
}

static agentd_status counter_create(agentd_plugin_ref *plugin, const agentd_agent_type *type,
                                    agentd_agent_ref *agent, agentd_str key, void **instance) {
    (void)plugin;
    (void)type;
    (void)agent;
    (void)key;
    counter_instance *self = calloc(1, sizeof *self);
    if (!self) return AGENTD_FAILED;
    *instance = self;
    return AGENTD_OK;
}

static void free_instance(void *instance) { free(instance); }

static agentd_status counter_snapshot(void *instance, agentd_write_fn write, void *sink) {
    const counter_instance *self = instance;
    uint8_t state[COUNTER_STATE_SIZE];
    encode_counter(self->count, state);
    agentd_bytes bytes = {state, sizeof state};
    write(sink, bytes);
    return AGENTD_OK;
}

static agentd_status counter_restore(void *instance, agentd_bytes state) {
    counter_instance *self = instance;
    if (!decode_counter(state, &self->count)) {
        g_host->log(g_self, NULL, AGENTD_LOG_WARNING,
                    agentd_cstr("counter: refusing a state that is not 9 bytes starting with version 1"));
        return AGENTD_INVALID_ARGUMENT;
    }
    return AGENTD_OK;
}

// --- memo ---------------------------------------------------------------------------------------

typedef struct memo_instance {
    uint8_t *state;
    size_t length;
} memo_instance;

static bool memo_set(memo_instance *self, const uint8_t *data, size_t length) {
    uint8_t *copy = malloc(length ? length : 1);
    if (!copy) return false;
    if (length) memcpy(copy, data, length);
    free(self->state);
    self->state = copy;
    self->length = length;
    return true;
}

static agentd_status memo_create(agentd_plugin_ref *plugin, const agentd_agent_type *type, agentd_agent_ref *agent,
                                 agentd_str key, void **instance) {
    (void)plugin;
    (void)type;
    (void)agent;
    (void)key;
    memo_instance *self = calloc(1, sizeof *self);
    if (!self || !memo_set(self, (const uint8_t *)"null", 4)) {
        free(self);
        return AGENTD_FAILED;
    }
    *instance = self;
    return AGENTD_OK;
}

static void memo_destroy(void *instance) {
    memo_instance *self = instance;
    free(self->state);
    free(self);
}

static agentd_status memo_snapshot(void *instance, agentd_write_fn write, void *sink) {
    const memo_instance *self = instance;
    agentd_bytes bytes = {self->state, self->length};
    write(sink, bytes);
    return AGENTD_OK;
}

static agentd_status memo_restore(void *instance, agentd_bytes state) {
    return memo_set(instance, state.data, state.length) ? AGENTD_OK : AGENTD_FAILED;
}

static agentd_status on_recall(void *instance, const agentd_message *m) {
    const memo_instance *self = instance;
    if (!m->is_rpc) return AGENTD_OK;
    agentd_bytes payload = {self->state, self->length};
    return m->host->reply(m->call, agentd_cstr("Memo"), agentd_cstr("application/json"), payload);
}

static agentd_status on_remember(void *instance, const agentd_message *m) {
    if (!memo_set(instance, m->payload.data, m->payload.length)) {
        return fail_with(m, AGENTD_FAILED, "memo: out of memory");
    }
    if (!m->is_rpc) return AGENTD_OK;
    static const uint8_t empty[] = "{}";
    agentd_bytes payload = {empty, 2};
    return m->host->reply(m->call, agentd_cstr("Remembered"), agentd_cstr("application/json"), payload);
}

// --- relay --------------------------------------------------------------------------------------

typedef struct relay_job {
    const agentd_host_api *host;
    agentd_call *call;
    json_buffer target;  // "T/K", for error messages
} relay_job;

static void on_relay_response(void *context, const agentd_response *response) {
    relay_job *job = context;
    if (response->status == AGENTD_OK) {
        job->host->reply(job->call, response->message_type, response->content_type, response->payload);
    } else if (response->error.length > 0) {
        job->host->fail(job->call, response->status, response->error);
    } else {
        char reason[300];
        int n = snprintf(reason, sizeof reason, "relay: %.*s answered with status %d", clip(job->target.length),
                         job->target.data, (int)response->status);
        job->host->fail(job->call, response->status,
                        str_of(reason, n < 0 ? 0 : (size_t)n < sizeof reason ? (size_t)n : sizeof reason - 1));
    }
    buffer_free(&job->target);
    free(job);
}

static agentd_status on_relay(void *instance, const agentd_message *m) {
    (void)instance;
    agentd_status status = AGENTD_OK;
    json_buffer to_type = {0}, to_key = {0}, text = {0};
    if (!require_string(m, "relay", "to_type", &to_type, &status)) return status;
    if (!require_string(m, "relay", "to_key", &to_key, &status)) {
        buffer_free(&to_type);
        return status;
    }
    if (!require_string(m, "relay", "text", &text, &status)) {
        buffer_free(&to_type);
        buffer_free(&to_key);
        return status;
    }
    if (!m->is_rpc) {
        buffer_free(&to_type);
        buffer_free(&to_key);
        buffer_free(&text);
        return AGENTD_OK;
    }

    json_buffer echo = {0};
    buffer_append_str(&echo, "{\"text\": ");
    json_append_string(&echo, text.data, text.length);
    buffer_append_str(&echo, "}");
    buffer_free(&text);

    relay_job *job = calloc(1, sizeof *job);
    if (job) {
        job->host = m->host;
        job->call = m->call;
        buffer_append(&job->target, to_type.data, to_type.length);
        buffer_append_str(&job->target, "/");
        buffer_append(&job->target, to_key.data, to_key.length);
    }
    if (!job || job->target.out_of_memory || echo.out_of_memory) {
        if (job) buffer_free(&job->target);
        free(job);
        buffer_free(&echo);
        buffer_free(&to_type);
        buffer_free(&to_key);
        return fail_with(m, AGENTD_FAILED, "relay: out of memory");
    }

    // After send() accepts the request, `job` belongs to the completion, which may already have
    // run (and freed it) by the time send() returns: do not touch it then.
    status = m->host->send(m->agent, str_of(to_type.data, to_type.length), str_of(to_key.data, to_key.length),
                           agentd_cstr("Echo"), agentd_cstr("application/json"), bytes_of(&echo), on_relay_response,
                           job);
    buffer_free(&echo);
    buffer_free(&to_type);
    buffer_free(&to_key);
    if (status != AGENTD_OK) {
        // send() refused: its completion is not called (the request is not on its way).
        agentd_status refused = fail_with(m, status, "relay: send to %.*s refused (status %d)",
                                          clip(job->target.length), job->target.data, (int)status);
        buffer_free(&job->target);
        free(job);
        return refused;
    }
    return AGENTD_PENDING;
}

// --- publisher ----------------------------------------------------------------------------------

static agentd_status on_publish(void *instance, const agentd_message *m) {
    (void)instance;
    agentd_status status = AGENTD_OK;
    json_buffer topic = {0}, source = {0}, text = {0};
    if (!require_string(m, "publisher", "topic", &topic, &status)) return status;
    if (!require_string(m, "publisher", "source", &source, &status)) {
        buffer_free(&topic);
        return status;
    }
    if (!require_string(m, "publisher", "text", &text, &status)) {
        buffer_free(&topic);
        buffer_free(&source);
        return status;
    }
    json_buffer note = {0};
    buffer_append_str(&note, "{\"text\": ");
    json_append_string(&note, text.data, text.length);
    buffer_append_str(&note, "}");
    buffer_free(&text);
    if (note.out_of_memory) {
        status = fail_with(m, AGENTD_FAILED, "publisher: out of memory");
    } else {
        agentd_str topic_type = str_of(topic.data, topic.length), topic_source = str_of(source.data, source.length);
        bool as_plugin = m->message_type.length == 15 && memcmp(m->message_type.data, "PublishAsPlugin", 15) == 0;
        bool as_nobody = m->message_type.length == 15 && memcmp(m->message_type.data, "PublishAsNobody", 15) == 0;
        if (as_plugin) {
            status = m->host->plugin_publish(g_self, topic_type, topic_source, agentd_cstr("Note"),
                                             agentd_cstr("application/json"), bytes_of(&note));
        } else {
            status = m->host->publish(as_nobody ? NULL : m->agent, topic_type, topic_source, agentd_cstr("Note"),
                                      agentd_cstr("application/json"), bytes_of(&note));
        }
        if (status != AGENTD_OK) {
            status = fail_with(m, status, "publisher: publish to (%.*s, %.*s) refused (status %d)", clip(topic.length),
                               topic.data, clip(source.length), source.data, (int)status);
        }
    }
    buffer_free(&note);
    buffer_free(&topic);
    buffer_free(&source);
    if (status != AGENTD_OK || !m->is_rpc) return status;
    json_buffer reply = {0};
    buffer_append_str(&reply, "{\"ok\": true}");
    return agentd_reply_json(m, "Published", &reply);
}

// --- settings -----------------------------------------------------------------------------------

static agentd_status on_setting(void *instance, const agentd_message *m) {
    (void)instance;
    agentd_status status = AGENTD_OK;
    json_buffer key = {0};
    if (!require_string(m, "settings", "key", &key, &status)) return status;
    if (!m->is_rpc) {
        buffer_free(&key);
        return AGENTD_OK;
    }
    agentd_str value = {NULL, 0};
    status = m->host->setting(g_self, str_of(key.data, key.length), &value);
    if (status == AGENTD_NOT_FOUND) {
        status = fail_with(m, AGENTD_NOT_FOUND, "settings: no setting '%.*s' in [plugin.test-agents]",
                           clip(key.length), key.data);
        buffer_free(&key);
        return status;
    }
    if (status != AGENTD_OK) {
        status = fail_with(m, status, "settings: reading '%.*s' failed (status %d)", clip(key.length), key.data,
                           (int)status);
        buffer_free(&key);
        return status;
    }
    buffer_free(&key);
    json_buffer reply = {0};
    buffer_append_str(&reply, "{\"value\": ");
    json_append_string(&reply, value.data, value.length);
    buffer_append_str(&reply, "}");
    return agentd_reply_json(m, "SettingValue", &reply);
}

// --- blocker ------------------------------------------------------------------------------------

static pthread_mutex_t g_gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_gate_changed = PTHREAD_COND_INITIALIZER;
static int g_gate_open = 0;
static int g_blocked = 0;

static agentd_status on_block(void *instance, const agentd_message *m) {
    (void)instance;
    long ms = 10000;
    char text[64] = {0};
    size_t length = m->payload.length < sizeof text - 1 ? m->payload.length : sizeof text - 1;
    if (m->payload.data) memcpy(text, m->payload.data, length);
    const char *at = strstr(text, "\"ms\"");
    const char *colon = at ? strchr(at, ':') : NULL;
    if (colon) ms = strtol(colon + 1, NULL, 10);
    if (ms <= 0) ms = 10000;
    static const char started[] = "{}";
    agentd_bytes note = {(const uint8_t *)started, sizeof started - 1};
    m->host->publish(m->agent, agentd_cstr("blocker-started"), m->agent_key, agentd_cstr("Blocking"),
                     agentd_cstr("application/json"), note);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec += 1;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&g_gate_lock);
    int result = 0;
    g_blocked++;
    while (!g_gate_open && result != ETIMEDOUT) result = pthread_cond_timedwait(&g_gate_changed, &g_gate_lock, &until);
    int opened = g_gate_open;
    g_blocked--;
    pthread_mutex_unlock(&g_gate_lock);
    if (!m->is_rpc) return AGENTD_OK;
    json_buffer reply = {0};
    buffer_append_str(&reply, opened ? "{\"opened\": true}" : "{\"opened\": false}");
    return agentd_reply_json(m, "Unblocked", &reply);
}

static agentd_status set_gate(const agentd_message *m, int open) {
    pthread_mutex_lock(&g_gate_lock);
    g_gate_open = open;
    pthread_cond_broadcast(&g_gate_changed);
    pthread_mutex_unlock(&g_gate_lock);
    if (!m->is_rpc) return AGENTD_OK;
    json_buffer reply = {0};
    buffer_append_str(&reply, "{}");
    return agentd_reply_json(m, open ? "Opened" : "Closed", &reply);
}

static agentd_status on_blocked(void *instance, const agentd_message *m) {
    (void)instance;
    pthread_mutex_lock(&g_gate_lock);
    int blocked = g_blocked;
    pthread_mutex_unlock(&g_gate_lock);
    if (!m->is_rpc) return AGENTD_OK;
    char text[48];
    snprintf(text, sizeof text, "{\"blocked\": %d}", blocked);
    json_buffer reply = {0};
    buffer_append_str(&reply, text);
    return agentd_reply_json(m, "Blocking", &reply);
}

static agentd_status on_open(void *instance, const agentd_message *m) {
    (void)instance;
    return set_gate(m, 1);
}

static agentd_status on_close(void *instance, const agentd_message *m) {
    (void)instance;
    return set_gate(m, 0);
}

static agentd_status on_trace(void *instance, const agentd_message *m) {
    (void)instance;
    int covered = m->size >= offsetof(agentd_message, tracestate) + sizeof(agentd_str);
    json_buffer reply = {0};
    buffer_append_str(&reply, "{\"traceparent\": ");
    json_append_string(&reply, covered ? m->traceparent.data : "", covered ? m->traceparent.length : 0);
    buffer_append_str(&reply, ", \"tracestate\": ");
    json_append_string(&reply, covered ? m->tracestate.data : "", covered ? m->tracestate.length : 0);
    buffer_append_str(&reply, "}");
    return agentd_reply_json(m, "Trace", &reply);
}

// --- The descriptor -----------------------------------------------------------------------------

#define HANDLER(type, fn) {sizeof(agentd_handler), type, fn}
#define COUNT(array) (sizeof(array) / sizeof((array)[0]))

static const agentd_handler failing_handlers[] = {HANDLER("Boom", on_boom)};
static const agentd_handler silent_fail_handlers[] = {HANDLER("*", on_silent_fail)};
static const agentd_handler none_handlers[] = {HANDLER("*", on_none)};
static const agentd_handler deferred_handlers[] = {HANDLER("Later", on_later)};
static const agentd_handler counter_handlers[] = {HANDLER("Get", on_get), HANDLER("*", on_count_event)};
static const agentd_handler relay_handlers[] = {HANDLER("Relay", on_relay)};
static const agentd_handler publisher_handlers[] = {
    HANDLER("Publish", on_publish), HANDLER("PublishAsPlugin", on_publish), HANDLER("PublishAsNobody", on_publish)};
static const agentd_handler settings_handlers[] = {HANDLER("Setting", on_setting)};
static const agentd_handler tracer_handlers[] = {HANDLER("*", on_trace)};
static const agentd_subscription blocker_subscriptions[] = {
    {sizeof(agentd_subscription), AGENTD_SUBSCRIBE_TOPIC_TYPE, "block-fanout"},
};
static const agentd_handler blocker_handlers[] = {HANDLER("Block", on_block), HANDLER("Open", on_open),
                                                  HANDLER("Close", on_close), HANDLER("Blocked", on_blocked)};

static const agentd_handler memo_handlers[] = {HANDLER("Recall", on_recall), HANDLER("Remember", on_remember)};
static const agentd_subscription counter_subscriptions[] = {
    {sizeof(agentd_subscription), AGENTD_SUBSCRIBE_TOPIC_TYPE, "count"},
    {sizeof(agentd_subscription), AGENTD_SUBSCRIBE_TOPIC_PREFIX, "count-prefix:"},
};

static const agentd_agent_type test_types[] = {
    {
        .size = sizeof(agentd_agent_type),
        .name = "failing",
        .description = "Boom: fails with \"boom: the handler failed on purpose\"",
        .handlers = failing_handlers,
        .handler_count = COUNT(failing_handlers),
    },
    {
        .size = sizeof(agentd_agent_type),
        .name = "silent-fail",
        .description = "Any message: returns AGENTD_FAILED without calling fail()",
        .handlers = silent_fail_handlers,
        .handler_count = COUNT(silent_fail_handlers),
    },
    {
        .size = sizeof(agentd_agent_type),
        .name = "none",
        .description = "Any message: returns AGENTD_OK without replying",
        .handlers = none_handlers,
        .handler_count = COUNT(none_handlers),
    },
    {
        .size = sizeof(agentd_agent_type),
        .name = "deferred",
        .description = "Later: answers Done {\"done\": true} from a plugin thread after ~50 ms",
        .handlers = deferred_handlers,
        .handler_count = COUNT(deferred_handlers),
        .create = deferred_create,
        .destroy = deferred_destroy,
    },
    {
        .size = sizeof(agentd_agent_type),
        .name = "counter",
        .description = "Counts events on count / count-prefix:*; Get answers Count {\"count\", \"key\"}",
        .subscriptions = counter_subscriptions,
        .subscription_count = COUNT(counter_subscriptions),
        .handlers = counter_handlers,
        .handler_count = COUNT(counter_handlers),
        .create = counter_create,
        .destroy = free_instance,
        .snapshot = counter_snapshot,
        .restore = counter_restore,
    },
    {
        .size = sizeof(agentd_agent_type),
        .name = "relay",
        .description = "Relay {to_type, to_key, text}: sends Echo {text} to to_type/to_key, answers with its reply",
        .handlers = relay_handlers,
        .handler_count = COUNT(relay_handlers),
    },
    {
        .size = sizeof(agentd_agent_type),
        .name = "publisher",
        .description = "Publish {topic, source, text}: publishes Note {text} to (topic, source)",
        .handlers = publisher_handlers,
        .handler_count = COUNT(publisher_handlers),
    },
    {
        .size = sizeof(agentd_agent_type),
        .name = "tracer",
        .description = "Any RPC: answers Trace {traceparent, tracestate} as the runtime gave them",
        .handlers = tracer_handlers,
        .handler_count = COUNT(tracer_handlers),
    },
    {
        .size = sizeof(agentd_agent_type),
        .name = "settings",
        .description = "Setting {key}: answers SettingValue {value} from [plugin.test-agents]",
        .handlers = settings_handlers,
        .handler_count = COUNT(settings_handlers),
    },
    {
        .size = sizeof(agentd_agent_type),
        .name = "blocker",
        .description = "Block: blocks in the handler until Open (or 10 s); Open / Close set the gate",
        .subscriptions = blocker_subscriptions,
        .subscription_count = COUNT(blocker_subscriptions),
        .handlers = blocker_handlers,
        .handler_count = COUNT(blocker_handlers),
    },
    {
        .size = sizeof(agentd_agent_type),
        .name = "blocker-b",
        .description = "The same as blocker, a second type on the same topic",
        .subscriptions = blocker_subscriptions,
        .subscription_count = COUNT(blocker_subscriptions),
        .handlers = blocker_handlers,
        .handler_count = COUNT(blocker_handlers),
    },
    {
        .size = sizeof(agentd_agent_type),
        .name = "memo",
        .description = "Keeps its state verbatim: Recall answers Memo with it, Remember {…} replaces it",
        .handlers = memo_handlers,
        .handler_count = COUNT(memo_handlers),
        .create = memo_create,
        .destroy = memo_destroy,
        .snapshot = memo_snapshot,
        .restore = memo_restore,
    },
};

static void test_agents_unload(void) {
    // Join every reply thread, so that none runs plugin code once the library is closed.
    pthread_mutex_lock(&g_threads_lock);
    while (g_threads) {
        reply_thread *record = g_threads;
        g_threads = record->next;
        pthread_join(record->thread, NULL);
        free(record);
    }
    pthread_mutex_unlock(&g_threads_lock);
}

static const agentd_plugin test_agents_plugin = {
    .size = sizeof(agentd_plugin),
    .abi_major = AGENTD_ABI_MAJOR,
    .abi_minor = AGENTD_ABI_MINOR,
    .name = "test-agents",
    .version = "1.0.0",
    .agent_types = test_types,
    .agent_type_count = COUNT(test_types),
    .unload = test_agents_unload,
};

AGENTD_EXPORT const agentd_plugin *agentd_plugin_entry(const agentd_host_api *host, agentd_plugin_ref *self) {
    g_host = host;
    g_self = self;
    return &test_agents_plugin;
}
