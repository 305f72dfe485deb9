// The receiving side of Benchmarks/compare: agent types that count the events they receive.
//
// Plugin "bench-agents" 1.0.0:
//   bench-sink                 subscribed to topic type `bench-events`
//   bench-fan-0 … bench-fan-9  each subscribed to topic type `bench-fanout` (ten deliveries
//                              per publish)
// Every agent (one instance per topic source) counts each event of any message type and
// records the CLOCK_MONOTONIC time of its first and last one (the clock is system-wide, so the
// load generator in another process can compare its own publish times with them).
//   RPC `GetStats` {}          replies `BenchStats` {"count": N, "first_ns": F, "last_ns": L}
// (The RPC goes through the agent's mailbox behind the events that arrived before it.)
//
//   bench-state                subscribed to topic type `bench-state-events`: the same counter,
//                              keeping its state (snapshot/restore, ABI 1.2's state_changed),
//                              for runtime-bench's state section. Each event, and each RPC
//                              `Echo` (answered with its own payload), counts one and calls
//                              state_changed; `GetStats` changes nothing. Its snapshot is the
//                              three counters (24 bytes) followed by `[plugin.bench-agents]
//                              state_bytes` bytes of padding (default 0), restored exactly.
//   RPC `EchoDeferred`         (bench-state) as Echo, but answered from a thread of the plugin's
//                              own (the handler returns AGENTD_PENDING and hands the call over):
//                              the cost of answering from a thread other than the one that read
//                              the request, which a store's held answers also pay.
//   RPC `Stamps` {}            (bench-state) replies {"stamps_ns": [T, ...], "kinds": "EEG…"}: the
//                              CLOCK_MONOTONIC time at which each bench-state handler was entered
//                              since the previous Stamps (E event, C Echo, G GetStats; at most the
//                              last 131,072), for runtime-bench's timelines. (Each runtime loads its
//                              own copy of the plugin, so these counts and stamps are per runtime.)
//   RPC `Heap` {}              (bench-state) replies {"used": U, "free": F, "mapped": M}: glibc's
//                              mallinfo2() for the whole process (bytes in use in the arenas and
//                              in separately mapped blocks, free in the arenas, mapped blocks).
//   RPC `Trim` {}              (bench-state) calls glibc's malloc_trim(0) (free heap pages given
//                              back to the system) and replies {"trimmed": 0|1}.
//   RPC `Totals` {}            (bench-state) replies {"handled": N, "created": C, "restored": R,
//                              "destroyed": D}: events and Echo RPCs handled, instances created,
//                              restored and destroyed, by every bench-state agent of the process
//                              (for pacing a load, and counting resident agents).
//
//   bench-work                 SHARED (AGENTD_AGENT_TYPE_SHARED, ABI 1.3), for Benchmarks/shared: an
//                              agent that works, keeping a per-key counter (snapshot/restore: the
//                              JSON {"count": N}, so its state follows its key from runtime to runtime).
//   RPC `Work` {"us": N}       burns N µs of CPU (default `[plugin.bench-agents] work_us`, 1000) by
//                              a loop calibrated at load against the thread's CPU clock (not a
//                              sleep: the handler keeps its worker thread busy that long), counts
//                              one, calls state_changed and replies `WorkDone` {"count": C,
//                              "rt": "LABEL", "pid": P, "cpu_ns": T}: the counter after this call,
//                              the runtime that answered (`[plugin.bench-agents] label`, default
//                              its pid), and the CPU time the loop took on the handler's thread.
//   RPC `Peek` {}              the same answer without working or changing anything (cpu_ns 0).
//
// AutoGen's side of the comparison implements the same agents in Python (Benchmarks/compare).
// (bench-work has no AutoGen counterpart: AutoGen serves a type from one worker.)
#include <agent_plugin.h>
#include <malloc.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct bench_counter {
    long long count;
    long long first_ns;
    long long last_ns;
} bench_counter;

