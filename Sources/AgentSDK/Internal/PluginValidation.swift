/// The checks ``Plugin/export(_:_:)`` makes before it hands the runtime a descriptor: the names
/// the ABI and AutoGen constrain, and uniqueness. Each problem is a sentence naming the culprit.
enum PluginValidation {
    static func problems(name: String, version: String) -> [String] {
        var problems: [String] = []
        if name.isEmpty || name.contains("\0") { problems.append("the plugin name \"\(name)\" is empty or holds a NUL") }
        if version.contains("\0") { problems.append("the version \"\(version)\" holds a NUL") }
        return problems
    }

    static func problems(of agentTypes: [AgentTypeBinding]) -> [String] {
        var problems: [String] = []
        var seen: Set<String> = []
        for type in agentTypes {
            if !isValidAgentType(type.name) {
                problems.append(
                    "the agent type \"\(type.name)\" is not a valid AutoGen agent type (letters, digits, '_', '-', '.')")
            }
            if !seen.insert(type.name).inserted {
                problems.append("the agent type \"\(type.name)\" is listed twice")
            }
            if type.typeDescription?.contains("\0") == true {
                problems.append("\(type.name): the description holds a NUL")
            }
            for subscription in type.subscriptions where !isValidTopicType(subscription.topic) {
                problems.append(
                    "\(type.name): the subscription topic \"\(subscription.topic)\" is not a valid AutoGen topic type "
                        + "(letters, digits, '_', '-', '.', ':', '=')")
            }
            for messageType in type.handlers.keys where messageType.isEmpty || messageType.contains("\0") {
                problems.append("\(type.name): the message type \"\(messageType)\" is empty or holds a NUL")
            }
        }
        return problems
    }

    /// AutoGen's `^[\w\-\.]+\Z`.
    static func isValidAgentType(_ name: String) -> Bool {
        !name.isEmpty && name.allSatisfy { $0.isLetter || $0.isNumber || "_-.".contains($0) }
    }

    /// AutoGen's `^[\w\-\.\:\=]+\Z`.
    static func isValidTopicType(_ name: String) -> Bool {
        !name.isEmpty && name.allSatisfy { $0.isLetter || $0.isNumber || "_-.:=".contains($0) }
    }
}
