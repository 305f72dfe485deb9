import CNATS
import Synchronization

/// nats.c's connection callbacks, which find their connection's ``ConnectionEvents`` through a
/// token rather than a pointer.
///
/// nats.c may call a connection's callbacks after `natsConnection_Destroy` has returned
/// (nats.c#735), so the closure it is given cannot be a pointer to an object of ours that goes
/// away with the connection. It is a token instead, a number that this registry maps to the
/// events object while the connection lives; a late callback finds nothing and does nothing.
/// This is the one process-wide table of the module, there because nats.c's callbacks can only
/// reach Swift through a global.
enum ConnectionCallbacks {
    private static let registry = Mutex<[UInt: ConnectionEvents]>([:])
    private static let lastToken = Atomic<UInt>(0)

    /// Registers `events`; the token, passed to nats.c as the callbacks' closure.
    static func register(_ events: ConnectionEvents) -> UInt {
        let token = lastToken.add(1, ordering: .relaxed).newValue
        registry.withLock { $0[token] = events }
        return token
    }

    static func unregister(_ token: UInt) {
        _ = registry.withLock { $0.removeValue(forKey: token) }
    }

    static func closure(for token: UInt) -> UnsafeMutableRawPointer? {
        UnsafeMutableRawPointer(bitPattern: token)
    }

    private static func events(_ closure: UnsafeMutableRawPointer?) -> ConnectionEvents? {
        let token = UInt(bitPattern: closure)
        return registry.withLock { $0[token] }
    }

    /// Sets the four callbacks on `options`, each with `token` as its closure.
    static func install(on options: OpaquePointer, token: UInt) -> natsStatus {
        let closure = closure(for: token)
        var status = natsOptions_SetDisconnectedCB(options, { _, closure in
            ConnectionCallbacks.events(closure)?.connectionLost()
        }, closure)
        if status == NATS_OK {
            status = natsOptions_SetReconnectedCB(options, { connection, closure in
                guard let events = ConnectionCallbacks.events(closure) else { return }
                // nats.c retains the connection for the length of the callback.
                var url = [CChar](repeating: 0, count: 512)
                let known = connection.map { natsConnection_GetConnectedUrl($0, &url, url.count) == NATS_OK } ?? false
                events.reconnected(to: known ? String(decoding: url.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : events.address)
            }, closure)
        }
        if status == NATS_OK {
            status = natsOptions_SetClosedCB(options, { _, closure in
                ConnectionCallbacks.events(closure)?.closed()
            }, closure)
        }
        if status == NATS_OK {
            status = natsOptions_SetErrorHandler(options, { _, subscription, error, closure in
                ConnectionCallbacks.events(closure)?.asynchronousError(error, subscription: subscription.map(LibraryHandle.init))
            }, closure)
        }
        return status
    }
}
