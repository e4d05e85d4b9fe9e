import NIOCore
import NIOTLS

/// Sits behind `NIOSSLServerHandler` on a TLS port, in the place `ProtocolSniffer` holds on a
/// cleartext one: once the handshake is done, ALPN says which protocol the client speaks (h2 →
/// the nghttp2 session, http/1.1 → the HTTP/1.1 pipeline), and a client that offered no ALPN
/// gets the sniffer, which reads the decrypted bytes as it does on a cleartext port.
///
/// Until then it closes the connection on idle, on drain and at the handshake deadline, as the
/// sniffer does, so a client that stalls mid-handshake holds nothing for long.
final class TLSProtocolSelector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let install: (ProtocolSniffer.Detected, any Channel) throws -> Void
    private let statistics: RPCServer.Statistics

    init(statistics: RPCServer.Statistics, install: @escaping (ProtocolSniffer.Detected, any Channel) throws -> Void) {
        self.statistics = statistics
        self.install = install
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case TLSUserEvent.handshakeCompleted(let negotiated):
            statistics.tlsHandshakeCompleted()
            do {
                switch negotiated {
                case "h2": try install(.http2, context.channel)
                case "http/1.1": try install(.http1, context.channel)
                default:
                    try context.pipeline.syncOperations.addHandler(
                        ProtocolSniffer(statistics: statistics, install: install), position: .after(self))
                }
            } catch {
                context.fireErrorCaught(error)
                context.close(promise: nil)
                return
            }
            // NIOSSL fires this before it hands over any application data, so nothing has
            // passed through here yet and nothing needs replaying.
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        case let idle as IdleStateHandler.IdleStateEvent where idle == .read:
            context.close(promise: nil)
        case is RPCServer.Drain:
            context.close(promise: nil)
        case is RPCServer.HandshakeDeadline:
            // The TLS handshake itself is not done by `server.handshake_timeout`: a slowloris.
            statistics.connectionClosedForAbuse()
            context.close(promise: nil)
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    /// Still here, so the handshake has not completed: NIOSSL reports why it failed (and closes).
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        statistics.tlsHandshakeFailed()
        context.fireErrorCaught(error)
    }
}