static const agentd_host_api *g_host;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static agentd_status create(agentd_plugin_ref *plugin, const agentd_agent_type *type, agentd_agent_ref *agent,
                            agentd_str key, void **instance) {
    (void)plugin;
    (void)type;
    (void)agent;
    (void)key;
    bench_counter *counter = calloc(1, sizeof *counter);
    if (!counter) return AGENTD_FAILED;
    *instance = counter;
    return AGENTD_OK;
}

static void destroy(void *instance) { free(instance); }

static agentd_status on_event(void *instance, const agentd_message *m) {
    if (m->is_rpc) return m->host->fail(m->call, AGENTD_UNKNOWN_MESSAGE_TYPE, agentd_cstr("bench: events only"));
    bench_counter *counter = instance;
    long long now = now_ns();
    if (counter->count == 0) counter->first_ns = now;
    counter->last_ns = now;
    counter->count++;
    return AGENTD_OK;
}

static agentd_status on_stats(void *instance, const agentd_message *m) {
    if (!m->is_rpc) return AGENTD_OK;
    bench_counter *counter = instance;
    char json[160];
    int n = snprintf(json, sizeof json, "{\"count\": %lld, \"first_ns\": %lld, \"last_ns\": %lld}", counter->count,
                     counter->first_ns, counter->last_ns);
    agentd_bytes payload = {(const uint8_t *)json, (size_t)n};
    return g_host->reply(m->call, agentd_cstr("BenchStats"), agentd_cstr("application/json"), payload);
}

// MARK: bench-state: the counter, keeping its state

/* The snapshot's fixed part: count, first_ns, last_ns (little-endian on every machine we run). */
#define STATE_HEADER_BYTES 24

typedef struct bench_state {
    bench_counter counter;
    size_t padding;  /* bytes of padding the snapshot carries after the header */
} bench_state;

/* Process-wide counts of every bench-state agent (atomics: agents run on several threads). */
static long long g_state_handled;
static long long g_state_created;
static long long g_state_restored;
static long long g_state_destroyed;
/* [plugin.bench-agents] state_bytes, read once (-1: not read yet). */
static long long g_state_padding = -1;
static const uint8_t g_padding_bytes[4096];

/* Handler entry times: a ring the Stamps RPC empties (slot i holds stamp number i mod size). */
#define STAMP_SLOTS 131072
static long long g_stamp_ns[STAMP_SLOTS];
static char g_stamp_kind[STAMP_SLOTS];
static long long g_stamps_written;
static long long g_stamps_read;

static void stamp(char kind) {
    long long now = now_ns();
    long long slot = __atomic_fetch_add(&g_stamps_written, 1, __ATOMIC_RELAXED) % STAMP_SLOTS;
    g_stamp_ns[slot] = now;
    g_stamp_kind[slot] = kind;
}

static size_t state_padding(agentd_plugin_ref *plugin) {
    long long padding = __atomic_load_n(&g_state_padding, __ATOMIC_RELAXED);
    if (padding >= 0) return (size_t)padding;
    padding = 0;
    agentd_str value;
    if (g_host->setting(plugin, agentd_cstr("state_bytes"), &value) == AGENTD_OK && value.length < 16) {
        char text[16];
        memcpy(text, value.data, value.length);
        text[value.length] = 0;
        padding = strtoll(text, NULL, 10);
        if (padding < 0) padding = 0;
    }
    __atomic_store_n(&g_state_padding, padding, __ATOMIC_RELAXED);
    return (size_t)padding;
}

static agentd_status state_create(agentd_plugin_ref *plugin, const agentd_agent_type *type, agentd_agent_ref *agent,
                                  agentd_str key, void **instance) {
    (void)type;
    (void)agent;
    (void)key;
    bench_state *state = calloc(1, sizeof *state);
    if (!state) return AGENTD_FAILED;
    state->padding = state_padding(plugin);
    *instance = state;
    __atomic_fetch_add(&g_state_created, 1, __ATOMIC_RELAXED);
    return AGENTD_OK;
}

static void state_destroy(void *instance) {
    free(instance);
    __atomic_fetch_add(&g_state_destroyed, 1, __ATOMIC_RELAXED);
}

static void count_one(bench_counter *counter) {
    long long now = now_ns();
    if (counter->count == 0) counter->first_ns = now;
    counter->last_ns = now;
    counter->count++;
}

