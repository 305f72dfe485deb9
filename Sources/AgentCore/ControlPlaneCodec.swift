import ProtoWire
import CAgentWire

/// The control-plane messages of `agents.AgentRpc`, encoded and decoded by the protobuf-c code
/// that `Protos/generate.sh` generates from `Protos/agent_worker.proto` (the `CAgentWire`
/// module), so that no field number is written by hand:
///
/// - the requests and responses of the four unary calls — `RegisterAgent`, `AddSubscription`,
///   `RemoveSubscription`, `GetSubscriptions` — and the `Subscription` they carry;
/// - the `ControlMessage` of `OpenControlChannel`: the fields the host routes by, its answer to
///   a state request it cannot deliver, and the whole message with the state protocol's
///   requests and responses it carries (``StateMessage``: AutoGen's save and load, agentd's
///   delete from `Protos/agentd_control.proto`), which the runtime and `agentd state` read and
///   write.
///
/// The host decodes the requests and encodes the responses; the runtime's `HostConnection` does
/// the opposite. The data channel's messages are not here: the host forwards those without
/// decoding them (`ProtoWire`'s `Envelope`).
///
/// protobuf-c hands strings over as C strings, which end at a NUL byte: so a message whose text
/// fields hold one is refused as malformed (checked against the generated descriptors before
/// unpacking) instead of being read cut short, and a Swift string holding one is encoded up to
/// it.
///
/// ```swift
/// let request = ControlPlaneCodec.encodeAddSubscriptionRequest(
///     Subscription(id: "s1", agentType: "greeter", kind: .topicType("greetings")))
/// let subscription = try request.withUnsafeBytes { try ControlPlaneCodec.decodeAddSubscriptionRequest($0) }
/// ```
public enum ControlPlaneCodec {
    /// Bytes that protobuf-c cannot unpack as the message they should hold.
    public struct MalformedMessage: Error, Sendable, Hashable, CustomStringConvertible {
        /// The message's full protobuf name, such as `agents.RegisterAgentTypeRequest`.
        public var messageName: String
        /// How many bytes were offered.
        public var byteCount: Int
        /// What is wrong, when it is known more precisely than "not a valid message".
        public var detail: String?

        public init(messageName: String, byteCount: Int, detail: String? = nil) {
            self.messageName = messageName
            self.byteCount = byteCount
            self.detail = detail
        }

        public var description: String {
            "the \(byteCount) bytes are not a valid \(messageName)" + (detail.map { ": \($0)" } ?? "")
        }
    }

    // MARK: RegisterAgent

    /// A `RegisterAgentTypeRequest`: claims `agentType` for the sending runtime.
    public static func encodeRegisterAgentTypeRequest(agentType: String) -> [UInt8] {
        withPackArena { arena in
            var request = Agents__RegisterAgentTypeRequest()
            agents__register_agent_type_request__init(&request)
            request.type = arena.cString(agentType)
            return packed(
                &request, agents__register_agent_type_request__get_packed_size,
                agents__register_agent_type_request__pack)
        }
    }

    /// The agent type a `RegisterAgentTypeRequest` claims (empty if it names none).
    /// - Throws: ``MalformedMessage`` if `bytes` are not a `RegisterAgentTypeRequest`.
    public static func decodeRegisterAgentTypeRequest(
        _ bytes: UnsafeRawBufferPointer
    ) throws(MalformedMessage) -> String {
        try unpacked(
            bytes, agents__register_agent_type_request__descriptor, agents__register_agent_type_request__unpack,
            agents__register_agent_type_request__free_unpacked
        ) { request in string(request.type) }
    }

    /// The `RegisterAgentTypeResponse` of a successful registration (it carries no field).
    public static func encodeRegisterAgentTypeResponse() -> [UInt8] {
        var response = Agents__RegisterAgentTypeResponse()
        agents__register_agent_type_response__init(&response)
        return packed(
            &response, agents__register_agent_type_response__get_packed_size, agents__register_agent_type_response__pack)
    }

    // MARK: AddSubscription

    /// An `AddSubscriptionRequest` carrying `subscription`.
    public static func encodeAddSubscriptionRequest(_ subscription: Subscription) -> [UInt8] {
        withPackArena { arena in
            var request = Agents__AddSubscriptionRequest()
            agents__add_subscription_request__init(&request)
            request.subscription = message(subscription, in: &arena)
            return packed(
                &request, agents__add_subscription_request__get_packed_size, agents__add_subscription_request__pack)
        }
    }

