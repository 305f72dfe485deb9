// DeliveryTallyPlugin: counts the numbered events DeliveryBurstPlugin publishes, for the delivery
// tests (Tests/Interop/test_delivery.py) and Benchmarks/delivery. Plugin "delivery-tally" 1.0.0,
// agent type `burst-tally`, subscribed to topic type `burst`: the events of burst run ID reach
// agent burst-tally/ID (one agent per run).
//
//   event `BurstEvent` {"run": ID, "seq": S, ...}
//       records that S arrived: a number seen before counts as a duplicate, a first arrival below
//       the highest number seen so far as out of order. A payload without a whole "seq" in
//       0...2^28-1 counts as malformed (and is logged). The CLOCK_MONOTONIC time of the first and
//       the last arrival is kept (the clock is system-wide: a benchmark compares it with the
//       burst's start).
//   RPC `Tally` {"of": N}   ("of" optional: the highest number seen + 1)
//       answers `TallyReport` {"run": ID, "received": R, "distinct": D, "duplicates": P,
//       "out_of_order": O, "malformed": X, "of": N, "missing": M, "first_missing": [S, ...],
//       "beyond": B, "first_ns": T0, "last_ns": T1}: R arrivals in all, D distinct numbers, M of
//       0...N-1 never arrived (the first 20 of them listed), B distinct numbers >= N.
//       The RPC goes through the agent's mailbox, behind the events that arrived before it.
//
// The counts of a run are kept by the plugin until it is unloaded, not by the agent instance, so
// that an instance the runtime retires and activates again carries on with them (a hot reload of
// this plugin starts from zero).
#define _POSIX_C_SOURCE 200809L

#include <agent_plugin.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static agentd_plugin_ref *g_self;

#include <agent_plugin_json.h>

enum { SEQ_LIMIT = 1 << 28, FIRST_MISSING_LISTED = 20 };

typedef struct tally {
    char *run;        // the agent key (NUL-terminated copy)
    uint8_t *seen;    // bit S: S arrived
    size_t seen_bytes;
    int64_t received, distinct, duplicates, out_of_order, malformed;
    int64_t highest;  // the highest number seen, -1 before the first
    long long first_ns, last_ns;
    struct tally *next;
} tally;

// Every run's tally, found again by key when an agent is activated again. Only create() and
// unload touch the list; each tally itself is touched by its agent's handlers alone (one at a
// time), so it needs no lock.
static pthread_mutex_t g_tallies_lock = PTHREAD_MUTEX_INITIALIZER;
static tally *g_tallies;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static bool was_seen(const tally *t, int64_t seq) {
    size_t byte = (size_t)seq / 8;
    return byte < t->seen_bytes && (t->seen[byte] >> (seq % 8)) & 1;
}

// Marks `seq`; false when the bitmap cannot grow.
static bool mark_seen(tally *t, int64_t seq) {
    size_t byte = (size_t)seq / 8;
    if (byte >= t->seen_bytes) {
        size_t size = t->seen_bytes ? t->seen_bytes : 1024;
        while (size <= byte) size *= 2;
        uint8_t *grown = realloc(t->seen, size);
        if (!grown) return false;
        memset(grown + t->seen_bytes, 0, size - t->seen_bytes);
        t->seen = grown;
        t->seen_bytes = size;
    }
    t->seen[byte] |= (uint8_t)(1u << (seq % 8));
    return true;
}

// --- Handlers -------------------------------------------------------------------------------------

static agentd_status on_burst_event(void *instance, const agentd_message *m) {
    tally *t = instance;
    if (m->is_rpc) {
        return m->host->fail(m->call, AGENTD_UNKNOWN_MESSAGE_TYPE,
                             agentd_cstr("burst-tally: BurstEvent is an event here; ask with Tally"));
    }
    long long now = now_ns();
    if (t->received == 0) t->first_ns = now;
    t->last_ns = now;
    t->received++;
    json_scanner scanner;
    int64_t seq = -1;
    json_integer_result found = json_find_integer_member(&scanner, m->payload, "seq", &seq, NULL);
    if (found != INTEGER_FOUND || seq < 0 || seq >= SEQ_LIMIT) {
        t->malformed++;
        char why[300];
        snprintf(why, sizeof why, "burst-tally/%s: a BurstEvent without a whole \"seq\" in 0...%d (%s)", t->run,
                 SEQ_LIMIT - 1, found == INTEGER_MALFORMED ? scanner.error : "missing, not whole, or out of range");
        m->host->log(g_self, m->agent, AGENTD_LOG_WARNING, agentd_cstr(why));
        return AGENTD_OK;
    }
    if (was_seen(t, seq)) {
        t->duplicates++;
        return AGENTD_OK;
    }
    if (!mark_seen(t, seq)) {
        t->malformed++;
        m->host->log(g_self, m->agent, AGENTD_LOG_ERROR, agentd_cstr("burst-tally: out of memory"));
        return AGENTD_FAILED;
    }
    t->distinct++;
    if (seq < t->highest) t->out_of_order++;
    if (seq > t->highest) t->highest = seq;
    return AGENTD_OK;
}

