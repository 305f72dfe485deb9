import AgentPluginABI
import Foundation
import Testing

/// An example plugin as the runtime meets it: its shared library from the build folder (next to
/// the test binary), opened with dlopen, and its exported `agentd_plugin_entry`.
///
/// A C plugin keeps the host table its entry received in a global, so suites that load one
/// run `.serialized`: two fake runtimes calling the same entry at once would swap it.
enum ExamplePlugin {
    /// The build folder holding the test binary and the plugin products.
    static func path(_ library: String) -> String {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent(library).path
    }

    static func entry(_ library: String) throws -> agentd_plugin_entry_fn {
        let path = path(library)
        let handle = try #require(dlopen(path, RTLD_NOW | RTLD_LOCAL), "dlopen \(path): \(String(cString: dlerror()))")
        let symbol = try #require(dlsym(handle, AGENTD_PLUGIN_ENTRY_SYMBOL), "no \(AGENTD_PLUGIN_ENTRY_SYMBOL) in \(path)")
        return unsafeBitCast(symbol, to: agentd_plugin_entry_fn.self)
    }
}