    /// The subscription an `AddSubscriptionRequest` carries; nil if it carries none.
    /// - Throws: ``SubscriptionError`` (`.invalid`) if `bytes` are not an
    ///   `AddSubscriptionRequest`, or its subscription has neither a type nor a type-prefix
    ///   subscription. (Whether the subscription's names are valid is
    ///   ``Subscription/validate()``'s business.)
    public static func decodeAddSubscriptionRequest(
        _ bytes: UnsafeRawBufferPointer
    ) throws(SubscriptionError) -> Subscription? {
        try unpacked(
            bytes, agents__add_subscription_request__descriptor, agents__add_subscription_request__unpack,
            agents__add_subscription_request__free_unpacked, malformed: subscriptionError
        ) { (request) throws(SubscriptionError) -> Subscription? in
            guard let subscription = request.subscription else { return nil }
            return try Self.subscription(subscription.pointee)
        }
    }

    /// The `AddSubscriptionResponse` of a successful `AddSubscription` (it carries no field).
    public static func encodeAddSubscriptionResponse() -> [UInt8] {
        var response = Agents__AddSubscriptionResponse()
        agents__add_subscription_response__init(&response)
        return packed(
            &response, agents__add_subscription_response__get_packed_size, agents__add_subscription_response__pack)
    }

    // MARK: RemoveSubscription

    /// A `RemoveSubscriptionRequest` for the subscription with `id`.
    public static func encodeRemoveSubscriptionRequest(id: String) -> [UInt8] {
        withPackArena { arena in
            var request = Agents__RemoveSubscriptionRequest()
            agents__remove_subscription_request__init(&request)
            request.id = arena.cString(id)
            return packed(
                &request, agents__remove_subscription_request__get_packed_size,
                agents__remove_subscription_request__pack)
        }
    }

    /// The subscription id a `RemoveSubscriptionRequest` names (empty if it names none).
    /// - Throws: ``MalformedMessage`` if `bytes` are not a `RemoveSubscriptionRequest`.
    public static func decodeRemoveSubscriptionRequest(
        _ bytes: UnsafeRawBufferPointer
    ) throws(MalformedMessage) -> String {
        try unpacked(
            bytes, agents__remove_subscription_request__descriptor, agents__remove_subscription_request__unpack,
            agents__remove_subscription_request__free_unpacked
        ) { request in string(request.id) }
    }

    /// The `RemoveSubscriptionResponse` of a successful removal (it carries no field).
    public static func encodeRemoveSubscriptionResponse() -> [UInt8] {
        var response = Agents__RemoveSubscriptionResponse()
        agents__remove_subscription_response__init(&response)
        return packed(
            &response, agents__remove_subscription_response__get_packed_size,
            agents__remove_subscription_response__pack)
    }

    // MARK: GetSubscriptions

    /// The `GetSubscriptionsRequest` (it carries no field).
    public static func encodeGetSubscriptionsRequest() -> [UInt8] {
        var request = Agents__GetSubscriptionsRequest()
        agents__get_subscriptions_request__init(&request)
        return packed(
            &request, agents__get_subscriptions_request__get_packed_size, agents__get_subscriptions_request__pack)
    }

    /// A `GetSubscriptionsResponse` listing `subscriptions` in their order.
    public static func encodeGetSubscriptionsResponse(_ subscriptions: [Subscription]) -> [UInt8] {
        withPackArena { arena in
            var list: [UnsafeMutablePointer<Agents__Subscription>?] = []
            list.reserveCapacity(subscriptions.count)
            for subscription in subscriptions { list.append(message(subscription, in: &arena)) }
            var response = Agents__GetSubscriptionsResponse()
            agents__get_subscriptions_response__init(&response)
            response.n_subscriptions = list.count
            response.subscriptions = list.isEmpty ? nil : arena.place(list)
            return packed(
                &response, agents__get_subscriptions_response__get_packed_size,
                agents__get_subscriptions_response__pack)
        }
    }