/* state_changed is ABI 1.2: a runtime whose table is shorter keeps no state anyway. */
static agentd_status report_change(const agentd_message *m) {
    if (m->host->size < offsetof(agentd_host_api, state_changed) + sizeof m->host->state_changed) return AGENTD_OK;
    return m->host->state_changed(m->agent);
}

static agentd_status state_on_event(void *instance, const agentd_message *m) {
    if (m->is_rpc) return m->host->fail(m->call, AGENTD_UNKNOWN_MESSAGE_TYPE, agentd_cstr("bench: events only"));
    stamp('E');
    bench_state *state = instance;
    count_one(&state->counter);
    __atomic_fetch_add(&g_state_handled, 1, __ATOMIC_RELAXED);
    return report_change(m);
}

static agentd_status state_on_echo(void *instance, const agentd_message *m) {
    if (!m->is_rpc) return AGENTD_OK;
    stamp('C');
    bench_state *state = instance;
    count_one(&state->counter);
    __atomic_fetch_add(&g_state_handled, 1, __ATOMIC_RELAXED);
    report_change(m);
    return m->host->reply(m->call, m->message_type, m->content_type, m->payload);
}

/* EchoDeferred: calls handed to one plugin thread, which answers them (started on first use,
 * joined in unload). */
#define DEFERRED_SLOTS 1024
typedef struct deferred_call {
    agentd_call *call;
    size_t length;
    uint8_t payload[256];
} deferred_call;

static pthread_mutex_t g_deferred_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_deferred_ready = PTHREAD_COND_INITIALIZER;
static deferred_call g_deferred[DEFERRED_SLOTS];
static size_t g_deferred_head, g_deferred_count;
static int g_deferred_started, g_deferred_stopping;
static pthread_t g_deferred_thread;

static void *deferred_main(void *unused) {
    (void)unused;
    pthread_mutex_lock(&g_deferred_mutex);
    for (;;) {
        while (g_deferred_count == 0 && !g_deferred_stopping) pthread_cond_wait(&g_deferred_ready, &g_deferred_mutex);
        if (g_deferred_count == 0) break;
        deferred_call item = g_deferred[g_deferred_head];
        g_deferred_head = (g_deferred_head + 1) % DEFERRED_SLOTS;
        g_deferred_count--;
        pthread_mutex_unlock(&g_deferred_mutex);
        g_host->reply(item.call, agentd_cstr("Echo"), agentd_cstr("application/json"), (agentd_bytes){item.payload, item.length});
        pthread_mutex_lock(&g_deferred_mutex);
    }
    pthread_mutex_unlock(&g_deferred_mutex);
    return NULL;
}

static agentd_status state_on_echo_deferred(void *instance, const agentd_message *m) {
    if (!m->is_rpc) return AGENTD_OK;
    stamp('C');
    bench_state *state = instance;
    count_one(&state->counter);
    __atomic_fetch_add(&g_state_handled, 1, __ATOMIC_RELAXED);
    report_change(m);
    if (m->payload.length > sizeof g_deferred[0].payload) {
        return m->host->fail(m->call, AGENTD_INVALID_ARGUMENT, agentd_cstr("bench-state: EchoDeferred takes at most 256 bytes"));
    }
    pthread_mutex_lock(&g_deferred_mutex);
    if (!g_deferred_started) {
        if (pthread_create(&g_deferred_thread, NULL, deferred_main, NULL) != 0) {
            pthread_mutex_unlock(&g_deferred_mutex);
            return m->host->fail(m->call, AGENTD_FAILED, agentd_cstr("bench-state: cannot start its thread"));
        }
        g_deferred_started = 1;
    }
    if (g_deferred_count == DEFERRED_SLOTS) {
        pthread_mutex_unlock(&g_deferred_mutex);
        return m->host->fail(m->call, AGENTD_UNAVAILABLE, agentd_cstr("bench-state: too many deferred calls"));
    }
    deferred_call *item = &g_deferred[(g_deferred_head + g_deferred_count) % DEFERRED_SLOTS];
    item->call = m->call;
    item->length = m->payload.length;
    memcpy(item->payload, m->payload.data, m->payload.length);
    g_deferred_count++;
    pthread_cond_signal(&g_deferred_ready);
    pthread_mutex_unlock(&g_deferred_mutex);
    return AGENTD_PENDING;
}

