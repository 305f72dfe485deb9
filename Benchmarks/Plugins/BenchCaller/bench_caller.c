// The calling agent of Benchmarks/compare's RPC scenario (our side), loaded by the load
// generator's embedded runtime: agent-to-agent RPCs the way a plugin makes them.
//
// Plugin "bench-caller" 1.0.0, agent type `bench-caller`:
//   RPC `RunCalls` {"count": N, "to_type": T, "to_key": K}
//       sends N sequential RPCs `Echo` {"text": "ping"} to agent T/K as this agent: each one
//       from the answer callback of the previous one (the runtime calls it on the thread that
//       read the answer). Each call is timed with CLOCK_MONOTONIC from just before send() to
//       the start of its answer callback. Then replies `CallStats`
//       {"count": N, "failed": F, "samples_ns": [S1, S2, ...]} (F: answers that were errors).
//       The handler returns AGENTD_PENDING; the last answer callback replies.
//       Optional members (runtime-bench's state section): "message_type": M sends M instead
//       of Echo (same payload); "key_count": C > 0 sends call i to key "K-(i mod C)" instead of
//       K, so that C agents are each addressed in turn; "stamps": 1 adds "sent_ns": [T1, ...],
//       the CLOCK_MONOTONIC time each call was sent; "alternate_key": A sends every odd call
//       to A instead, and the even ones as above numbered i/2 (a call to a fresh agent, then
//       one to a resident reference agent, in turn).
#include <agent_plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const agentd_host_api *g_host;

typedef struct caller_run {
    agentd_call *call;
    agentd_agent_ref *agent;
    char to_type[128];
    char to_key[128];
    char message_type[128];
    long long key_count;
    char alternate_key[128];
    long long total;
    long long done;
    long long failed;
    long long sent_ns;
    long long *samples;
    /* With "stamps": when each call was sent (else NULL). */
    long long *sent;
} caller_run;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static const char k_ping[] = "{\"text\": \"ping\"}";

/* The string member `name` of a flat JSON object (no escapes needed here), into `out`. */
static int json_string(const char *json, const char *name, char *out, size_t size) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\"", name);
    const char *at = strstr(json, pattern);
    if (!at) return 0;
    at = strchr(at + strlen(pattern), '"');
    if (!at) return 0;
    const char *end = strchr(at + 1, '"');
    if (!end || (size_t)(end - at - 1) >= size) return 0;
    memcpy(out, at + 1, (size_t)(end - at - 1));
    out[end - at - 1] = 0;
    return 1;
}

static void finish(caller_run *run) {
    size_t capacity = 128 + (size_t)run->total * (run->sent ? 42 : 21);
    char *json = malloc(capacity);
    if (!json) {
        g_host->fail(run->call, AGENTD_FAILED, agentd_cstr("bench-caller: out of memory"));
    } else {
        size_t n = (size_t)snprintf(json, capacity, "{\"count\": %lld, \"failed\": %lld, \"samples_ns\": [",
                                    run->total, run->failed);
        for (long long i = 0; i < run->done; i++) {
            n += (size_t)snprintf(json + n, capacity - n, i ? ", %lld" : "%lld", run->samples[i]);
        }
        n += (size_t)snprintf(json + n, capacity - n, "]");
        if (run->sent) {
            n += (size_t)snprintf(json + n, capacity - n, ", \"sent_ns\": [");
            for (long long i = 0; i < run->done; i++) {
                n += (size_t)snprintf(json + n, capacity - n, i ? ", %lld" : "%lld", run->sent[i]);
            }
            n += (size_t)snprintf(json + n, capacity - n, "]");
        }
        n += (size_t)snprintf(json + n, capacity - n, "}");
        agentd_bytes payload = {(const uint8_t *)json, n};
        g_host->reply(run->call, agentd_cstr("CallStats"), agentd_cstr("application/json"), payload);
        free(json);
    }
    free(run->samples);
    free(run->sent);
    free(run);
}

static void on_answer(void *context, const agentd_response *response);