    /// The subscriptions a `GetSubscriptionsResponse` lists, in their order.
    /// - Throws: ``SubscriptionError`` (`.invalid`) if `bytes` are not a
    ///   `GetSubscriptionsResponse`, or one of its subscriptions has neither a type nor a
    ///   type-prefix subscription.
    public static func decodeGetSubscriptionsResponse(
        _ bytes: UnsafeRawBufferPointer
    ) throws(SubscriptionError) -> [Subscription] {
        try unpacked(
            bytes, agents__get_subscriptions_response__descriptor, agents__get_subscriptions_response__unpack,
            agents__get_subscriptions_response__free_unpacked, malformed: subscriptionError
        ) { (response) throws(SubscriptionError) -> [Subscription] in
            var subscriptions: [Subscription] = []
            subscriptions.reserveCapacity(response.n_subscriptions)
            for index in 0..<response.n_subscriptions {
                guard let subscription = response.subscriptions[index] else { continue }
                subscriptions.append(try Self.subscription(subscription.pointee))
            }
            return subscriptions
        }
    }

    // MARK: ControlMessage

    /// What the host reads of a `ControlMessage` to route it; the message itself is forwarded
    /// as it came.
    public struct ControlMessageHeader: Sendable, Hashable {
        /// Correlates a response with its request.
        public var rpcID: String
        /// Where the message goes: `agentid=<type>/<key>` or `clientid=<client id>`.
        public var destination: String
        /// Where a request's response should go (empty on a response).
        public var respondTo: String
        /// The type URL of the `rpcMessage` Any, such as
        /// `type.googleapis.com/agents.SaveStateRequest` (empty without one).
        public var typeURL: String

        public init(rpcID: String, destination: String, respondTo: String = "", typeURL: String) {
            self.rpcID = rpcID
            self.destination = destination
            self.respondTo = respondTo
            self.typeURL = typeURL
        }
    }

    /// A `ControlMessage` carrying `value` (a packed message of the type `typeURL` names) in
    /// its `rpcMessage` Any.
    public static func encodeControlMessage(
        rpcID: String, destination: String, respondTo: String = "", typeURL: String, value: [UInt8]
    ) -> [UInt8] {
        encodeControlMessage(ControlMessage(
            rpcID: rpcID, destination: destination, respondTo: respondTo,
            rpcMessage: AnyMessage(typeURL: typeURL, value: value)))
    }

    /// The routing fields of a `ControlMessage`.
    /// - Throws: ``MalformedMessage`` if `bytes` are not a `ControlMessage`.
    public static func decodeControlMessageHeader(
        _ bytes: UnsafeRawBufferPointer
    ) throws(MalformedMessage) -> ControlMessageHeader {
        try unpacked(
            bytes, agents__control_message__descriptor, agents__control_message__unpack,
            agents__control_message__free_unpacked
        ) { message in
            ControlMessageHeader(
                rpcID: string(message.rpc_id), destination: string(message.destination),
                respondTo: string(message.respond_to), typeURL: string(message.rpcmessage?.pointee.type_url))
        }
    }

    /// The answer to a state request that cannot be delivered: a `ControlMessage` to
    /// `destination` with the request's `rpc_id`, carrying the response that matches the
    /// request — a `SaveStateResponse` for a `SaveStateRequest`, a `LoadStateResponse` for a
    /// `LoadStateRequest`, a `DeleteStateResponse` for agentd's `DeleteStateRequest` — whose
    /// `error` is `error`. Nil for any other message: responses are not answered.
    public static func errorResponse(
        to request: ControlMessageHeader, error: String, destination: String
    ) -> [UInt8]? {
        guard let response = StateMessage.Kind(typeURL: request.typeURL)?.errorResponse(error) else { return nil }
        return encodeControlMessage(ControlMessage(
            rpcID: request.rpcID, destination: destination, rpcMessage: encodeStateMessage(response)))
    }

    /// A whole `ControlMessage`: the fields the host routes by and the message its
    /// `rpcMessage` Any carries.
    public struct ControlMessage: Sendable, Hashable {
        /// Correlates a response with its request.
        public var rpcID: String
        /// Where the message goes: `agentid=<type>/<key>` or `clientid=<client id>`.
        public var destination: String
        /// Where a request's response should go; empty on a response (AutoGen's convention:
        /// a message without it is a response).
        public var respondTo: String
        /// The `rpcMessage` Any; nil when the message carries none.
        public var rpcMessage: AnyMessage?

