// LoopingPlugin: a plugin whose handlers never return, beside one that answers — for the
// runtime's tests of handlers that loop forever. Plugin "looping" 1.0.0.
//
//   looper   RPC or event `Loop` -> never returns: loops forever on the runtime's thread,
//            sleeping 10 ms per turn (a stuck handler that does not burn a CPU).
//            RPC `Echo` -> `Echo` with the request's payload and content type, at once.
//   echoer   RPC `Echo` (any message type, "*") -> the same answer: a healthy agent type of the
//            same plugin.
#define _POSIX_C_SOURCE 200809L

#include <agent_plugin.h>

#include <stddef.h>
#include <time.h>

static agentd_status on_loop(void *instance, const agentd_message *m) {
    (void)instance;
    (void)m;
    struct timespec turn = {0, 10 * 1000 * 1000};
    for (;;) nanosleep(&turn, NULL);
    return AGENTD_OK;
}

static agentd_status on_echo(void *instance, const agentd_message *m) {
    (void)instance;
    if (!m->is_rpc) return AGENTD_OK;
    static const char type[] = "Echo";
    agentd_str message_type = {type, sizeof type - 1};
    return m->host->reply(m->call, message_type, m->content_type, m->payload);
}

#define HANDLER(type, fn) {sizeof(agentd_handler), type, fn}
#define COUNT(array) (sizeof(array) / sizeof((array)[0]))

static const agentd_handler looper_handlers[] = {HANDLER("Loop", on_loop), HANDLER("Echo", on_echo)};
static const agentd_handler echoer_handlers[] = {HANDLER("*", on_echo)};

static const agentd_agent_type looping_types[] = {
    {
        .size = sizeof(agentd_agent_type),
        .name = "looper",
        .description = "Loop: never returns; Echo: answers at once",
        .handlers = looper_handlers,
        .handler_count = COUNT(looper_handlers),
    },
    {
        .size = sizeof(agentd_agent_type),
        .name = "echoer",
        .description = "Any RPC: answers Echo with the request's payload",
        .handlers = echoer_handlers,
        .handler_count = COUNT(echoer_handlers),
    },
};

static const agentd_plugin looping_plugin = {
    .size = sizeof(agentd_plugin),
    .abi_major = AGENTD_ABI_MAJOR,
    .abi_minor = AGENTD_ABI_MINOR,
    .name = "looping",
    .version = "1.0.0",
    .agent_types = looping_types,
    .agent_type_count = COUNT(looping_types),
};

AGENTD_EXPORT const agentd_plugin *agentd_plugin_entry(const agentd_host_api *host, agentd_plugin_ref *self) {
    (void)host;
    (void)self;
    return &looping_plugin;
}
