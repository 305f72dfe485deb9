import ProtoWire
import FuzzSupport

extension EnvelopeFuzz {
    /// The request id the host puts on a forwarded request: the largest it can issue.
    static let hostRequestID = String(UInt64.max)

    /// What `DataChannel` does with a message from a worker: parse its routing view; forward a
    /// request under the host's own request id, answer one with an error response, or route a
    /// response back under the caller's id. Every rewrite must parse back to the same route.
    /// - Returns: The host's view of the message, nil if the host drops it as malformed.
    static func checkHostPath(_ bytes: UnsafeRawBufferPointer) -> Envelope? {
        let envelope: Envelope
        do {
            envelope = try Envelope.parse(bytes)
        } catch let error as WireError {
            Sink.keep(String(describing: error))
            precondition(
                (0...bytes.count).contains(error.offset), "\(error): offset outside the \(bytes.count)-byte message")
            return nil
        } catch {
            preconditionFailure("Envelope.parse threw something other than a WireError: \(error)")
        }

        switch envelope {
        case .request(let request):
            checkBody(request.body, bytes)
            // Forwarded under the host's id: the same target, nothing else changed.
            let forwarded = rewritten(bytes, messageField: 1, body: request.body, requestID: hostRequestID)
            guard case .request(let again) = parsed(forwarded) else {
                preconditionFailure("a forwarded request no longer parses as a request")
            }
            precondition(again.requestID == hostRequestID, "forwarded request id \(again.requestID.debugDescription)")
            precondition(
                again.targetType == request.targetType && again.targetKey == request.targetKey,
                "forwarded to \(again.targetType)/\(again.targetKey) instead of \(request.targetType)/\(request.targetKey)")
            // Refused (unknown agent type, owner gone, oversized): answered under the caller's id.
            checkErrorResponse(requestID: request.requestID)

        case .response(let response):
            checkBody(response.body, bytes)
            Sink.keep(Int(truncatingIfNeeded: UInt64(response.requestID) ?? 0))  // as reply(_:_:) reads it
            // Routed back under the caller's id, which may be any string the caller chose.
            for callerID in [response.requestID, "", "caller-\(response.requestID.utf8.count)"] {
                let routed = rewritten(bytes, messageField: 2, body: response.body, requestID: callerID)
                guard case .response(let again) = parsed(routed) else {
                    preconditionFailure("a routed response no longer parses as a response")
                }
                precondition(
                    again.requestID == callerID,
                    "routed response id \(again.requestID.debugDescription), expected \(callerID.debugDescription)")
            }
            checkErrorResponse(requestID: response.requestID)

        case .event:
            break  // forwarded unchanged to the subscribers of its topic type
        }
        return envelope
    }

    /// The body range the host hands back to `replacingRequestID` lies within the message.
    static func checkBody(_ body: Range<Int>, _ bytes: UnsafeRawBufferPointer) {
        precondition(
            body.lowerBound >= 0 && body.upperBound <= bytes.count, "body \(body) outside the \(bytes.count)-byte message")
    }

    /// `replacingRequestID` on a body that `parse` accepted: it reads the same fields with the
    /// same reader, so it must not throw.
    static func rewritten(
        _ bytes: UnsafeRawBufferPointer, messageField: Int, body: Range<Int>, requestID: String
    ) -> [UInt8] {
        do {
            return try Envelope.replacingRequestID(in: bytes, messageField: messageField, body: body, with: requestID)
        } catch {
            preconditionFailure("replacingRequestID refused a body that parse accepted: \(error)")
        }
    }

    static func parsed(_ message: [UInt8]) -> Envelope {
        do {
            return try message.withUnsafeBytes { try Envelope.parse($0) }
        } catch {
            preconditionFailure("a message the host wrote does not parse: \(error)")
        }
    }

    /// The error answer the host sends a caller carries the caller's request id back.
    static func checkErrorResponse(requestID: String) {
        let answer = Envelope.errorResponse(
            requestID: requestID, error: "Agent type 'x' is not registered with the host.")
        guard case .response(let response) = parsed(answer) else {
            preconditionFailure("an error response does not parse as a response")
        }
        precondition(
            response.requestID == requestID,
            "error response id \(response.requestID.debugDescription), expected \(requestID.debugDescription)")
    }
}