        public init(rpcID: String, destination: String, respondTo: String = "", rpcMessage: AnyMessage?) {
            self.rpcID = rpcID
            self.destination = destination
            self.respondTo = respondTo
            self.rpcMessage = rpcMessage
        }

        /// Its routing fields.
        public var header: ControlMessageHeader {
            ControlMessageHeader(
                rpcID: rpcID, destination: destination, respondTo: respondTo, typeURL: rpcMessage?.typeURL ?? "")
        }
    }

    /// A `google.protobuf.Any`: a packed message and the type URL that names its type.
    public struct AnyMessage: Sendable, Hashable {
        /// Such as `type.googleapis.com/agents.SaveStateRequest`.
        public var typeURL: String
        /// The packed message.
        public var value: [UInt8]

        public init(typeURL: String, value: [UInt8]) {
            self.typeURL = typeURL
            self.value = value
        }

        /// The message's full protobuf name: what the type URL says after its last `/`
        /// (the whole URL when it has none).
        public var messageName: Substring {
            typeURL.lastIndex(of: "/").map { typeURL[typeURL.index(after: $0)...] } ?? typeURL[...]
        }
    }

    /// `message` packed; a nil `rpcMessage` leaves the Any out.
    public static func encodeControlMessage(_ message: ControlMessage) -> [UInt8] {
        withPackArena { arena in
            var packed = Agents__ControlMessage()
            agents__control_message__init(&packed)
            packed.rpc_id = arena.cString(message.rpcID)
            packed.destination = arena.cString(message.destination)
            packed.respond_to = arena.cString(message.respondTo)
            if let rpcMessage = message.rpcMessage {
                var any = Google__Protobuf__Any()
                google__protobuf__any__init(&any)
                any.type_url = arena.cString(rpcMessage.typeURL)
                any.value = ProtobufCBinaryData(
                    len: rpcMessage.value.count, data: rpcMessage.value.isEmpty ? nil : arena.place(rpcMessage.value))
                packed.rpcmessage = arena.place(any)
            }
            return Self.packed(&packed, agents__control_message__get_packed_size, agents__control_message__pack)
        }
    }

    /// A whole `ControlMessage`, its Any's value copied out.
    /// - Throws: ``MalformedMessage`` if `bytes` are not a `ControlMessage`.
    public static func decodeControlMessage(_ bytes: UnsafeRawBufferPointer) throws(MalformedMessage) -> ControlMessage {
        try unpacked(
            bytes, agents__control_message__descriptor, agents__control_message__unpack,
            agents__control_message__free_unpacked
        ) { message in
            ControlMessage(
                rpcID: string(message.rpc_id), destination: string(message.destination),
                respondTo: string(message.respond_to),
                rpcMessage: message.rpcmessage.map { any in
                    AnyMessage(typeURL: string(any.pointee.type_url), value: Self.bytes(any.pointee.value))
                })
        }
    }

    // MARK: State messages

    /// The state protocol's messages, as they travel in a `ControlMessage`'s `rpcMessage`:
    /// AutoGen's `SaveStateRequest`, `SaveStateResponse`, `LoadStateRequest` and
    /// `LoadStateResponse` (`Protos/agent_worker.proto`, package `agents`), and agentd's own
    /// `DeleteStateRequest` and `DeleteStateResponse` (`Protos/agentd_control.proto`, package
    /// `agentd`).
    ///
    /// An `error` is empty on success: AutoGen declares the field `optional` and treats empty
    /// as absent. An `agent` is nil when the request names none (its `agentId` is missing).
    public enum StateMessage: Sendable, Hashable {
        case saveStateRequest(agent: AgentID?)
        case saveStateResponse(state: String, error: String)
        case loadStateRequest(agent: AgentID?, state: String)
        case loadStateResponse(error: String)
        case deleteStateRequest(agent: AgentID?)
        case deleteStateResponse(error: String)

        /// Which of the six messages a type URL names, before (or without) decoding it.
        public enum Kind: Sendable, Hashable, CaseIterable {
            case saveStateRequest, saveStateResponse, loadStateRequest, loadStateResponse
            case deleteStateRequest, deleteStateResponse

            /// The kind whose full name `typeURL` ends with (after its last `/`), or nil.
            public init?(typeURL: String) {
                let name = AnyMessage(typeURL: typeURL, value: []).messageName
                guard let kind = Kind.allCases.first(where: { $0.messageName == name }) else { return nil }
                self = kind
            }

