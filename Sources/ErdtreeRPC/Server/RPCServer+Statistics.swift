import Synchronization

extension RPCServer {
    /// What the server's abuse limits have done since it started, and the request bytes every
    /// connection holds right now; Admin `Status` reports them.
    ///
    /// Shared by all connections on all event loops, hence atomics. Counters move only when a
    /// limit trips or a connection opens past `maxConnections`; `bufferedRequestBytes` moves
    /// when what a connection holds crosses a multiple of 64 KiB (each connection reports its
    /// bytes rounded down to that), so a call with a smaller message never touches it.
    public final class Statistics: Sendable {
        private let rejected = Atomic<Int>(0)
        private let closedForAbuse = Atomic<Int>(0)
        private let refusedForMemory = Atomic<Int>(0)
        private let buffered = Atomic<Int>(0)
        private let handshakes = Atomic<Int>(0)
        private let failedHandshakes = Atomic<Int>(0)

        public init() {}

        /// Connections closed on accept because `maxConnections` were open.
        public var connectionsRejected: Int { rejected.load(ordering: .relaxed) }
        /// Connections closed for breaking the protocol, flooding, or not finishing the
        /// HTTP/2 handshake in time.
        public var connectionsClosedForAbuse: Int { closedForAbuse.load(ordering: .relaxed) }
        /// Requests answered RESOURCE_EXHAUSTED because a buffered-bytes cap was reached.
        public var requestsRefusedForMemory: Int { refusedForMemory.load(ordering: .relaxed) }
        /// Request bytes received and not yet handed to a handler, over all connections, each
        /// connection's rounded down to 64 KiB.
        public var bufferedRequestBytes: Int { buffered.load(ordering: .relaxed) }
        /// TLS handshakes completed (with `server.tls`).
        public var tlsHandshakes: Int { handshakes.load(ordering: .relaxed) }
        /// TLS handshakes that failed: an untrusted or missing client certificate under mutual
        /// TLS, a cleartext client on the TLS port, a protocol the server does not speak.
        public var tlsHandshakesFailed: Int { failedHandshakes.load(ordering: .relaxed) }

        func connectionRejected() { rejected.add(1, ordering: .relaxed) }
        func connectionClosedForAbuse() { closedForAbuse.add(1, ordering: .relaxed) }
        func requestRefusedForMemory() { refusedForMemory.add(1, ordering: .relaxed) }
        func tlsHandshakeCompleted() { handshakes.add(1, ordering: .relaxed) }
        func tlsHandshakeFailed() { failedHandshakes.add(1, ordering: .relaxed) }

        /// Adds `delta` (negative when bytes are released) to the process-wide total.
        /// - Returns: the new total.
        func addBuffered(_ delta: Int) -> Int {
            buffered.add(delta, ordering: .relaxed).newValue
        }
    }
}
