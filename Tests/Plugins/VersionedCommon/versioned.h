// A test plugin built twice (VersionedPluginV1, VersionedPluginV2) from this one source, with
// VERSIONED_PLUGIN_VERSION 1 or 2, so that reload tests can tell the versions apart.
//
// Plugin "versioned" version "1.0.0" / "2.0.0"; agent type `versioned`, subscribed to topic
// type `versioned-events`:
//   event (any message type)   adds 1 to the instance's counter
//   RPC `Get`                  replies `Count` {"version": V, "count": N, "key": "<key>"}
//   RPC `Slow`                 replies the same after ~30 ms, from another thread (pending)
//   RPC `Emit`                 {"count": N, "interval_ms": I, "delay_ms": D, "topic": T, "source": S}:
//                              replies at once, then the plugin's thread waits D ms and publishes
//                              N `Tick` events to (T, S) as this agent, one every I ms
//   RPC `Never`                returns AGENTD_PENDING and never answers
//   RPC `EmitStats`            {"ok": publishes accepted, "refused": refused, "done": bool}
//   RPC `Set`                  {"count": N} sets the counter, replies like `Get`
// The counter moves to the next version through snapshot/restore (8 bytes, little-endian).
// Version 2's restore refuses a negative counter (AGENTD_INVALID_ARGUMENT), so that a reload
// can meet a live state the new version does not accept.
// Version 2 also serves agent type `versioned-extra` (RPC `Get` -> {"version": 2, ...}), so
// that a reload adds a type; going back to version 1 withdraws it.
#include <agent_plugin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// (Answers are computed by answer(), defined below, before the worker uses it.)

#ifndef VERSIONED_PLUGIN_VERSION
#error "define VERSIONED_PLUGIN_VERSION"
#endif

#define STR2(x) #x
#define STR(x) STR2(x)

typedef struct {
    long long count;
    char key[128];
} versioned_instance;

static const agentd_host_api *g_host;

static agentd_status create(agentd_plugin_ref *plugin, const agentd_agent_type *type, agentd_agent_ref *agent,
                            agentd_str key, void **instance) {
    (void)plugin;
    (void)type;
    (void)agent;
    versioned_instance *state = calloc(1, sizeof(versioned_instance));
    if (!state) return AGENTD_FAILED;
    size_t n = key.length < sizeof(state->key) - 1 ? key.length : sizeof(state->key) - 1;
    memcpy(state->key, key.data, n);
    *instance = state;
    return AGENTD_OK;
}

static void destroy(void *instance) { free(instance); }

static agentd_status snapshot(void *instance, agentd_write_fn write, void *sink) {
    versioned_instance *state = instance;
    uint8_t bytes[8];
    for (int i = 0; i < 8; i++) bytes[i] = (uint8_t)((unsigned long long)state->count >> (8 * i));
    agentd_bytes view = {bytes, 8};
    write(sink, view);
    return AGENTD_OK;
}

static agentd_status restore(void *instance, agentd_bytes bytes) {
    versioned_instance *state = instance;
    if (bytes.length != 8) return AGENTD_INVALID_ARGUMENT;
    unsigned long long value = 0;
    for (int i = 0; i < 8; i++) value |= (unsigned long long)bytes.data[i] << (8 * i);
#if VERSIONED_PLUGIN_VERSION == 2
    if ((long long)value < 0) return AGENTD_INVALID_ARGUMENT;
#endif
    state->count = (long long)value;
    return AGENTD_OK;
}

static agentd_status answer(versioned_instance *state, agentd_call *call) {
    char json[256];
    int n = snprintf(json, sizeof json, "{\"version\": %d, \"count\": %lld, \"key\": \"%s\"}",
                     VERSIONED_PLUGIN_VERSION, state->count, state->key);
    agentd_bytes payload = {(const uint8_t *)json, (size_t)n};
    return g_host->reply(call, agentd_cstr("Count"), agentd_cstr("application/json"), payload);
}

static agentd_status on_event(void *instance, const agentd_message *m) {
    versioned_instance *state = instance;
    if (m->is_rpc) return m->host->fail(m->call, AGENTD_UNKNOWN_MESSAGE_TYPE, agentd_cstr("versioned: events only"));
    state->count++;
    return AGENTD_OK;
}

static agentd_status on_get(void *instance, const agentd_message *m) { return answer(instance, m->call); }

static agentd_status on_set(void *instance, const agentd_message *m) {
    versioned_instance *state = instance;
    if (!m->is_rpc) return AGENTD_OK;
    char text[64];
    size_t n = m->payload.length < sizeof text - 1 ? m->payload.length : sizeof text - 1;
    memcpy(text, m->payload.data, n);
    text[n] = 0;
    const char *colon = strchr(text, ':');
    if (!colon) return m->host->fail(m->call, AGENTD_INVALID_ARGUMENT, agentd_cstr("versioned: Set wants {\"count\": N}"));
    state->count = strtoll(colon + 1, NULL, 10);
    return answer(instance, m->call);
}

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

