// A test plugin built twice (VersionedPluginV1, VersionedPluginV2) from this one source, with
// VERSIONED_PLUGIN_VERSION 1 or 2, so that reload tests can tell the versions apart.
//
// Plugin "versioned" version "1.0.0" / "2.0.0"; agent type `versioned`, subscribed to topic
// type `versioned-events`:
//   event (any message type)   adds 1 to the instance's counter
//   RPC `Get`                  replies `Count` {"version": V, "count": N, "key": "<key>"}
//   RPC `Slow`                 replies the same after ~30 ms, from another thread (pending)
// The counter moves to the next version through snapshot/restore (8 bytes, little-endian).
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

// `Slow` answers come from one worker thread of the plugin's own, which unload() stops and
// joins: the header's rule for plugins with threads (their code is unmapped after unload).
typedef struct slow_job {
    versioned_instance *state;
    agentd_call *call;
    struct slow_job *next;
} slow_job;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
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
        struct timespec wait = {0, 30 * 1000 * 1000};
        nanosleep(&wait, NULL);
        answer(job->state, job->call);
        free(job);
        pthread_mutex_lock(&g_lock);
    }
    pthread_mutex_unlock(&g_lock);
    return NULL;
}

static agentd_status on_slow(void *instance, const agentd_message *m) {
    slow_job *job = calloc(1, sizeof(slow_job));
    if (!job) return AGENTD_FAILED;
    job->state = instance;
    job->call = m->call;
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
    return AGENTD_PENDING;
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
    {sizeof(agentd_handler), "Slow", on_slow},
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
        .handler_count = 3,
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
    .abi_minor = AGENTD_ABI_MINOR,
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
