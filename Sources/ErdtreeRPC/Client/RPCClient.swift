import NIOCore
import NIOPosix
import NIOSSL

/// A gRPC client over one HTTP/2 connection (an nghttp2 client session).
///
/// Used by the `erdtree` CLI and by slaves to reach their master. Calls multiplex on the
/// one connection; when it closes, open calls fail with UNAVAILABLE and the owner connects
/// again.
public final class RPCClient: Sendable {
    public let channel: any Channel
    private let handler: NIOLoopBound<GRPCClientConnectionHandler>
    private let maxMessageBytes: Int

    private init(channel: any Channel, handler: NIOLoopBound<GRPCClientConnectionHandler>, maxMessageBytes: Int) {
        self.channel = channel
        self.handler = handler
        self.maxMessageBytes = maxMessageBytes
    }

    /// Connects to `host:port` over HTTP/2: cleartext with prior knowledge, or TLS with ALPN h2.
    ///
    /// With `tls`, the connection is returned once the handshake has succeeded, so a server
    /// that refuses the certificate (or is not trusted) fails here, not on the first call.
    /// - Parameter metadata: sent with every call (e.g. `authorization: Bearer …`).
    /// - Throws: the connect error (refused, unreachable, timed out), a `TLSError` naming a
    ///   file that cannot be used, or the handshake's error (untrusted or expired certificate,
    ///   refused client certificate).
    public static func connect(
        host: String, port: Int, group: any EventLoopGroup,
        connectTimeout: Duration = .seconds(5), maxMessageBytes: Int = 4 << 20, metadata: [HTTPField] = [],
        tls: ClientTLS? = nil
    ) async throws -> RPCClient {
        let authority = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        let sslContext = try tls?.makeContext()
        let serverName = tls?.expectedName(host: host)
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(TimeAmount(connectTimeout))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)  // not .socketOption: see RPCServer
        let (channel, handler, handshake) = try await bootstrap.connect(host: host, port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                let pipeline = channel.pipeline.syncOperations
                var handshake: EventLoopFuture<Void>?
                if let sslContext {
                    try pipeline.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: serverName))
                    let done = HandshakeWaiter(promise: channel.eventLoop.makePromise())
                    try pipeline.addHandler(done)
                    handshake = done.promise.futureResult
                }
                let handler = try GRPCClientConnectionHandler(
                    authority: authority, scheme: sslContext == nil ? "http" : "https", metadata: metadata)
                try pipeline.addHandler(handler)
                return (channel, NIOLoopBound(handler, eventLoop: channel.eventLoop), handshake)
            }
        }
        if let handshake {
            do {
                try await handshake.get()
            } catch {
                try? await channel.close()
                throw error
            }
        }
        return RPCClient(channel: channel, handler: handler, maxMessageBytes: maxMessageBytes)
    }

    /// Starts a call of any shape. Callbacks run on the connection's event loop;
    /// `onFinish` runs exactly once.
    public func makeCall(
        path: String, timeout: Duration? = nil,
        onMessage: @escaping @Sendable (ByteBuffer) -> Void,
        onFinish: @escaping @Sendable (RPCStatus) -> Void
    ) -> ClientCall {
        let call = ClientCall(
            path: path, eventLoop: channel.eventLoop, allocator: channel.allocator,
            maxMessageBytes: maxMessageBytes, onMessage: onMessage, onFinish: onFinish)
        let nanos = timeout.map { Self.nanoseconds($0) }
        let handler = self.handler
        if channel.eventLoop.inEventLoop {
            handler.value.start(call, timeoutNanos: nanos)
        } else {
            channel.eventLoop.execute { handler.value.start(call, timeoutNanos: nanos) }
        }
        return call
    }

    /// One request, one response.
    /// - Throws: `RPCStatus` when the call does not end with OK and exactly one message.
    public func unary(path: String, request: ByteBuffer, timeout: Duration? = nil) async throws -> ByteBuffer {
        let result: Result<ByteBuffer, RPCStatus> = await withCheckedContinuation { continuation in
            let response = NIOLoopBoundBox.makeEmptyBox(valueType: ByteBuffer.self, eventLoop: channel.eventLoop)
            let call = makeCall(
                path: path, timeout: timeout,
                onMessage: { message in response.value = message },
                onFinish: { status in
                    if status.code != .ok {
                        continuation.resume(returning: .failure(status))
                    } else if let message = response.value {
                        continuation.resume(returning: .success(message))
                    } else {
                        continuation.resume(
                            returning: .failure(RPCStatus(.internal, "\(path) answered OK without a message")))
                    }
                })
            call.send(request)
            call.closeSend()
        }
        return try result.get()
    }

    public func close() async {
        try? await channel.close()
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? Int64.max : product + attoseconds / 1_000_000_000
    }
}
