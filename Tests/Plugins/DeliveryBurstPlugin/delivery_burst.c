// DeliveryBurstPlugin: publishes a paced burst of numbered events from a thread of its own, for
// the delivery tests (Tests/Interop/test_delivery.py) and Benchmarks/delivery. Plugin
// "delivery-burst" 1.0.0, agent type `burst`. Its partner is DeliveryTallyPlugin (`burst-tally`),
// which counts what arrives.
//
//   RPC `Burst` {"count": N, "rate": R, "run": ID, "topic": T, "bytes": B, "retry_ms": M, "start_ns": T0}
//       starts a thread that makes N publish attempts of `BurstEvent` {"run": ID, "seq": S} to topic
//       (T, ID) — T defaults to "burst" — at R attempts per second (R = 0: as fast as publish
//       returns), and answers `BurstStarted` {"run": ID} at once. S numbers the ACCEPTED publishes
//       (those publish() returned AGENTD_OK for): 0, 1, 2, ... with no gap, so whoever receives
//       them knows that every S below `accepted` was promised, and can tell missing, duplicated
//       and reordered events apart. A refused attempt is counted and the next attempt (at its own
//       time) carries the same S. With "bytes": B (optional) the event has a third member "pad", a
//       string that brings the payload to at least B bytes. With "retry_ms": M > 0 (optional, for
//       throughput measurements; at most 1000) a refused publish is tried again after M ms: the burst
//       then goes on until N are accepted (R still paces the attempts; refusals are counted).
//       With "start_ns": T0 (optional) the first attempt waits until CLOCK_MONOTONIC time T0 (at
//       most 60 s ahead; a time past starts at once): a test that kills something "1.5 s into the
//       burst" then knows when that is whatever the RPC's round trip took.
//       Refused with AGENTD_INVALID_ARGUMENT when a member is missing or malformed, or when run ID
//       was already started (each run id is used once).
//   RPC `BurstStatus` {"run": ID}
//       answers `BurstProgress` {"run": ID, "count": N, "attempted": A, "accepted": K,
//       "refused": F, "done": true|false, "started_ns": T0, "finished_ns": T1}: A = K + F attempts
//       so far; T0 and T1 are CLOCK_MONOTONIC (system-wide), T1 is 0 until done. AGENTD_NOT_FOUND
//       for a run never started.
//
// The run belongs to the plugin, not to the agent instance that started it (the runtime may
// retire an idle instance while its burst goes on): the thread publishes as the plugin itself
// (plugin_publish, ABI 1.1: sender "unknown"), and the runs are kept until unload, which stops
// and joins every thread (no plugin code may run after unload returns).
//
// nanosleep and clock_nanosleep under -std=c11.
#define _POSIX_C_SOURCE 200809L

#include <agent_plugin.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const agentd_host_api *g_host;
static agentd_plugin_ref *g_self;

#include <agent_plugin_json.h>

enum { RUN_ID_MAX = 128, TOPIC_MAX = 128, PAD_MAX = 1 << 20 };

typedef struct burst_run {
    char run[RUN_ID_MAX + 1];
    char topic[TOPIC_MAX + 1];
    int64_t count;
    int64_t rate;  // attempts per second; 0: unpaced
    int64_t pad_to;
    int64_t retry_ms;  // > 0: retry a refused publish after this long, until `count` are accepted
    int64_t start_ns;  // CLOCK_MONOTONIC time of the first attempt; 0: at once
    pthread_t thread;
    bool thread_started;
    // Written by the burst's thread, read by BurstStatus on runtime threads.
    atomic_llong attempted;
    atomic_llong accepted;
    atomic_llong refused;
    atomic_bool done;
    atomic_llong started_ns;
    atomic_llong finished_ns;
    atomic_bool stop;  // set at unload: the thread returns at its next attempt
    struct burst_run *next;
} burst_run;