            /// The full protobuf name, such as `agents.SaveStateRequest`, from the generated
            /// descriptors.
            public var messageName: String {
                switch self {
                case .saveStateRequest: saveStateRequestName
                case .saveStateResponse: saveStateResponseName
                case .loadStateRequest: loadStateRequestName
                case .loadStateResponse: loadStateResponseName
                case .deleteStateRequest: deleteStateRequestName
                case .deleteStateResponse: deleteStateResponseName
                }
            }

            /// The type URL AutoGen's runtimes put in an Any: `type.googleapis.com/<name>`.
            public var typeURL: String { typeURLPrefix + messageName }

            public var isRequest: Bool {
                switch self {
                case .saveStateRequest, .loadStateRequest, .deleteStateRequest: true
                case .saveStateResponse, .loadStateResponse, .deleteStateResponse: false
                }
            }

            /// The response answering a request of this kind with `error`; nil for a response.
            public func errorResponse(_ error: String) -> StateMessage? {
                switch self {
                case .saveStateRequest: .saveStateResponse(state: "", error: error)
                case .loadStateRequest: .loadStateResponse(error: error)
                case .deleteStateRequest: .deleteStateResponse(error: error)
                case .saveStateResponse, .loadStateResponse, .deleteStateResponse: nil
                }
            }
        }

        public var kind: Kind {
            switch self {
            case .saveStateRequest: .saveStateRequest
            case .saveStateResponse: .saveStateResponse
            case .loadStateRequest: .loadStateRequest
            case .loadStateResponse: .loadStateResponse
            case .deleteStateRequest: .deleteStateRequest
            case .deleteStateResponse: .deleteStateResponse
            }
        }
    }

    /// `message` packed in an Any with AutoGen's type URL for it
    /// (`type.googleapis.com/agents.SaveStateRequest` and so on).
    public static func encodeStateMessage(_ message: StateMessage) -> AnyMessage {
        let value = withPackArena { arena -> [UInt8] in
            switch message {
            case .saveStateRequest(let agent):
                var request = Agents__SaveStateRequest()
                agents__save_state_request__init(&request)
                request.agentid = agent.map { agentID($0, in: &arena) }
                return packed(&request, agents__save_state_request__get_packed_size, agents__save_state_request__pack)
            case .saveStateResponse(let state, let error):
                var response = Agents__SaveStateResponse()
                agents__save_state_response__init(&response)
                response.state = arena.cString(state)
                response.error = arena.cString(error)
                return packed(&response, agents__save_state_response__get_packed_size, agents__save_state_response__pack)
            case .loadStateRequest(let agent, let state):
                var request = Agents__LoadStateRequest()
                agents__load_state_request__init(&request)
                request.agentid = agent.map { agentID($0, in: &arena) }
                request.state = arena.cString(state)
                return packed(&request, agents__load_state_request__get_packed_size, agents__load_state_request__pack)
            case .loadStateResponse(let error):
                var response = Agents__LoadStateResponse()
                agents__load_state_response__init(&response)
                response.error = arena.cString(error)
                return packed(&response, agents__load_state_response__get_packed_size, agents__load_state_response__pack)
            case .deleteStateRequest(let agent):
                var request = Agentd__DeleteStateRequest()
                agentd__delete_state_request__init(&request)
                request.agentid = agent.map { agentID($0, in: &arena) }
                return packed(&request, agentd__delete_state_request__get_packed_size, agentd__delete_state_request__pack)
            case .deleteStateResponse(let error):
                var response = Agentd__DeleteStateResponse()
                agentd__delete_state_response__init(&response)
                response.error = arena.cString(error)
                return packed(
                    &response, agentd__delete_state_response__get_packed_size, agentd__delete_state_response__pack)
            }
        }
        return AnyMessage(typeURL: message.kind.typeURL, value: value)
    }

    /// The state message `any` carries; nil if its type URL names none of the six (whatever
    /// prefix precedes the name: only the name after the last `/` counts).
    /// - Throws: ``MalformedMessage`` if its value is not a valid message of the type named.
    public static func decodeStateMessage(_ any: AnyMessage) throws(MalformedMessage) -> StateMessage? {
        guard let kind = StateMessage.Kind(typeURL: any.typeURL) else { return nil }
        // (withUnsafeBytes rethrows untyped: the outcome comes out as a Result.)
        return try any.value.withUnsafeBytes { bytes in
            Result { () throws(MalformedMessage) -> StateMessage in try decodeStateMessage(kind, bytes) }
        }.get()
    }