static void unload(void) {
    pthread_mutex_lock(&g_deferred_mutex);
    g_deferred_stopping = 1;
    pthread_cond_signal(&g_deferred_ready);
    int started = g_deferred_started;
    pthread_mutex_unlock(&g_deferred_mutex);
    if (started) pthread_join(g_deferred_thread, NULL);
}

static agentd_status state_on_stats(void *instance, const agentd_message *m) {
    if (m->is_rpc) stamp('G');
    return on_stats(&((bench_state *)instance)->counter, m);
}

static agentd_status state_on_totals(void *instance, const agentd_message *m) {
    (void)instance;
    if (!m->is_rpc) return AGENTD_OK;
    char json[200];
    int n = snprintf(json, sizeof json, "{\"handled\": %lld, \"created\": %lld, \"restored\": %lld, \"destroyed\": %lld}",
                     __atomic_load_n(&g_state_handled, __ATOMIC_RELAXED), __atomic_load_n(&g_state_created, __ATOMIC_RELAXED),
                     __atomic_load_n(&g_state_restored, __ATOMIC_RELAXED),
                     __atomic_load_n(&g_state_destroyed, __ATOMIC_RELAXED));
    agentd_bytes payload = {(const uint8_t *)json, (size_t)n};
    return g_host->reply(m->call, agentd_cstr("BenchTotals"), agentd_cstr("application/json"), payload);
}

static agentd_status state_on_heap(void *instance, const agentd_message *m) {
    (void)instance;
    if (!m->is_rpc) return AGENTD_OK;
    struct mallinfo2 info = mallinfo2();
    char json[200];
    int n = snprintf(json, sizeof json, "{\"used\": %zu, \"free\": %zu, \"mapped\": %zu}", info.uordblks + info.hblkhd,
                     info.fordblks, info.hblkhd);
    return g_host->reply(m->call, agentd_cstr("BenchHeap"), agentd_cstr("application/json"), (agentd_bytes){(const uint8_t *)json, (size_t)n});
}

static agentd_status state_on_trim(void *instance, const agentd_message *m) {
    (void)instance;
    if (!m->is_rpc) return AGENTD_OK;
    char json[32];
    int n = snprintf(json, sizeof json, "{\"trimmed\": %d}", malloc_trim(0));
    return g_host->reply(m->call, agentd_cstr("BenchTrim"), agentd_cstr("application/json"), (agentd_bytes){(const uint8_t *)json, (size_t)n});
}

/* Stamps are read while no bench-state handler runs (the bench makes sure), so plain reads. */
static agentd_status state_on_stamps(void *instance, const agentd_message *m) {
    (void)instance;
    if (!m->is_rpc) return AGENTD_OK;
    long long written = __atomic_load_n(&g_stamps_written, __ATOMIC_ACQUIRE);
    long long first = g_stamps_read > written - STAMP_SLOTS ? g_stamps_read : written - STAMP_SLOTS;
    long long count = written - first;
    size_t capacity = 64 + (size_t)count * 22;
    char *json = malloc(capacity);
    if (!json) return g_host->fail(m->call, AGENTD_FAILED, agentd_cstr("bench-state: out of memory"));
    size_t n = (size_t)snprintf(json, capacity, "{\"stamps_ns\": [");
    for (long long i = first; i < written; i++) {
        n += (size_t)snprintf(json + n, capacity - n, i > first ? ", %lld" : "%lld", g_stamp_ns[i % STAMP_SLOTS]);
    }
    n += (size_t)snprintf(json + n, capacity - n, "], \"kinds\": \"");
    for (long long i = first; i < written; i++) json[n++] = g_stamp_kind[i % STAMP_SLOTS];
    n += (size_t)snprintf(json + n, capacity - n, "\"}");
    g_stamps_read = written;
    agentd_bytes payload = {(const uint8_t *)json, n};
    agentd_status status = g_host->reply(m->call, agentd_cstr("BenchStamps"), agentd_cstr("application/json"), payload);
    free(json);
    return status;
}

