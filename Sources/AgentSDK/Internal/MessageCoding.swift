#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Synchronization

/// JSON encoding and strict decoding of ``AgentMessage`` payloads, AutoGen-style.
///
/// AutoGen encodes a dataclass as `json.dumps(asdict(m))` and decodes with `cls(**json)`, which
/// rejects a key the class has no field for. `JSONDecoder` ignores such keys, so decoding here
/// also compares the JSON object's top-level keys with the keys the type encodes: a key the
/// type never writes is unknown. The keys a type writes are learned from its own encoding, once
/// per new key (a nil optional is not written, so a `null` value is never counted as unknown).
enum MessageCoding {
    /// `message` as JSON, under its message type.
    static func encoded<M: AgentMessage>(_ message: M) throws -> EncodedMessage {
        EncodedMessage(messageType: M.messageType, contentType: ContentType.json, payload: try encode(message))
    }

    static func encode<M: AgentMessage>(_ message: M) throws -> Data {
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.withoutEscapingSlashes]
            return try encoder.encode(message)
        } catch {
            throw AgentError(.invalidArgument, "cannot encode \(M.messageType) as JSON: \(error)", cause: error)
        }
    }

    /// Decodes `M` from JSON, rejecting unknown top-level keys unless `M` accepts them.
    ///
    /// - Throws: ``AgentError`` (``AgentError/Code/invalidArgument``) naming the message type and
    ///   what is wrong: malformed JSON, a missing or mistyped key, an unknown key.
    static func decode<M: AgentMessage>(_ type: M.Type, from payload: Data) throws -> M {
        let decoded: StrictlyDecoded<M>
        do {
            decoded = try JSONDecoder().decode(StrictlyDecoded<M>.self, from: payload)
        } catch let error as DecodingError {
            var reason = describe(error)
            if case .dataCorrupted(let context) = error, context.codingPath.isEmpty {
                reason += " (payload: \(excerpt(payload)))"
            }
            throw AgentError(.invalidArgument, "cannot decode \(M.messageType) from its JSON payload: \(reason)",
                             cause: error)
        } catch {
            throw AgentError(.invalidArgument, "cannot decode \(M.messageType) from its JSON payload: \(error)",
                             cause: error)
        }
        if !M.acceptsUnknownKeys, let keys = decoded.keys.presentKeys {
            let unknown = try unknownKeys(keys, of: decoded.value)
            if !unknown.isEmpty {
                let list = unknown.sorted().map { "\"\($0)\"" }.joined(separator: ", ")
                throw AgentError(
                    .invalidArgument,
                    "cannot decode \(M.messageType) from its JSON payload: unknown key\(unknown.count == 1 ? "" : "s") \(list) (\(M.self) has no such property)")
            }
        }
        return decoded.value
    }

    /// The keys each message type is known to write, by type.
    private static let knownKeys = Mutex<[ObjectIdentifier: Set<String>]>([:])

    private static func unknownKeys<M: AgentMessage>(_ keys: [String], of value: M) throws -> [String] {
        let id = ObjectIdentifier(M.self)
        let known = knownKeys.withLock { $0[id] ?? [] }
        let candidates = keys.filter { !known.contains($0) }
        if candidates.isEmpty { return [] }
        // Learn what this value writes; keys it writes are known from now on.
        let written = try JSONDecoder().decode(ObjectKeys.self, from: encode(value)).presentKeys ?? []
        knownKeys.withLock { $0[id, default: []].formUnion(written) }
        let writtenSet = Set(written)
        return candidates.filter { !writtenSet.contains($0) }
    }

    /// The start of a payload, for an error message.
    static func excerpt(_ payload: Data, limit: Int = 80) -> String {
        if payload.isEmpty { return "empty" }
        let text = String(decoding: payload.prefix(limit), as: UTF8.self)
        return payload.count > limit ? "\(text)… (\(payload.count) bytes)" : text
    }

    /// A readable account of a decoding error: where in the JSON, and what.
    static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            var text = ""
            for key in keys {
                if let index = key.intValue {
                    text += "[\(index)]"
                } else {
                    text += text.isEmpty ? key.stringValue : ".\(key.stringValue)"
                }
            }
            return text.isEmpty ? "the top level" : "\"\(text)\""
        }
        func underlying(_ context: DecodingError.Context) -> String {
            context.underlyingError.map { " (\($0))" } ?? ""
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "the key \(path(context.codingPath + [key])) is missing"
        case .valueNotFound(let type, let context):
            return "\(path(context.codingPath)) is null where \(type) is required"
        case .typeMismatch(let type, let context):
            return "\(path(context.codingPath)) is not \(type): \(context.debugDescription)"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty
                ? "\(context.debugDescription)\(underlying(context))"
                : "\(path(context.codingPath)): \(context.debugDescription)\(underlying(context))"
        @unknown default:
            return "\(error)"
        }
    }
}

/// A value decoded together with the keys of the JSON object it came from, in one parse.
private struct StrictlyDecoded<M: Decodable>: Decodable {
    let value: M
    let keys: ObjectKeys

    init(from decoder: any Decoder) throws {
        // AutoGen builds a message with `cls(**json)`: anything but an object is refused, even
        // where `M` would decode from it (`[]` decodes a message without properties).
        keys = try ObjectKeys(from: decoder)
        guard keys.presentKeys != nil else {
            throw DecodingError.dataCorrupted(.init(
                codingPath: [], debugDescription: "the payload is \(Self.kind(of: decoder)), not a JSON object"))
        }
        value = try decoder.singleValueContainer().decode(M.self)
    }

    /// What a JSON value that is not an object is, for an error message.
    private static func kind(of decoder: any Decoder) -> String {
        if (try? decoder.unkeyedContainer()) != nil { return "a JSON array" }
        guard let single = try? decoder.singleValueContainer() else { return "not JSON" }
        if single.decodeNil() { return "null" }
        if (try? single.decode(Bool.self)) != nil { return "a JSON boolean" }
        if (try? single.decode(Double.self)) != nil { return "a JSON number" }
        if (try? single.decode(String.self)) != nil { return "a JSON string" }
        return "not a JSON object"
    }
}

/// The non-null keys of a JSON object (nil when the JSON is not an object).
private struct ObjectKeys: Decodable {
    let presentKeys: [String]?

    init(from decoder: any Decoder) throws {
        guard let object = try? decoder.container(keyedBy: AnyKey.self) else {
            presentKeys = nil
            return
        }
        presentKeys = object.allKeys.compactMap { key in
            (try? object.decodeNil(forKey: key)) == true ? nil : key.stringValue
        }
    }
}

private struct AnyKey: CodingKey {
    let stringValue: String
    let intValue: Int? = nil

    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}