static agentd_status on_tally(void *instance, const agentd_message *m) {
    tally *t = instance;
    if (!m->is_rpc) return AGENTD_OK;
    json_scanner scanner;
    int64_t of = t->highest + 1;
    switch (json_find_integer_member(&scanner, m->payload, "of", &of, NULL)) {
    case INTEGER_FOUND:
    case INTEGER_MISSING:
        break;
    case INTEGER_NO_MEMORY:
        return m->host->fail(m->call, AGENTD_FAILED, agentd_cstr("burst-tally: out of memory"));
    default:
        return m->host->fail(m->call, AGENTD_INVALID_ARGUMENT,
                             agentd_cstr("burst-tally: Tally takes {\"of\": N} (N a whole number, optional)"));
    }
    if (of < 0 || of > SEQ_LIMIT) {
        return m->host->fail(m->call, AGENTD_INVALID_ARGUMENT, agentd_cstr("burst-tally: \"of\" must be 0...2^28"));
    }
    int64_t missing = 0, within = 0;
    char listed[FIRST_MISSING_LISTED * 12 + 4] = "";
    size_t listed_length = 0;
    for (int64_t seq = 0; seq < of; seq++) {
        if (was_seen(t, seq)) {
            within++;
        } else if (missing++ < FIRST_MISSING_LISTED) {
            listed_length += (size_t)snprintf(listed + listed_length, sizeof listed - listed_length,
                                              listed_length ? ", %" PRId64 : "%" PRId64, seq);
        }
    }
    char text[800];
    snprintf(text, sizeof text,
             ", \"received\": %" PRId64 ", \"distinct\": %" PRId64 ", \"duplicates\": %" PRId64
             ", \"out_of_order\": %" PRId64 ", \"malformed\": %" PRId64 ", \"of\": %" PRId64 ", \"missing\": %" PRId64
             ", \"first_missing\": [%s], \"beyond\": %" PRId64 ", \"first_ns\": %lld, \"last_ns\": %lld}",
             t->received, t->distinct, t->duplicates, t->out_of_order, t->malformed, of, missing, listed,
             t->distinct - within, t->first_ns, t->last_ns);
    json_buffer reply = {0};
    buffer_append_str(&reply, "{\"run\": ");
    json_append_string(&reply, t->run, strlen(t->run));
    buffer_append_str(&reply, text);
    return agentd_reply_json(m, "TallyReport", &reply);
}

// --- Instances ------------------------------------------------------------------------------------

static agentd_status tally_create(agentd_plugin_ref *plugin, const agentd_agent_type *type, agentd_agent_ref *agent,
                                  agentd_str key, void **instance) {
    (void)plugin;
    (void)type;
    (void)agent;
    pthread_mutex_lock(&g_tallies_lock);
    tally *t = g_tallies;
    while (t && !(strlen(t->run) == key.length && memcmp(t->run, key.data, key.length) == 0)) t = t->next;
    if (!t) {
        t = calloc(1, sizeof *t);
        char *run = malloc(key.length + 1);
        if (!t || !run) {
            free(t);
            free(run);
            pthread_mutex_unlock(&g_tallies_lock);
            return AGENTD_FAILED;
        }
        memcpy(run, key.data, key.length);
        run[key.length] = 0;
        t->run = run;
        t->highest = -1;
        t->next = g_tallies;
        g_tallies = t;
    }
    pthread_mutex_unlock(&g_tallies_lock);
    *instance = t;
    return AGENTD_OK;
}

static void tally_unload(void) {
    pthread_mutex_lock(&g_tallies_lock);
    while (g_tallies) {
        tally *t = g_tallies;
        g_tallies = t->next;
        free(t->seen);
        free(t->run);
        free(t);
    }
    pthread_mutex_unlock(&g_tallies_lock);
}

// --- The descriptor -------------------------------------------------------------------------------

static const agentd_handler tally_handlers[] = {
    {sizeof(agentd_handler), "BurstEvent", on_burst_event},
    {sizeof(agentd_handler), "Tally", on_tally},
};

static const agentd_subscription tally_subscriptions[] = {
    {sizeof(agentd_subscription), AGENTD_SUBSCRIBE_TOPIC_TYPE, "burst"},
};

static const agentd_agent_type tally_types[] = {{
    .size = sizeof(agentd_agent_type),
    .name = "burst-tally",
    .description = "Counts BurstEvents on topic burst per run (agent key): Tally {of?} answers TallyReport",
    .subscriptions = tally_subscriptions,
    .subscription_count = 1,
    .handlers = tally_handlers,
    .handler_count = sizeof tally_handlers / sizeof tally_handlers[0],
    .create = tally_create,
}};

static const agentd_plugin tally_plugin = {
    .size = sizeof(agentd_plugin),
    .abi_major = AGENTD_ABI_MAJOR,
    .abi_minor = AGENTD_ABI_MINOR,
    .name = "delivery-tally",
    .version = "1.0.0",
    .agent_types = tally_types,
    .agent_type_count = 1,
    .unload = tally_unload,
};

AGENTD_EXPORT const agentd_plugin *agentd_plugin_entry(const agentd_host_api *host, agentd_plugin_ref *self) {
    (void)host;
    g_self = self;
    return &tally_plugin;
}
