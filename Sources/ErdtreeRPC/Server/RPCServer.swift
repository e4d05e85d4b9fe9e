import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

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

        public init(maxMessageBytes: Int = 4 << 20, idleTimeout: Duration = .seconds(30)) {
            self.maxMessageBytes = maxMessageBytes
            self.idleTimeout = idleTimeout
        }
    }

    /// Sent through every connection's pipeline to start a graceful shutdown.
    struct Drain {}

    private let router: RPCRouter
    private let limits: Limits
    private let isServing: @Sendable () -> Bool
    private let tls: ServerTLSContext?
    private let group: any EventLoopGroup
    private let logger: Logger
    private let state = Mutex(State())

    private struct State {
        var listener: (any Channel)?
        var connections: [ObjectIdentifier: any Channel] = [:]
    }

    /// - Parameters:
    ///   - tls: when set, every connection is TLS, with the certificate current at its accept.
    ///   - isServing: what `GET /healthz` reports (200 when true, else 503).
    public init(
        router: RPCRouter, limits: Limits = Limits(), tls: ServerTLSContext? = nil, group: any EventLoopGroup,
        logger: Logger, isServing: @escaping @Sendable () -> Bool = { true }
    ) {
        self.router = router
        self.limits = limits
        self.tls = tls
        self.isServing = isServing
        self.group = group
        self.logger = logger
    }

    /// Binds and starts accepting.
    /// - Returns: the bound address (useful with port 0).
    /// - Throws: the bind error, e.g. address in use.
    public func start(host: String, port: Int) async throws -> SocketAddress {
        let router = self.router
        let limits = self.limits
        let logger = self.logger
        let isServing = self.isServing
        let tls = self.tls
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // `.tcpOption`: `.socketOption(.tcp_nodelay)` is option 1 at the SOL_SOCKET level, which
            // is SO_DEBUG, and only root may set that (every connection failed for other users).
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { [weak self] channel in
                self?.track(channel)
                return channel.eventLoop.makeCompletedFuture {
                    let idle = IdleStateHandler(readTimeout: TimeAmount(limits.idleTimeout))
                    let makeHTTP2 = {
                        try HTTP2ServerConnectionHandler(
                            router: router, limits: limits, logger: logger, isServing: isServing)
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
                                    router: router, limits: limits, isServing: isServing,
                                    makeHTTP2: tls == nil ? makeHTTP2 : nil))
                        }
                    }
                    let pipeline = channel.pipeline.syncOperations
                    if let tls {
                        // The idle handler goes first so a handshake that stalls is timed out too.
                        try pipeline.addHandlers(
                            idle, NIOSSLServerHandler(context: tls.context), TLSProtocolSelector(install: install))
                    } else {
                        try pipeline.addHandlers(idle, ProtocolSniffer(install: install))
                    }
                }
            }
        let listener = try await bootstrap.bind(host: host, port: port).get()
        state.withLock { $0.listener = listener }
        guard let address = listener.localAddress else {
            throw RPCServerError.noLocalAddress
        }
        return address
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

    private func track(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        state.withLock { $0.connections[id] = channel }
        channel.closeFuture.whenComplete { [weak self] _ in
            _ = self?.state.withLock { $0.connections.removeValue(forKey: id) }
        }
    }
}

public enum RPCServerError: Error, CustomStringConvertible {
    case noLocalAddress

    public var description: String {
        switch self {
        case .noLocalAddress: "the listening socket has no local address"
        }
    }
}