static void send_next(caller_run *run) {
    agentd_bytes payload = {(const uint8_t *)k_ping, sizeof k_ping - 1};
    char key[160];
    agentd_str to_key = agentd_cstr(run->to_key);
    long long number = run->done;
    if (run->alternate_key[0]) {
        if (run->done % 2 == 1) to_key = agentd_cstr(run->alternate_key);
        number = run->done / 2;
    }
    if (run->key_count > 0 && !(run->alternate_key[0] && run->done % 2 == 1)) {
        int n = snprintf(key, sizeof key, "%s-%lld", run->to_key, number % run->key_count);
        to_key = (agentd_str){key, (size_t)n};
    }
    run->sent_ns = now_ns();
    if (run->sent) run->sent[run->done] = run->sent_ns;
    agentd_status status = g_host->send(run->agent, agentd_cstr(run->to_type), to_key,
                                        agentd_cstr(run->message_type), agentd_cstr("application/json"), payload, on_answer, run);
    if (status != AGENTD_OK) {
        g_host->fail(run->call, status, agentd_cstr("bench-caller: send() refused"));
        free(run->samples);
        free(run->sent);
        free(run);
    }
}

static void on_answer(void *context, const agentd_response *response) {
    long long now = now_ns();
    caller_run *run = context;
    run->samples[run->done++] = now - run->sent_ns;
    if (response->status != AGENTD_OK) run->failed++;
    if (run->done == run->total) {
        finish(run);
    } else {
        send_next(run);
    }
}

static agentd_status on_run_calls(void *instance, const agentd_message *m) {
    (void)instance;
    if (!m->is_rpc) return AGENTD_OK;
    char json[512];
    size_t length = m->payload.length < sizeof json - 1 ? m->payload.length : sizeof json - 1;
    memcpy(json, m->payload.data, length);
    json[length] = 0;
    const char *count_at = strstr(json, "\"count\"");
    const char *colon = count_at ? strchr(count_at, ':') : NULL;
    long long count = colon ? strtoll(colon + 1, NULL, 10) : 0;
    caller_run *run = calloc(1, sizeof *run);
    if (!run) return g_host->fail(m->call, AGENTD_FAILED, agentd_cstr("bench-caller: out of memory"));
    if (count <= 0 || !json_string(json, "to_type", run->to_type, sizeof run->to_type) ||
        !json_string(json, "to_key", run->to_key, sizeof run->to_key)) {
        free(run);
        return g_host->fail(m->call, AGENTD_INVALID_ARGUMENT,
                            agentd_cstr("bench-caller: RunCalls needs {\"count\": N > 0, \"to_type\": T, \"to_key\": K}"));
    }
    if (!json_string(json, "message_type", run->message_type, sizeof run->message_type)) {
        snprintf(run->message_type, sizeof run->message_type, "Echo");
    }
    if (!json_string(json, "alternate_key", run->alternate_key, sizeof run->alternate_key)) run->alternate_key[0] = 0;
    const char *keys_at = strstr(json, "\"key_count\"");
    const char *keys_colon = keys_at ? strchr(keys_at, ':') : NULL;
    run->key_count = keys_colon ? strtoll(keys_colon + 1, NULL, 10) : 0;
    run->samples = malloc((size_t)count * sizeof *run->samples);
    if (strstr(json, "\"stamps\": 1")) run->sent = malloc((size_t)count * sizeof *run->sent);
    if (!run->samples || (strstr(json, "\"stamps\": 1") && !run->sent)) {
        free(run->sent);
        free(run->samples);
        free(run);
        return g_host->fail(m->call, AGENTD_FAILED, agentd_cstr("bench-caller: out of memory"));
    }
    run->call = m->call;
    run->agent = m->agent;
    run->total = count;
    send_next(run);
    return AGENTD_PENDING;
}

static const agentd_handler handlers[] = {
    {sizeof(agentd_handler), "RunCalls", on_run_calls},
};

static const agentd_agent_type types[] = {
    {
        .size = sizeof(agentd_agent_type),
        .name = "bench-caller",
        .description = "RunCalls {count, to_type, to_key}: N sequential Echo RPCs, timed; answers CallStats",
        .handlers = handlers,
        .handler_count = sizeof handlers / sizeof handlers[0],
    },
};

static const agentd_plugin plugin = {
    .size = sizeof(agentd_plugin),
    .abi_major = AGENTD_ABI_MAJOR,
    .abi_minor = AGENTD_ABI_MINOR,
    .name = "bench-caller",
    .version = "1.0.0",
    .agent_types = types,
    .agent_type_count = sizeof types / sizeof types[0],
};

AGENTD_EXPORT const agentd_plugin *agentd_plugin_entry(const agentd_host_api *host, agentd_plugin_ref *self) {
    (void)self;
    g_host = host;
    return &plugin;
}
