// A plugin whose entry crashes the process (a NULL write): the runtime must find this out in
// a probe process (`agentd plugin check`) and refuse it, instead of loading it and dying.
#include <agent_plugin.h>
#include <stddef.h>

AGENTD_EXPORT const agentd_plugin *agentd_plugin_entry(const agentd_host_api *host, agentd_plugin_ref *self) {
    (void)host;
    (void)self;
    volatile int *nowhere = NULL;
    *nowhere = 42;
    return NULL;
}
