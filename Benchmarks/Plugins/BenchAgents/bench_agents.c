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
// AutoGen's side of the comparison implements the same agents in Python (Benchmarks/compare).
#include <agent_plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

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
};

static const agentd_plugin plugin = {
    .size = sizeof(agentd_plugin),
    .abi_major = AGENTD_ABI_MAJOR,
    .abi_minor = AGENTD_ABI_MINOR,
    .name = "bench-agents",
    .version = "1.0.0",
    .agent_types = types,
    .agent_type_count = sizeof types / sizeof types[0],
    .unload = NULL,
};

AGENTD_EXPORT const agentd_plugin *agentd_plugin_entry(const agentd_host_api *host, agentd_plugin_ref *self) {
    (void)self;
    g_host = host;
    return &plugin;
}