static agentd_status state_snapshot(void *instance, agentd_write_fn write, void *sink) {
    bench_state *state = instance;
    uint8_t header[STATE_HEADER_BYTES];
    memcpy(header, &state->counter.count, 8);
    memcpy(header + 8, &state->counter.first_ns, 8);
    memcpy(header + 16, &state->counter.last_ns, 8);
    write(sink, (agentd_bytes){header, sizeof header});
    for (size_t left = state->padding; left > 0;) {
        size_t chunk = left < sizeof g_padding_bytes ? left : sizeof g_padding_bytes;
        write(sink, (agentd_bytes){g_padding_bytes, chunk});
        left -= chunk;
    }
    return AGENTD_OK;
}

static agentd_status state_restore(void *instance, agentd_bytes bytes) {
    bench_state *state = instance;
    if (bytes.length < STATE_HEADER_BYTES) return AGENTD_INVALID_ARGUMENT;
    memcpy(&state->counter.count, bytes.data, 8);
    memcpy(&state->counter.first_ns, bytes.data + 8, 8);
    memcpy(&state->counter.last_ns, bytes.data + 16, 8);
    __atomic_fetch_add(&g_state_restored, 1, __ATOMIC_RELAXED);
    return AGENTD_OK;
}

static const agentd_handler state_handlers[] = {
    {sizeof(agentd_handler), "GetStats", state_on_stats},
    {sizeof(agentd_handler), "Echo", state_on_echo},
    {sizeof(agentd_handler), "EchoDeferred", state_on_echo_deferred},
    {sizeof(agentd_handler), "Totals", state_on_totals},
    {sizeof(agentd_handler), "Stamps", state_on_stamps},
    {sizeof(agentd_handler), "Heap", state_on_heap},
    {sizeof(agentd_handler), "Trim", state_on_trim},
    {sizeof(agentd_handler), "*", state_on_event},
};

static const agentd_subscription state_subscriptions[] = {
    {sizeof(agentd_subscription), AGENTD_SUBSCRIBE_TOPIC_TYPE, "bench-state-events"},
};

// MARK: bench-work: a shared type whose handler burns CPU

typedef struct bench_work {
    long long count;
} bench_work;

/* [plugin.bench-agents] work_us (default 1000) and label (default: the pid), read once by the
 * first create. */
static pthread_once_t g_work_settings_once = PTHREAD_ONCE_INIT;
static agentd_plugin_ref *g_work_plugin;
static long long g_work_default_us = 1000;
static char g_work_label[64];
/* Loop iterations per µs of CPU (calibrated once, when the plugin is loaded). */
static pthread_once_t g_work_calibrate_once = PTHREAD_ONCE_INIT;
static double g_work_iterations_per_us;
static uint64_t g_work_sink;

static long long thread_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* xorshift64: a chain of dependent integer operations. The empty asm makes every iteration's
 * value one the compiler must produce (without it, clang -O3 folds the whole loop away). */
static uint64_t burn(uint64_t iterations) {
    uint64_t x = 0x9e3779b97f4a7c15ULL ^ iterations;
    for (uint64_t i = 0; i < iterations; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        __asm__ volatile("" : "+r"(x));
    }
    return x;
}

static void work_calibrate(void) {
    /* The fastest of several 2 ms rounds on the thread's CPU clock: the least disturbed one
     * (time on the CPU clock already leaves out the time the thread was preempted). */
    uint64_t iterations = 200000;
    double best = 0;
    for (int round = 0; round < 7; round++) {
        long long start = thread_cpu_ns();
        __atomic_store_n(&g_work_sink, burn(iterations), __ATOMIC_RELAXED);
        long long spent = thread_cpu_ns() - start;
        if (spent <= 0) continue;
        double rate = (double)iterations / ((double)spent / 1000.0);
        if (rate > best) best = rate;
        if (round == 0) iterations = (uint64_t)(rate * 2000.0);  /* then rounds of ~2 ms */
    }
    g_work_iterations_per_us = best > 0 ? best : 100.0;
}

