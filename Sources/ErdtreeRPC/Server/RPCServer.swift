import ErdtreeSync
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// Listens on one TCP port and serves the routes of an `RPCRouter` over HTTP/2 (prior
/// knowledge, or `Upgrade: h2c`) and, for Connect, HTTP/1.1, with `/healthz` over HTTP/1.1,
/// all on the same port (`ProtocolSniffer` tells them apart). With a `ServerTLSContext` the port
/// speaks only TLS, and ALPN tells them apart (`TLSProtocolSelector`).
///
/// One `HTTP2ServerConnectionHandler` (one nghttp2 session) per accepted HTTP/2 connection, on
/// the event loop the connection was accepted on. `shutdownGracefully` stops accepting, sends
/// GOAWAY on every connection, lets in-flight calls finish, and closes what is left when
/// the grace period ends.
public final class RPCServer: Sendable {
    public struct Limits: Sendable {
        /// Largest request message accepted; larger ones fail with RESOURCE_EXHAUSTED.
        public var maxMessageBytes: Int
        /// An HTTP/1.1 connection, or one that has not yet shown its protocol, that sends
        /// nothing this long while no call on it is in progress is closed (a client that sent
        /// half a request and stalled holds nothing for longer). HTTP/2 connections are exempt:
        /// gRPC streams such as `Replicate` and `Health/Watch` may be quiet for long.
        public var idleTimeout: Duration
        /// Connections open at once; one more is closed as soon as it is accepted.
        public var maxConnections: Int
        /// HTTP/2 streams a client may have open on one connection (SETTINGS_MAX_CONCURRENT_STREAMS).
        public var maxConcurrentStreams: Int
        /// Largest request header list (SETTINGS_MAX_HEADER_LIST_SIZE, counted as RFC 9113
        /// §6.5.2 does); a client that sends more is disconnected with GOAWAY.
        public var maxHeaderListBytes: Int
        /// Request bytes one HTTP/2 connection may make the server hold before its handlers take
        /// them (messages arriving in part). Past it the stream that went over is refused with
        /// RESOURCE_EXHAUSTED. Its connection window is twice this.
        public var maxBufferedBytesPerConnection: Int
        /// The same, over all connections together.
        public var maxBufferedBytes: Int
        /// A connection must have sent its whole HTTP/2 preface and SETTINGS (or the first bytes
        /// of an HTTP/1.1 request) this soon after it is accepted, or it is closed.
        public var handshakeTimeout: Duration

        public init(
            maxMessageBytes: Int = 4 << 20, idleTimeout: Duration = .seconds(30), maxConnections: Int = 10_000,
            maxConcurrentStreams: Int = 100, maxHeaderListBytes: Int = 64 << 10,
            maxBufferedBytesPerConnection: Int = 32 << 20, maxBufferedBytes: Int = 256 << 20,
            handshakeTimeout: Duration = .seconds(10)
        ) {
            self.maxMessageBytes = maxMessageBytes
            self.idleTimeout = idleTimeout
            self.maxConnections = maxConnections
            self.maxConcurrentStreams = maxConcurrentStreams
            self.maxHeaderListBytes = maxHeaderListBytes
            self.maxBufferedBytesPerConnection = maxBufferedBytesPerConnection
            self.maxBufferedBytes = maxBufferedBytes
            self.handshakeTimeout = handshakeTimeout
        }
    }

    /// Sent through every connection's pipeline to start a graceful shutdown.
    struct Drain {}

    /// Sent through a connection's pipeline `handshakeTimeout` after it was accepted: whoever
    /// still waits for the client's first request or HTTP/2 SETTINGS closes it.
    struct HandshakeDeadline {}

    /// What the limits have done; read by Admin `Status`.
    public let statistics: Statistics

    private let router: RPCRouter
    private let limits: Limits
    private let isServing: @Sendable () -> Bool
    private let tls: ServerTLSContext?
    private let group: any EventLoopGroup
    private let logger: Logger
    private let state = Locked(State())

    private struct State {
        var listener: (any Channel)?
        var connections: [ObjectIdentifier: any Channel] = [:]
    }

    /// - Parameters:
    ///   - tls: when set, every connection is TLS, with the certificate current at its accept.
    ///   - isServing: what `GET /healthz` reports (200 when true, else 503).
    public init(
        router: RPCRouter, limits: Limits = Limits(), statistics: Statistics = Statistics(),
        tls: ServerTLSContext? = nil, group: any EventLoopGroup, logger: Logger,
        isServing: @escaping @Sendable () -> Bool = { true }
    ) {
        self.router = router
        self.limits = limits
        self.statistics = statistics
        self.tls = tls
        self.isServing = isServing
        self.group = group
        self.logger = logger
    }

