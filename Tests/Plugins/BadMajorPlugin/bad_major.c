// BadMajorPlugin: a test plugin for the runtime's loader. A valid plugin in every respect except
// that it claims ABI major 99; the runtime must refuse it (and register nothing of it).
//
// Plugin "bad-major" 1.0.0, abi 99.0: agent type `bad-major`, RPC `Ping` answered with the same
// message (never reached if the runtime does its job).
#include <agent_plugin.h>

static agentd_status on_ping(void *instance, const agentd_message *m) {
    (void)instance;
    return m->host->reply(m->call, m->message_type, m->content_type, m->payload);
}

static const agentd_handler handlers[] = {
    {sizeof(agentd_handler), "Ping", on_ping},
};

static const agentd_agent_type types[] = {{
    .size = sizeof(agentd_agent_type),
    .name = "bad-major",
    .description = "Built for an ABI major the runtime does not speak",
    .handlers = handlers,
    .handler_count = 1,
}};

static const agentd_plugin plugin = {
    .size = sizeof(agentd_plugin),
    .abi_major = 99,
    .abi_minor = AGENTD_ABI_MINOR,
    .name = "bad-major",
    .version = "1.0.0",
    .agent_types = types,
    .agent_type_count = 1,
};

AGENTD_EXPORT const agentd_plugin *agentd_plugin_entry(const agentd_host_api *host, agentd_plugin_ref *self) {
    (void)host;
    (void)self;
    return &plugin;
}