static void work_read_settings(void) {
    agentd_str value;
    if (g_host->setting(g_work_plugin, agentd_cstr("work_us"), &value) == AGENTD_OK && value.length < 16) {
        char text[16];
        memcpy(text, value.data, value.length);
        text[value.length] = 0;
        long long us = strtoll(text, NULL, 10);
        if (us >= 0) g_work_default_us = us;
    }
    if (g_host->setting(g_work_plugin, agentd_cstr("label"), &value) == AGENTD_OK && value.length > 0 &&
        value.length < sizeof g_work_label) {
        memcpy(g_work_label, value.data, value.length);
        g_work_label[value.length] = 0;
        for (size_t i = 0; i < value.length; i++) {
            if (g_work_label[i] == '"' || g_work_label[i] == '\\') g_work_label[i] = '_';
        }
    } else {
        snprintf(g_work_label, sizeof g_work_label, "pid-%d", (int)getpid());
    }
}

static agentd_status work_create(agentd_plugin_ref *plugin, const agentd_agent_type *type, agentd_agent_ref *agent,
                                 agentd_str key, void **instance) {
    (void)type;
    (void)agent;
    (void)key;
    __atomic_store_n(&g_work_plugin, plugin, __ATOMIC_RELAXED);  /* the same one every time */
    pthread_once(&g_work_settings_once, work_read_settings);
    bench_work *work = calloc(1, sizeof *work);
    if (!work) return AGENTD_FAILED;
    *instance = work;
    return AGENTD_OK;
}

static agentd_status work_answer(const bench_work *work, const agentd_message *m, long long cpu_ns) {
    char json[200];
    int n = snprintf(json, sizeof json, "{\"count\": %lld, \"rt\": \"%s\", \"pid\": %d, \"cpu_ns\": %lld}", work->count,
                     g_work_label, (int)getpid(), cpu_ns);
    return m->host->reply(m->call, agentd_cstr("WorkDone"), agentd_cstr("application/json"),
                          (agentd_bytes){(const uint8_t *)json, (size_t)n});
}

/* The request's "us" field, if it has one (a small JSON object: no full parser needed). */
static long long work_us(const agentd_message *m) {
    const char *data = (const char *)m->payload.data;
    size_t length = m->payload.length;
    for (size_t i = 0; i + 4 <= length; i++) {
        if (memcmp(data + i, "\"us\"", 4) != 0) continue;
        size_t j = i + 4;
        while (j < length && (data[j] == ' ' || data[j] == ':')) j++;
        long long us = 0;
        int digits = 0;
        while (j < length && data[j] >= '0' && data[j] <= '9' && digits < 12) us = us * 10 + (data[j++] - '0'), digits++;
        if (digits) return us;
    }
    return g_work_default_us;
}

static agentd_status work_on_work(void *instance, const agentd_message *m) {
    if (!m->is_rpc) return AGENTD_OK;
    bench_work *work = instance;
    long long us = work_us(m);
    long long cpu_ns = 0;
    if (us > 0) {
        pthread_once(&g_work_calibrate_once, work_calibrate);
        long long start = thread_cpu_ns();
        __atomic_store_n(&g_work_sink, burn((uint64_t)(g_work_iterations_per_us * (double)us)), __ATOMIC_RELAXED);
        cpu_ns = thread_cpu_ns() - start;
    }
    work->count++;
    report_change(m);
    return work_answer(work, m, cpu_ns);
}

static agentd_status work_on_peek(void *instance, const agentd_message *m) {
    if (!m->is_rpc) return AGENTD_OK;
    return work_answer(instance, m, 0);
}

static agentd_status work_snapshot(void *instance, agentd_write_fn write, void *sink) {
    const bench_work *work = instance;
    char json[48];
    int n = snprintf(json, sizeof json, "{\"count\": %lld}", work->count);
    write(sink, (agentd_bytes){(const uint8_t *)json, (size_t)n});
    return AGENTD_OK;
}