// `Slow` answers come from one worker thread of the plugin's own, which unload() stops and
// joins: the header's rule for plugins with threads (their code is unmapped after unload).
typedef struct slow_job {
    versioned_instance *state;
    agentd_call *call;
    /* An Emit job instead of a Slow answer: publish `emit_count` events as `agent`. */
    agentd_agent_ref *agent;
    int emit_count;
    int emit_interval_ms;
    int emit_delay_ms;
    char topic[64];
    char source[64];
    struct slow_job *next;
} slow_job;

/* What the last Emit did (read by EmitStats). */
static int g_emit_ok, g_emit_refused, g_emit_done = 1;

static void run_emit(slow_job *job) {
    struct timespec delay = {job->emit_delay_ms / 1000, (long)(job->emit_delay_ms % 1000) * 1000 * 1000};
    nanosleep(&delay, NULL);
    for (int i = 0; i < job->emit_count; i++) {
        char json[64];
        int n = snprintf(json, sizeof json, "{\"seq\": %d}", i);
        agentd_bytes payload = {(const uint8_t *)json, (size_t)n};
        agentd_status status = g_host->publish(job->agent, agentd_cstr(job->topic), agentd_cstr(job->source),
                                               agentd_cstr("Tick"), agentd_cstr("application/json"), payload);
        pthread_mutex_lock(&g_lock);
        if (status == AGENTD_OK) g_emit_ok++; else g_emit_refused++;
        pthread_mutex_unlock(&g_lock);
        struct timespec wait = {0, (long)job->emit_interval_ms * 1000 * 1000};
        nanosleep(&wait, NULL);
    }
    pthread_mutex_lock(&g_lock);
    g_emit_done = 1;
    pthread_mutex_unlock(&g_lock);
}

static pthread_cond_t g_wake = PTHREAD_COND_INITIALIZER;
static slow_job *g_head, *g_tail;
static int g_stopping, g_started;
static pthread_t g_worker;

static void *slow_worker(void *arg) {
    (void)arg;
    pthread_mutex_lock(&g_lock);
    for (;;) {
        while (!g_head && !g_stopping) pthread_cond_wait(&g_wake, &g_lock);
        if (!g_head) break;
        slow_job *job = g_head;
        g_head = job->next;
        if (!g_head) g_tail = NULL;
        pthread_mutex_unlock(&g_lock);
        if (job->emit_count > 0) {
            run_emit(job);
        } else {
            struct timespec wait = {0, 30 * 1000 * 1000};
            nanosleep(&wait, NULL);
            answer(job->state, job->call);
        }
        free(job);
        pthread_mutex_lock(&g_lock);
    }
    pthread_mutex_unlock(&g_lock);
    return NULL;
}

static agentd_status enqueue(slow_job *job);

static agentd_status on_slow(void *instance, const agentd_message *m) {
    slow_job *job = calloc(1, sizeof(slow_job));
    if (!job) return AGENTD_FAILED;
    job->state = instance;
    job->call = m->call;
    return enqueue(job) == AGENTD_OK ? AGENTD_PENDING : AGENTD_FAILED;
}

/* A tiny reader for {"count": N, "interval_ms": I, "topic": "T", "source": "S"} (test input). */
static int json_int(agentd_bytes json, const char *key, int fallback) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *text = (const char *)json.data;
    size_t n = strlen(pattern);
    for (size_t i = 0; i + n <= json.length; i++) {
        if (memcmp(text + i, pattern, n) == 0) return atoi(text + i + n);
    }
    return fallback;
}

static void json_string(agentd_bytes json, const char *key, char *out, size_t size) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\": \"", key);
    const char *text = (const char *)json.data;
    size_t n = strlen(pattern);
    out[0] = 0;
    for (size_t i = 0; i + n <= json.length; i++) {
        if (memcmp(text + i, pattern, n) == 0) {
            size_t j = 0;
            while (i + n + j < json.length && text[i + n + j] != '"' && j + 1 < size) {
                out[j] = text[i + n + j];
                j++;
            }
            out[j] = 0;
            return;
        }
    }
}

