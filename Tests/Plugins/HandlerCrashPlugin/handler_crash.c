// HandlerCrashPlugin: a plugin whose handlers crash the process on request, for the tests of
// `agentd run`'s supervisor. Plugin "handler-crash" 1.0.0, one agent type, `segfault`:
//
//   RPC `Ping`  -> reply `Pong` {} (the plugin serves while nothing crashed it)
//   RPC `Crash` -> writes through a NULL pointer (SIGSEGV) in the handler
//   RPC `Abort` -> calls abort() (SIGABRT) in the handler
//   RPC `CrashLater` -> reply `Scheduled` {}, then a thread the plugin starts writes through a
//                  NULL pointer 100 ms later: a crash in the plugin's code outside any handler
//   event `Crash` published to topic type `crash-events` (the type is subscribed to it): the
//                  same NULL write, in an event handler
//
// Loading it is harmless (the probe passes); only its handlers crash.
#include <agent_plugin.h>

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

static agentd_status on_ping(void *instance, const agentd_message *m) {
    (void)instance;
    if (!m->is_rpc) return AGENTD_OK;
    return m->host->reply(m->call, agentd_cstr("Pong"), agentd_cstr("application/json"),
                          (agentd_bytes){(const uint8_t *)"{}", 2});
}

static agentd_status on_crash(void *instance, const agentd_message *m) {
    (void)instance;
    (void)m;
    volatile int *nowhere = NULL;
    *nowhere = 42;
    return AGENTD_OK;
}

static agentd_status on_abort(void *instance, const agentd_message *m) {
    (void)instance;
    (void)m;
    abort();
}

static void *crash_soon(void *unused) {
    (void)unused;
    struct timespec pause = {0, 100 * 1000 * 1000};
    nanosleep(&pause, NULL);
    volatile int *nowhere = NULL;
    *nowhere = 7;
    return NULL;
}

static agentd_status on_crash_later(void *instance, const agentd_message *m) {
    (void)instance;
    pthread_t thread;
    if (pthread_create(&thread, NULL, crash_soon, NULL) != 0) {
        return m->host->fail(m->call, AGENTD_FAILED, agentd_cstr("handler-crash: cannot start a thread"));
    }
    pthread_detach(thread);
    if (!m->is_rpc) return AGENTD_OK;
    return m->host->reply(m->call, agentd_cstr("Scheduled"), agentd_cstr("application/json"),
                          (agentd_bytes){(const uint8_t *)"{}", 2});
}

static const agentd_handler segfault_handlers[] = {
    {sizeof(agentd_handler), "Ping", on_ping},
    {sizeof(agentd_handler), "Crash", on_crash},
    {sizeof(agentd_handler), "Abort", on_abort},
    {sizeof(agentd_handler), "CrashLater", on_crash_later},
};

static const agentd_subscription segfault_subscriptions[] = {
    {sizeof(agentd_subscription), AGENTD_SUBSCRIBE_TOPIC_TYPE, "crash-events"},
};

static const agentd_agent_type segfault_types[] = {{
    .size = sizeof(agentd_agent_type),
    .name = "segfault",
    .description = "Ping answers Pong; Crash dereferences NULL; Abort calls abort(); CrashLater crashes a thread of its own",
    .subscriptions = segfault_subscriptions,
    .subscription_count = sizeof segfault_subscriptions / sizeof segfault_subscriptions[0],
    .handlers = segfault_handlers,
    .handler_count = sizeof segfault_handlers / sizeof segfault_handlers[0],
}};

static const agentd_plugin handler_crash_plugin = {
    .size = sizeof(agentd_plugin),
    .abi_major = AGENTD_ABI_MAJOR,
    .abi_minor = AGENTD_ABI_MINOR,
    .name = "handler-crash",
    .version = "1.0.0",
    .agent_types = segfault_types,
    .agent_type_count = sizeof segfault_types / sizeof segfault_types[0],
};

AGENTD_EXPORT const agentd_plugin *agentd_plugin_entry(const agentd_host_api *host, agentd_plugin_ref *self) {
    (void)host;
    (void)self;
    return &handler_crash_plugin;
}