static agentd_status work_restore(void *instance, agentd_bytes bytes) {
    bench_work *work = instance;
    char text[48];
    if (bytes.length == 0 || bytes.length >= sizeof text) return AGENTD_INVALID_ARGUMENT;
    memcpy(text, bytes.data, bytes.length);
    text[bytes.length] = 0;
    const char *colon = strchr(text, ':');
    if (strncmp(text, "{\"count\"", 8) != 0 || !colon) return AGENTD_INVALID_ARGUMENT;
    char *end;
    long long count = strtoll(colon + 1, &end, 10);
    if (end == colon + 1 || count < 0) return AGENTD_INVALID_ARGUMENT;
    work->count = count;
    return AGENTD_OK;
}

static const agentd_handler work_handlers[] = {
    {sizeof(agentd_handler), "Work", work_on_work},
    {sizeof(agentd_handler), "Peek", work_on_peek},
};

// MARK: The descriptor

static const agentd_handler handlers[] = {
    {sizeof(agentd_handler), "GetStats", on_stats},
    {sizeof(agentd_handler), "*", on_event},
};

static const agentd_subscription sink_subscriptions[] = {
    {sizeof(agentd_subscription), AGENTD_SUBSCRIBE_TOPIC_TYPE, "bench-events"},
};
static const agentd_subscription fan_subscriptions[] = {
    {sizeof(agentd_subscription), AGENTD_SUBSCRIBE_TOPIC_TYPE, "bench-fanout"},
};

#define BENCH_TYPE(NAME, SUBS)                                                                    \
    {                                                                                             \
        .size = sizeof(agentd_agent_type), .name = NAME, .description = "counts events (bench)", \
        .subscriptions = SUBS, .subscription_count = 1, .handlers = handlers,                     \
        .handler_count = sizeof handlers / sizeof handlers[0], .create = create, .destroy = destroy, \
    }

static const agentd_agent_type types[] = {
    BENCH_TYPE("bench-sink", sink_subscriptions),
    BENCH_TYPE("bench-fan-0", fan_subscriptions),
    BENCH_TYPE("bench-fan-1", fan_subscriptions),
    BENCH_TYPE("bench-fan-2", fan_subscriptions),
    BENCH_TYPE("bench-fan-3", fan_subscriptions),
    BENCH_TYPE("bench-fan-4", fan_subscriptions),
    BENCH_TYPE("bench-fan-5", fan_subscriptions),
    BENCH_TYPE("bench-fan-6", fan_subscriptions),
    BENCH_TYPE("bench-fan-7", fan_subscriptions),
    BENCH_TYPE("bench-fan-8", fan_subscriptions),
    BENCH_TYPE("bench-fan-9", fan_subscriptions),
    {
        .size = sizeof(agentd_agent_type), .name = "bench-state",
        .description = "counts events and Echo RPCs, keeping its state (bench)",
        .subscriptions = state_subscriptions, .subscription_count = 1, .handlers = state_handlers,
        .handler_count = sizeof state_handlers / sizeof state_handlers[0], .create = state_create, .destroy = state_destroy,
        .snapshot = state_snapshot, .restore = state_restore,
    },
    {
        .size = sizeof(agentd_agent_type), .name = "bench-work",
        .description = "burns CPU per Work RPC and counts them, keeping its state; shared (bench)",
        .handlers = work_handlers, .handler_count = sizeof work_handlers / sizeof work_handlers[0],
        .create = work_create, .destroy = destroy, .snapshot = work_snapshot, .restore = work_restore,
        .flags = AGENTD_AGENT_TYPE_SHARED,
    },
};

static const agentd_plugin plugin = {
    .size = sizeof(agentd_plugin),
    .abi_major = AGENTD_ABI_MAJOR,
    .abi_minor = AGENTD_ABI_MINOR,
    .name = "bench-agents",
    .version = "1.0.0",
    .agent_types = types,
    .agent_type_count = sizeof types / sizeof types[0],
    .unload = unload,
};

AGENTD_EXPORT const agentd_plugin *agentd_plugin_entry(const agentd_host_api *host, agentd_plugin_ref *self) {
    (void)self;
    g_host = host;
    /* bench-work's loop, calibrated now: at start-up rather than in the first Work a runtime
     * handles (which a key moved to a runtime just joined would then wait for). */
    pthread_once(&g_work_calibrate_once, work_calibrate);
    return &plugin;
}
