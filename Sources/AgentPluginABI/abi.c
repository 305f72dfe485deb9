// Compile-time checks of the plugin ABI's layout on this platform. The header is the product;
// this file only makes SwiftPM build the target and pins what the header promises.
#include "agent_plugin.h"

_Static_assert(sizeof(agentd_str) == 2 * sizeof(void *), "agentd_str is pointer + length");
_Static_assert(sizeof(agentd_bytes) == 2 * sizeof(void *), "agentd_bytes is pointer + length");
_Static_assert(offsetof(agentd_plugin, size) == 0, "every struct begins with its size");
_Static_assert(offsetof(agentd_agent_type, size) == 0, "every struct begins with its size");
_Static_assert(offsetof(agentd_handler, size) == 0, "every struct begins with its size");
_Static_assert(offsetof(agentd_message, size) == 0, "every struct begins with its size");
_Static_assert(offsetof(agentd_host_api, size) == 0, "every struct begins with its size");
_Static_assert(offsetof(agentd_response, size) == 0, "every struct begins with its size");
_Static_assert(offsetof(agentd_subscription, size) == 0, "every struct begins with its size");
_Static_assert(sizeof(agentd_status) == 4 && sizeof(agentd_log_level) == 4 && sizeof(agentd_subscription_kind) == 4, "enum fields are 4 bytes, as agent_plugin.h says");