    /// The `kind` message in `bytes`.
    private static func decodeStateMessage(
        _ kind: StateMessage.Kind, _ bytes: UnsafeRawBufferPointer
    ) throws(MalformedMessage) -> StateMessage {
        switch kind {
        case .saveStateRequest:
            try unpacked(
                bytes, agents__save_state_request__descriptor, agents__save_state_request__unpack,
                agents__save_state_request__free_unpacked
            ) { .saveStateRequest(agent: agentID($0.agentid)) }
        case .saveStateResponse:
            try unpacked(
                bytes, agents__save_state_response__descriptor, agents__save_state_response__unpack,
                agents__save_state_response__free_unpacked
            ) { .saveStateResponse(state: string($0.state), error: string($0.error)) }
        case .loadStateRequest:
            try unpacked(
                bytes, agents__load_state_request__descriptor, agents__load_state_request__unpack,
                agents__load_state_request__free_unpacked
            ) { .loadStateRequest(agent: agentID($0.agentid), state: string($0.state)) }
        case .loadStateResponse:
            try unpacked(
                bytes, agents__load_state_response__descriptor, agents__load_state_response__unpack,
                agents__load_state_response__free_unpacked
            ) { .loadStateResponse(error: string($0.error)) }
        case .deleteStateRequest:
            try unpacked(
                bytes, agentd__delete_state_request__descriptor, agentd__delete_state_request__unpack,
                agentd__delete_state_request__free_unpacked
            ) { .deleteStateRequest(agent: agentID($0.agentid)) }
        case .deleteStateResponse:
            try unpacked(
                bytes, agentd__delete_state_response__descriptor, agentd__delete_state_response__unpack,
                agentd__delete_state_response__free_unpacked
            ) { .deleteStateResponse(error: string($0.error)) }
        }
    }

    /// How AutoGen's runtimes prefix a message's full name to make an Any's type URL.
    static let typeURLPrefix = "type.googleapis.com/"
    private static let saveStateRequestName = String(cString: agents__save_state_request__descriptor.name)
    private static let saveStateResponseName = String(cString: agents__save_state_response__descriptor.name)
    private static let loadStateRequestName = String(cString: agents__load_state_request__descriptor.name)
    private static let loadStateResponseName = String(cString: agents__load_state_response__descriptor.name)
    private static let deleteStateRequestName = String(cString: agentd__delete_state_request__descriptor.name)
    private static let deleteStateResponseName = String(cString: agentd__delete_state_response__descriptor.name)

    /// An `Agents__AgentId` for `agent`; it and its strings live in `arena`.
    private static func agentID(_ agent: AgentID, in arena: inout PackArena) -> UnsafeMutablePointer<Agents__AgentId> {
        var message = Agents__AgentId()
        agents__agent_id__init(&message)
        message.type = arena.cString(agent.type)
        message.key = arena.cString(agent.key)
        return arena.place(message)
    }

    /// The ``AgentID`` an unpacked `agentId` field names; nil when the field is absent.
    private static func agentID(_ message: UnsafeMutablePointer<Agents__AgentId>?) -> AgentID? {
        message.map { AgentID(type: string($0.pointee.type), key: string($0.pointee.key)) }
    }

    // MARK: Subscription

    /// An `Agents__Subscription` for `subscription`; it and what it points to live in `arena`.
    private static func message(
        _ subscription: Subscription, in arena: inout PackArena
    ) -> UnsafeMutablePointer<Agents__Subscription> {
        var message = Agents__Subscription()
        agents__subscription__init(&message)
        message.id = arena.cString(subscription.id)
        switch subscription.kind {
        case .topicType(let topicType):
            var match = Agents__TypeSubscription()
            agents__type_subscription__init(&match)
            match.topic_type = arena.cString(topicType)
            match.agent_type = arena.cString(subscription.agentType)
            message.subscription_case = AGENTS__SUBSCRIPTION__SUBSCRIPTION_TYPE_SUBSCRIPTION
            message.typesubscription = arena.place(match)
        case .topicTypePrefix(let prefix):
            var match = Agents__TypePrefixSubscription()
            agents__type_prefix_subscription__init(&match)
            match.topic_type_prefix = arena.cString(prefix)
            match.agent_type = arena.cString(subscription.agentType)
            message.subscription_case = AGENTS__SUBSCRIPTION__SUBSCRIPTION_TYPE_PREFIX_SUBSCRIPTION
            message.typeprefixsubscription = arena.place(match)
        }
        return arena.place(message)
    }