static pthread_mutex_t g_runs_lock = PTHREAD_MUTEX_INITIALIZER;
static burst_run *g_runs;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_until_ns(long long when) {
    struct timespec ts = {(time_t)(when / 1000000000LL), (long)(when % 1000000000LL)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static burst_run *find_run_locked(const char *run) {
    for (burst_run *r = g_runs; r; r = r->next) {
        if (strcmp(r->run, run) == 0) return r;
    }
    return NULL;
}

// --- The burst's thread ---------------------------------------------------------------------------

// The event carrying accepted-publish number `seq`, into `out` (reused: cleared first).
static void write_event(const burst_run *r, int64_t seq, json_buffer *out) {
    char number[32];
    out->length = 0;
    buffer_append_str(out, "{\"run\": ");
    json_append_string(out, r->run, strlen(r->run));
    snprintf(number, sizeof number, ", \"seq\": %" PRId64, seq);
    buffer_append_str(out, number);
    if (r->pad_to > 0) {
        static const char pad_open[] = ", \"pad\": \"", close[] = "\"}";
        size_t used = out->length + sizeof pad_open - 1 + sizeof close - 1;
        buffer_append_str(out, pad_open);
        for (size_t i = used; i < (size_t)r->pad_to; i++) buffer_append(out, "x", 1);
        buffer_append_str(out, close);
    } else {
        buffer_append_str(out, "}");
    }
}

static void *run_burst(void *argument) {
    burst_run *r = argument;
    json_buffer event = {0};
    agentd_str topic_type = agentd_cstr(r->topic), topic_source = agentd_cstr(r->run);
    // Wait for the start time in short steps, so that unload does not wait for it.
    while (now_ns() < r->start_ns && !atomic_load(&r->stop)) {
        long long step = now_ns() + 100000000LL;
        sleep_until_ns(step < r->start_ns ? step : r->start_ns);
    }
    long long start = now_ns();
    atomic_store(&r->started_ns, start);
    int64_t accepted = 0, refused = 0;
    int64_t attempt = 0;
    for (; (r->retry_ms > 0 ? accepted : attempt) < r->count && !atomic_load(&r->stop); attempt++) {
        if (r->rate > 0) sleep_until_ns(start + (long long)(attempt * 1000000000LL / r->rate));
        write_event(r, accepted, &event);
        agentd_status status = AGENTD_FAILED;
        if (!event.out_of_memory) {
            agentd_bytes payload = {(const uint8_t *)event.data, event.length};
            status = g_host->plugin_publish(g_self, topic_type, topic_source, agentd_cstr("BurstEvent"),
                                            agentd_cstr("application/json"), payload);
        }
        if (status == AGENTD_OK) {
            atomic_store(&r->accepted, ++accepted);
        } else {
            atomic_store(&r->refused, ++refused);
            if (r->retry_ms > 0) sleep_until_ns(now_ns() + r->retry_ms * 1000000LL);
        }
        atomic_store(&r->attempted, attempt + 1);
    }
    buffer_free(&event);
    atomic_store(&r->finished_ns, now_ns());
    atomic_store(&r->done, true);
    return NULL;
}

// --- Handlers -------------------------------------------------------------------------------------

static agentd_status refuse(const agentd_message *m, agentd_status status, const char *why, const char *detail) {
    char text[512];
    snprintf(text, sizeof text, "burst: %s%s", why, detail ? detail : "");
    return m->host->fail(m->call, status, agentd_cstr(text));
}

// Reads the string member `name` (at most `max` bytes) into `out`; false when it is missing or
// malformed, with the call failed (AGENTD_INVALID_ARGUMENT). A missing member is taken as
// `fallback` when there is one.
static bool read_string(const agentd_message *m, const char *name, const char *fallback, char *out, size_t max,
                        agentd_status *status) {
    json_scanner scanner;
    json_buffer value = {0};
    char why[256];
    switch (json_find_string_member(&scanner, m->payload, name, &value)) {
    case MEMBER_FOUND:
        if (value.length == 0 || value.length > max || memchr(value.data, 0, value.length)) {
            snprintf(why, sizeof why, "\"%s\" must be 1 to %zu bytes without NUL, got %zu bytes", name, max,
                     value.length);
            buffer_free(&value);
            *status = refuse(m, AGENTD_INVALID_ARGUMENT, why, NULL);
            return false;
        }
        memcpy(out, value.data, value.length);
        out[value.length] = 0;
        buffer_free(&value);
        return true;
    case MEMBER_MISSING:
        if (fallback) {
            snprintf(out, max + 1, "%s", fallback);
            return true;
        }
        snprintf(why, sizeof why, "the payload has no \"%s\" member", name);
        break;
    case MEMBER_NOT_STRING:
        snprintf(why, sizeof why, "\"%s\" is not a string", name);
        break;
    case MEMBER_MALFORMED:
        snprintf(why, sizeof why, "malformed JSON payload: %s (at byte %zu)", scanner.error, scanner.error_offset);
        break;
    case MEMBER_NO_MEMORY:
        *status = refuse(m, AGENTD_FAILED, "out of memory", NULL);
        return false;
    }
    *status = refuse(m, AGENTD_INVALID_ARGUMENT, why, NULL);
    return false;
}

// Reads the integer member `name` into `out`, within [min, max]; a missing member is `fallback`
// when `optional`.
static bool read_integer(const agentd_message *m, const char *name, bool optional, int64_t fallback, int64_t min,
                         int64_t max, int64_t *out, agentd_status *status) {
    json_scanner scanner;
    char why[256];
    switch (json_find_integer_member(&scanner, m->payload, name, out, NULL)) {
    case INTEGER_FOUND:
        if (*out >= min && *out <= max) return true;
        snprintf(why, sizeof why, "\"%s\" must be %" PRId64 "...%" PRId64 ", got %" PRId64, name, min, max, *out);
        break;
    case INTEGER_MISSING:
        if (optional) {
            *out = fallback;
            return true;
        }
        snprintf(why, sizeof why, "the payload has no \"%s\" member", name);
        break;
    case INTEGER_NOT_INTEGER:
        snprintf(why, sizeof why, "\"%s\" is not a whole number", name);
        break;
    case INTEGER_MALFORMED:
        snprintf(why, sizeof why, "malformed JSON payload: %s (at byte %zu)", scanner.error, scanner.error_offset);
        break;
    case INTEGER_NO_MEMORY:
        *status = refuse(m, AGENTD_FAILED, "out of memory", NULL);
        return false;
    }
    *status = refuse(m, AGENTD_INVALID_ARGUMENT, why, NULL);
    return false;
}

static agentd_status on_burst(void *instance, const agentd_message *m) {
    (void)instance;
    if (!m->is_rpc) return AGENTD_OK;  // only an RPC starts a burst
    agentd_status status = AGENTD_OK;
    burst_run *r = calloc(1, sizeof *r);
    if (!r) return refuse(m, AGENTD_FAILED, "out of memory", NULL);
    if (!read_string(m, "run", NULL, r->run, RUN_ID_MAX, &status) ||
        !read_string(m, "topic", "burst", r->topic, TOPIC_MAX, &status) ||
        !read_integer(m, "count", false, 0, 0, INT32_MAX, &r->count, &status) ||
        !read_integer(m, "rate", false, 0, 0, 10000000, &r->rate, &status) ||
        !read_integer(m, "bytes", true, 0, 0, PAD_MAX, &r->pad_to, &status) ||
        !read_integer(m, "retry_ms", true, 0, 0, 1000, &r->retry_ms, &status) ||
        !read_integer(m, "start_ns", true, 0, 0, now_ns() + 60000000000LL, &r->start_ns, &status)) {
        free(r);
        return status;
    }
    pthread_mutex_lock(&g_runs_lock);
    if (find_run_locked(r->run)) {
        pthread_mutex_unlock(&g_runs_lock);
        status = refuse(m, AGENTD_INVALID_ARGUMENT, "run already started: ", r->run);
        free(r);
        return status;
    }
    int error = pthread_create(&r->thread, NULL, run_burst, r);
    if (error == 0) {
        r->thread_started = true;
        r->next = g_runs;
        g_runs = r;
    }
    pthread_mutex_unlock(&g_runs_lock);
    if (error != 0) {
        free(r);
        return refuse(m, AGENTD_FAILED, "cannot start the burst's thread: ", strerror(error));
    }
    json_buffer reply = {0};
    buffer_append_str(&reply, "{\"run\": ");
    json_append_string(&reply, r->run, strlen(r->run));  // r stays until unload
    buffer_append_str(&reply, "}");
    return agentd_reply_json(m, "BurstStarted", &reply);
}

static agentd_status on_burst_status(void *instance, const agentd_message *m) {
    (void)instance;
    if (!m->is_rpc) return AGENTD_OK;
    agentd_status status = AGENTD_OK;
    char run[RUN_ID_MAX + 1];
    if (!read_string(m, "run", NULL, run, RUN_ID_MAX, &status)) return status;
    pthread_mutex_lock(&g_runs_lock);
    burst_run *r = find_run_locked(run);  // never freed before unload
    pthread_mutex_unlock(&g_runs_lock);
    if (!r) return refuse(m, AGENTD_NOT_FOUND, "no run ", run);
    // `done` first: once it reads true, the counters below are final.
    bool done = atomic_load(&r->done);
    char text[512];
    snprintf(text, sizeof text,
             ", \"count\": %" PRId64 ", \"attempted\": %lld, \"accepted\": %lld, \"refused\": %lld, \"done\": %s, "
             "\"started_ns\": %lld, \"finished_ns\": %lld}",
             r->count, atomic_load(&r->attempted), atomic_load(&r->accepted), atomic_load(&r->refused),
             done ? "true" : "false", atomic_load(&r->started_ns), done ? atomic_load(&r->finished_ns) : 0LL);
    json_buffer reply = {0};
    buffer_append_str(&reply, "{\"run\": ");
    json_append_string(&reply, run, strlen(run));
    buffer_append_str(&reply, text);
    return agentd_reply_json(m, "BurstProgress", &reply);
}

// --- The descriptor -------------------------------------------------------------------------------

static const agentd_handler burst_handlers[] = {
    {sizeof(agentd_handler), "Burst", on_burst},
    {sizeof(agentd_handler), "BurstStatus", on_burst_status},
};

static const agentd_agent_type burst_types[] = {{
    .size = sizeof(agentd_agent_type),
    .name = "burst",
    .description = "Burst {count, rate, run, topic?, bytes?, retry_ms?, start_ns?}: publishes numbered BurstEvents from a thread; "
                   "BurstStatus {run}",
    .handlers = burst_handlers,
    .handler_count = sizeof burst_handlers / sizeof burst_handlers[0],
}};

static void burst_unload(void) {
    pthread_mutex_lock(&g_runs_lock);
    burst_run *runs = g_runs;
    g_runs = NULL;
    pthread_mutex_unlock(&g_runs_lock);
    for (burst_run *r = runs; r; r = r->next) atomic_store(&r->stop, true);
    while (runs) {
        burst_run *r = runs;
        runs = r->next;
        if (r->thread_started) pthread_join(r->thread, NULL);
        free(r);
    }
}

static const agentd_plugin burst_plugin = {
    .size = sizeof(agentd_plugin),
    .abi_major = AGENTD_ABI_MAJOR,
    .abi_minor = AGENTD_ABI_MINOR,
    .name = "delivery-burst",
    .version = "1.0.0",
    .agent_types = burst_types,
    .agent_type_count = 1,
    .unload = burst_unload,
};

AGENTD_EXPORT const agentd_plugin *agentd_plugin_entry(const agentd_host_api *host, agentd_plugin_ref *self) {
    g_host = host;
    g_self = self;
    if (!AGENTD_HOST_HAS(host, plugin_publish)) {
        host->log(self, NULL, AGENTD_LOG_ERROR, agentd_cstr("delivery-burst needs plugin_publish (ABI 1.1)"));
        return NULL;
    }
    return &burst_plugin;
}
