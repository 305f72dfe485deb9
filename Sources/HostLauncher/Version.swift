/// agentd's version: the one place it is written. `agentd --version` and `agentd-host --version`
/// print it, and `scripts/install` reads it from this file for the pkg-config file
/// (`agentd-plugin.pc`). Bump it here and nowhere else; keep the literal on one line of the form
/// `public static let string = "X.Y.Z"`, which the script matches.
public enum AgentdVersion {
    public static let string = "0.1.0"
}