    /// The ``Subscription`` an unpacked `Agents__Subscription` describes.
    /// - Throws: ``SubscriptionError`` (`.invalid`) if it has neither a type nor a type-prefix
    ///   subscription.
    private static func subscription(_ message: Agents__Subscription) throws(SubscriptionError) -> Subscription {
        let id = string(message.id)
        switch message.subscription_case {
        case AGENTS__SUBSCRIPTION__SUBSCRIPTION_TYPE_SUBSCRIPTION:
            let match = message.typesubscription?.pointee
            return Subscription(
                id: id, agentType: string(match?.agent_type), kind: .topicType(string(match?.topic_type)))
        case AGENTS__SUBSCRIPTION__SUBSCRIPTION_TYPE_PREFIX_SUBSCRIPTION:
            let match = message.typeprefixsubscription?.pointee
            return Subscription(
                id: id, agentType: string(match?.agent_type),
                kind: .topicTypePrefix(string(match?.topic_type_prefix)))
        default:
            throw SubscriptionError(
                .invalid, "subscription '\(id)' is empty: it has neither a type nor a type-prefix subscription")
        }
    }

    private static func subscriptionError(_ malformed: MalformedMessage) -> SubscriptionError {
        SubscriptionError(.invalid, "malformed subscription: \(malformed)")
    }

    // MARK: protobuf-c

    /// `message` packed by the generated `…__get_packed_size` and `…__pack` of its type.
    static func packed<Message>(
        _ message: UnsafePointer<Message>,
        _ packedSize: (UnsafePointer<Message>?) -> Int,
        _ pack: (UnsafePointer<Message>?, UnsafeMutablePointer<UInt8>?) -> Int
    ) -> [UInt8] {
        let count = packedSize(message)
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            initialized = count == 0 ? 0 : pack(message, buffer.baseAddress)
            precondition(initialized == count, "protobuf-c packed \(initialized) bytes of the \(count) it announced")
        }
    }

    /// Unpacks `bytes` with the generated `…__unpack` of a message type, hands the message to
    /// `read`, and frees it with `…__free_unpacked` — so `read` must copy out what it keeps
    /// (every C string and pointer in the message dies with it).
    /// - Throws: `malformed(…)` if protobuf-c cannot unpack `bytes`; whatever `read` throws.
    static func unpacked<Message, Result, Failure: Error>(
        _ bytes: UnsafeRawBufferPointer,
        _ descriptor: ProtobufCMessageDescriptor,
        _ unpack: (UnsafeMutablePointer<ProtobufCAllocator>?, Int, UnsafePointer<UInt8>?) -> UnsafeMutablePointer<Message>?,
        _ freeUnpacked: (UnsafeMutablePointer<Message>?, UnsafeMutablePointer<ProtobufCAllocator>?) -> Void,
        malformed: (MalformedMessage) -> Failure,
        _ read: (Message) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        let name = String(cString: descriptor.name)
        if let field = withUnsafePointer(to: descriptor, { textFieldHoldingNUL(bytes, in: nil, of: $0, path: name) }) {
            throw malformed(MalformedMessage(
                messageName: name, byteCount: bytes.count, detail: "the text field \(field) holds a NUL byte"))
        }
        // protobuf-c wants a pointer even for no bytes; an empty buffer may have none.
        var placeholder: UInt8 = 0
        let message = withUnsafePointer(to: &placeholder) { placeholder in
            unpack(nil, bytes.count, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? placeholder)
        }
        guard let message else {
            throw malformed(MalformedMessage(messageName: name, byteCount: bytes.count))
        }
        defer { freeUnpacked(message, nil) }
        return try read(message.pointee)
    }

    /// The first string field of `descriptor`'s message, at any depth, whose bytes in `range`
    /// of `bytes` hold a NUL (as `message.field.subfield`), or nil. Fields are looked up in the
    /// generated descriptors, not written here; bytes that do not parse are left to the unpack.
    private static func textFieldHoldingNUL(
        _ bytes: UnsafeRawBufferPointer, in range: Range<Int>?, of descriptor: UnsafePointer<ProtobufCMessageDescriptor>,
        path: String
    ) -> String? {
        var reader = ProtoReader(bytes, range: range)
        while let field = try? reader.next() {
            // A field number past 32 bits names no field of the message (protobuf-c refuses it).
            guard case .bytes(let value) = field.value, let number = UInt32(exactly: field.number),
                  let info = protobuf_c_message_descriptor_get_field(descriptor, number)
            else { continue }
            let fieldPath = "\(path).\(String(cString: info.pointee.name))"
            switch info.pointee.type {
            case PROTOBUF_C_TYPE_STRING:
                if bytes[value].contains(0) { return fieldPath }
            case PROTOBUF_C_TYPE_MESSAGE:
                guard let nested = info.pointee.descriptor?.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)
                else { continue }
                if let found = textFieldHoldingNUL(bytes, in: value, of: nested, path: fieldPath) { return found }
            default:
                continue
            }
        }
        return nil
    }

    /// ``unpacked(_:_:_:_:malformed:_:)`` for a reader that cannot fail.
    static func unpacked<Message, Result>(
        _ bytes: UnsafeRawBufferPointer,
        _ descriptor: ProtobufCMessageDescriptor,
        _ unpack: (UnsafeMutablePointer<ProtobufCAllocator>?, Int, UnsafePointer<UInt8>?) -> UnsafeMutablePointer<Message>?,
        _ freeUnpacked: (UnsafeMutablePointer<Message>?, UnsafeMutablePointer<ProtobufCAllocator>?) -> Void,
        _ read: (Message) -> Result
    ) throws(MalformedMessage) -> Result {
        try unpacked(bytes, descriptor, unpack, freeUnpacked, malformed: { $0 }) {
            (message) throws(MalformedMessage) -> Result in read(message)
        }
    }

    /// A Swift copy of a C string field (empty for NULL); invalid UTF-8 is repaired.
    static func string(_ field: UnsafePointer<CChar>?) -> String {
        field.map { String(cString: $0) } ?? ""
    }

    /// A Swift copy of a bytes field.
    private static func bytes(_ field: ProtobufCBinaryData) -> [UInt8] {
        guard let data = field.data, field.len > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: field.len))
    }

    /// Runs `body` with a ``PackArena`` and frees the arena once `body` — and the pack call in
    /// it — has returned.
    static func withPackArena<Result>(_ body: (inout PackArena) -> Result) -> Result {
        var arena = PackArena()
        defer { arena.deallocateAll() }
        return body(&arena)
    }
}

