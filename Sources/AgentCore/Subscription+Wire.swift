import AgentWire

extension Subscription {
    /// Decodes an `agents.Subscription` (`{id = 1; typeSubscription = 2 | typePrefixSubscription = 3}`,
    /// each `{topic_type(_prefix) = 1, agent_type = 2}`).
    /// - Throws: ``SubscriptionError`` (`.invalid`) for a malformed or empty subscription.
    public init(wire bytes: UnsafeRawBufferPointer, range: Range<Int>? = nil) throws(SubscriptionError) {
        do {
            var reader = ProtoReader(bytes, range: range)
            var id = ""
            var found: (kind: Int, topic: String, agentType: String)?
            while let field = try reader.next() {
                switch field.number {
                case 1: id = reader.string(try field.bytesRange())
                case 2, 3:
                    var inner = ProtoReader(bytes, range: try field.bytesRange())
                    var topic = ""
                    var agentType = ""
                    while let part = try inner.next() {
                        switch part.number {
                        case 1: topic = inner.string(try part.bytesRange())
                        case 2: agentType = inner.string(try part.bytesRange())
                        default: continue
                        }
                    }
                    found = (field.number, topic, agentType)
                default: continue
                }
            }
            guard let found else {
                throw SubscriptionError(.invalid, "subscription '\(id)' is empty: it has neither a type nor a type-prefix subscription")
            }
            self.init(
                id: id, agentType: found.agentType,
                kind: found.kind == 2 ? .topicType(found.topic) : .topicTypePrefix(found.topic))
        } catch let error as WireError {
            throw SubscriptionError(.invalid, "malformed subscription: \(error)")
        } catch let error as SubscriptionError {
            throw error
        } catch {
            throw SubscriptionError(.invalid, "malformed subscription: \(error)")
        }
    }

    /// Encodes as an `agents.Subscription`.
    public func encode(into writer: inout ProtoWriter) {
        writer.stringField(1, id)
        switch kind {
        case .topicType(let type):
            writer.messageField(2) { $0.stringField(1, type); $0.stringField(2, agentType) }
        case .topicTypePrefix(let prefix):
            writer.messageField(3) { $0.stringField(1, prefix); $0.stringField(2, agentType) }
        }
    }
}
