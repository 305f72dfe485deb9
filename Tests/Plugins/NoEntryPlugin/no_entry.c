// NoEntryPlugin: a test plugin for the runtime's loader. A well-formed shared library that does
// NOT export `agentd_plugin_entry`; the runtime must refuse it with a clear error. It exports
// other functions instead, one of them with a name close to the entry's.
#if defined(__GNUC__) || defined(__clang__)
#define NO_ENTRY_EXPORT __attribute__((visibility("default")))
#else
#define NO_ENTRY_EXPORT
#endif

NO_ENTRY_EXPORT int agentd_not_a_plugin(void) { return 42; }

NO_ENTRY_EXPORT const void *agentd_plugin_entry_v0(void) { return 0; }