static agentd_status on_emit(void *instance, const agentd_message *m) {
    slow_job *job = calloc(1, sizeof(slow_job));
    if (!job) return AGENTD_FAILED;
    job->state = instance;
    job->agent = m->agent;
    job->emit_count = json_int(m->payload, "count", 1);
    job->emit_interval_ms = json_int(m->payload, "interval_ms", 5);
    job->emit_delay_ms = json_int(m->payload, "delay_ms", 0);
    json_string(m->payload, "topic", job->topic, sizeof job->topic);
    json_string(m->payload, "source", job->source, sizeof job->source);
    pthread_mutex_lock(&g_lock);
    g_emit_ok = 0;
    g_emit_refused = 0;
    g_emit_done = 0;
    pthread_mutex_unlock(&g_lock);
    if (enqueue(job) != AGENTD_OK) return m->host->fail(m->call, AGENTD_FAILED, agentd_cstr("versioned: cannot start"));
    return m->host->reply(m->call, agentd_cstr("Started"), agentd_cstr("application/json"),
                          (agentd_bytes){(const uint8_t *)"{}", 2});
}

/* Never answers: for the runtime's handler deadline. */
static agentd_status on_never(void *instance, const agentd_message *m) {
    (void)instance;
    (void)m;
    return AGENTD_PENDING;
}

static agentd_status on_emit_stats(void *instance, const agentd_message *m) {
    (void)instance;
    char json[128];
    pthread_mutex_lock(&g_lock);
    int n = snprintf(json, sizeof json, "{\"ok\": %d, \"refused\": %d, \"done\": %s}", g_emit_ok, g_emit_refused,
                     g_emit_done ? "true" : "false");
    pthread_mutex_unlock(&g_lock);
    agentd_bytes payload = {(const uint8_t *)json, (size_t)n};
    return m->host->reply(m->call, agentd_cstr("EmitStats"), agentd_cstr("application/json"), payload);
}

static agentd_status enqueue(slow_job *job) {
    pthread_mutex_lock(&g_lock);
    if (!g_started) {
        if (pthread_create(&g_worker, NULL, slow_worker, NULL) != 0) {
            pthread_mutex_unlock(&g_lock);
            free(job);
            return AGENTD_FAILED;
        }
        g_started = 1;
    }
    if (g_tail) g_tail->next = job; else g_head = job;
    g_tail = job;
    pthread_cond_signal(&g_wake);
    pthread_mutex_unlock(&g_lock);
    return AGENTD_OK;
}

static void unload(void) {
    pthread_mutex_lock(&g_lock);
    g_stopping = 1;
    int started = g_started;
    pthread_cond_broadcast(&g_wake);
    pthread_mutex_unlock(&g_lock);
    if (started) pthread_join(g_worker, NULL);
}

static const agentd_handler handlers[] = {
    {sizeof(agentd_handler), "Get", on_get},
    {sizeof(agentd_handler), "Set", on_set},
    {sizeof(agentd_handler), "Slow", on_slow},
    {sizeof(agentd_handler), "Emit", on_emit},
    {sizeof(agentd_handler), "EmitStats", on_emit_stats},
    {sizeof(agentd_handler), "Never", on_never},
    {sizeof(agentd_handler), "*", on_event},
};
static const agentd_subscription subscriptions[] = {
    {sizeof(agentd_subscription), AGENTD_SUBSCRIBE_TOPIC_TYPE, "versioned-events"},
};
static const agentd_handler extra_handlers[] = {
    {sizeof(agentd_handler), "Get", on_get},
};

static const agentd_agent_type types[] = {
    {
        .size = sizeof(agentd_agent_type),
        .name = "versioned",
        .description = "counts events; answers with its version",
        .subscriptions = subscriptions,
        .subscription_count = 1,
        .handlers = handlers,
        .handler_count = sizeof handlers / sizeof handlers[0],
        .create = create,
        .destroy = destroy,
        .snapshot = snapshot,
        .restore = restore,
    },
    {
        .size = sizeof(agentd_agent_type),
        .name = "versioned-extra",
        .handlers = extra_handlers,
        .handler_count = 1,
        .create = create,
        .destroy = destroy,
    },
};

static const agentd_plugin plugin = {
    .size = sizeof(agentd_plugin),
    .abi_major = AGENTD_ABI_MAJOR,
    /* Declared as built for ABI 1.0 (it uses nothing ABI 1.1 added): the hot-reload and
     * reconnection tests run an ABI 1.0 plugin, which the runtime must keep serving. */
    .abi_minor = 0,
    .name = "versioned",
    .version = STR(VERSIONED_PLUGIN_VERSION) ".0.0",
    .agent_types = types,
    .agent_type_count = VERSIONED_PLUGIN_VERSION >= 2 ? 2 : 1,
    .unload = unload,
};

AGENTD_EXPORT const agentd_plugin *agentd_plugin_entry(const agentd_host_api *host, agentd_plugin_ref *self) {
    (void)self;
    g_host = host;
    return &plugin;
}
