// DuplicateTypePlugin: a test plugin for the runtime's loader. Plugin "duplicate-echo" 1.0.0
// claims agent type `echo`, which EchoAgent (echo-plugin) already offers; agent type names are
// unique across all loaded plugins, so the runtime must refuse whichever of the two it loads
// second. Otherwise valid: RPC `Echo` answers with the request's own message.
#include <agent_plugin.h>

static agentd_status on_echo(void *instance, const agentd_message *m) {
    (void)instance;
    return m->host->reply(m->call, m->message_type, m->content_type, m->payload);
}

static const agentd_handler handlers[] = {
    {sizeof(agentd_handler), "Echo", on_echo},
};

static const agentd_agent_type types[] = {{
    .size = sizeof(agentd_agent_type),
    .name = "echo",
    .description = "A second claim on the agent type echo",
    .handlers = handlers,
    .handler_count = 1,
}};

static const agentd_plugin plugin = {
    .size = sizeof(agentd_plugin),
    .abi_major = AGENTD_ABI_MAJOR,
    .abi_minor = AGENTD_ABI_MINOR,
    .name = "duplicate-echo",
    .version = "1.0.0",
    .agent_types = types,
    .agent_type_count = 1,
};

AGENTD_EXPORT const agentd_plugin *agentd_plugin_entry(const agentd_host_api *host, agentd_plugin_ref *self) {
    (void)host;
    (void)self;
    return &plugin;
}