    /// Binds and starts accepting.
    /// - Returns: the bound address (useful with port 0).
    /// - Throws: the bind error, e.g. address in use.
    public func start(host: String, port: Int) async throws -> SocketAddress {
        let statistics = self.statistics
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // `.tcpOption`: `.socketOption(.tcp_nodelay)` is option 1 at the SOL_SOCKET level, which
            // is SO_DEBUG, and only root may set that (every connection failed for other users).
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { [weak self] channel in
                guard let self, self.track(channel) else {
                    // Failing the initializer closes the socket before anything is read.
                    statistics.connectionRejected()
                    return channel.eventLoop.makeFailedFuture(RPCServerError.tooManyConnections)
                }
                return channel.eventLoop.makeCompletedFuture { try self.configureConnection(channel) }
            }
        let listener = try await bootstrap.bind(host: host, port: port).get()
        state.withLock { $0.listener = listener }
        guard let address = listener.localAddress else {
            throw RPCServerError.noLocalAddress
        }
        return address
    }

    /// Installs an accepted connection's handlers, on its event loop: the handshake deadline, the
    /// idle timeout, then TLS and ALPN or the protocol sniffer, which add HTTP/2 or HTTP/1.1 once
    /// the client has shown which it speaks. The fuzz harness for connections builds its channels
    /// with this too, so it fuzzes the pipeline the server runs.
    func configureConnection(_ channel: any Channel) throws {
        // Locals, so that the handlers hold what they use and not the server.
        let router = self.router
        let limits = self.limits
        let logger = self.logger
        let isServing = self.isServing
        let statistics = self.statistics
        let tls = self.tls
        Self.armHandshakeDeadline(on: channel, after: limits.handshakeTimeout)
        let idle = IdleStateHandler(readTimeout: TimeAmount(limits.idleTimeout))
        let makeHTTP2 = {
            try HTTP2ServerConnectionHandler(
                router: router, limits: limits, statistics: statistics, logger: logger, isServing: isServing)
        }
        let install = { (detected: ProtocolSniffer.Detected, channel: any Channel) throws in
            let pipeline = channel.pipeline.syncOperations
            switch detected {
            case .http2:
                pipeline.removeHandler(idle, promise: nil)
                try pipeline.addHandler(makeHTTP2())
            case .http1:
                try pipeline.configureHTTPServerPipeline(withErrorHandling: true)
                try pipeline.addHandler(
                    HTTP1ConnectionHandler(
                        router: router, limits: limits, isServing: isServing, makeHTTP2: tls == nil ? makeHTTP2 : nil))
            }
        }
        let pipeline = channel.pipeline.syncOperations
        if let tls {
            // The idle handler goes first so a handshake that stalls is timed out too.
            try pipeline.addHandlers(
                idle, NIOSSLServerHandler(context: tls.context),
                TLSProtocolSelector(statistics: statistics, install: install))
        } else {
            try pipeline.addHandlers(idle, ProtocolSniffer(statistics: statistics, install: install))
        }
    }

    /// Stops accepting, drains in-flight calls for up to `gracePeriod`, then closes
    /// whatever is still open. Safe to call more than once.
    public func shutdownGracefully(gracePeriod: Duration = .seconds(10)) async {
        let (listener, connections) = state.withLock { state in
            let listener = state.listener
            state.listener = nil
            return (listener, Array(state.connections.values))
        }
        try? await listener?.close()
        for channel in connections {
            channel.pipeline.fireUserInboundEventTriggered(Drain())
        }
        let logger = self.logger
        for channel in connections {
            let forceClose = channel.eventLoop.scheduleTask(in: TimeAmount(gracePeriod)) {
                logger.warning("grace period over; closing a connection with calls in flight")
                channel.close(promise: nil)
            }
            channel.closeFuture.whenComplete { _ in forceClose.cancel() }
        }
        for channel in connections {
            try? await channel.closeFuture.get()
        }
    }

    /// Remembers an accepted connection until it closes, unless `maxConnections` are open.
    /// - Returns: false when the connection must be turned away.
    private func track(_ channel: any Channel) -> Bool {
        let id = ObjectIdentifier(channel)
        let admitted = state.withLock { state in
            guard state.connections.count < limits.maxConnections else { return false }
            state.connections[id] = channel
            return true
        }
        guard admitted else { return false }
        channel.closeFuture.whenComplete { [weak self] _ in
            _ = self?.state.withLock { $0.connections.removeValue(forKey: id) }
        }
        return true
    }

    /// A client that trickles its preface a byte at a time resets every idle timer; this one
    /// runs from the accept, whatever arrives.
    private static func armHandshakeDeadline(on channel: any Channel, after timeout: Duration) {
        let deadline = channel.eventLoop.scheduleTask(in: TimeAmount(timeout)) {
            channel.pipeline.fireUserInboundEventTriggered(HandshakeDeadline())
        }
        channel.closeFuture.whenComplete { _ in deadline.cancel() }
    }
}

public enum RPCServerError: Error, CustomStringConvertible {
    case noLocalAddress
    case tooManyConnections

    public var description: String {
        switch self {
        case .noLocalAddress: "the listening socket has no local address"
        case .tooManyConnections: "connection refused: server.max_connections connections are open"
        }
    }
}