/// The memory a message being packed points to — C copies of its strings, its nested messages
/// and arrays — which protobuf-c reads during the pack call and which must stay put until then.
/// Not copyable: its one owner frees it, once. It holds C structs, pointers and bytes only, so it
/// frees their memory without deinitialising them.
struct PackArena: ~Copyable {
    private var allocations: [UnsafeMutableRawPointer] = []

    /// A NUL-terminated copy of `text` (C reads it up to its first NUL).
    mutating func cString(_ text: String) -> UnsafeMutablePointer<CChar> {
        let bytes = text.utf8CString
        let copy = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count)
        _ = UnsafeMutableBufferPointer(start: copy, count: bytes.count).initialize(from: bytes)
        allocations.append(UnsafeMutableRawPointer(copy))
        return copy
    }

    /// A copy of `value` in memory of its own.
    mutating func place<Value>(_ value: Value) -> UnsafeMutablePointer<Value> {
        let copy = UnsafeMutablePointer<Value>.allocate(capacity: 1)
        copy.initialize(to: value)
        allocations.append(UnsafeMutableRawPointer(copy))
        return copy
    }

    /// A copy of `values` in contiguous memory of its own (room for one at least).
    mutating func place<Value>(_ values: [Value]) -> UnsafeMutablePointer<Value> {
        let copy = UnsafeMutablePointer<Value>.allocate(capacity: max(values.count, 1))
        _ = UnsafeMutableBufferPointer(start: copy, count: values.count).initialize(from: values)
        allocations.append(UnsafeMutableRawPointer(copy))
        return copy
    }

    /// Frees everything placed.
    mutating func deallocateAll() {
        for allocation in allocations { allocation.deallocate() }
        allocations.removeAll()
    }
}
