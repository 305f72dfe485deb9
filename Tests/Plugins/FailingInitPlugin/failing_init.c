// FailingInitPlugin: a test plugin for the runtime's loader. Its entry logs why it cannot start
// (at AGENTD_LOG_ERROR, no agent) and returns NULL; the runtime must refuse the plugin and keep
// the logged reason visible.
#include <agent_plugin.h>

#include <stddef.h>

#define FAILING_INIT_REASON "failing-init: refusing to start on purpose (a test plugin whose entry always fails)"

AGENTD_EXPORT const agentd_plugin *agentd_plugin_entry(const agentd_host_api *host, agentd_plugin_ref *self) {
    if (host && host->log) host->log(self, NULL, AGENTD_LOG_ERROR, agentd_cstr(FAILING_INIT_REASON));
    return NULL;
}
