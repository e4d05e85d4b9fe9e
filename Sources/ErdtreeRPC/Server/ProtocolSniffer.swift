import NIOCore

/// The first handler of every accepted connection: reads until the first bytes say which
/// protocol the client speaks, then replaces itself with that protocol's handlers and hands
/// them what it read. The HTTP/2 client preface (RFC 9113 §3.4) means HTTP/2 with prior
/// knowledge (gRPC); anything else is HTTP/1.1.
///
/// It decides as soon as the bytes so far differ from the preface, so an HTTP/1.1 request is
/// never held back waiting for 24 bytes.
final class ProtocolSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    enum Detected {
        case http2
        case http1
    }

    private let install: (Detected, any Channel) throws -> Void
    private let statistics: RPCServer.Statistics
    private var buffered: ByteBuffer?

    /// `install` adds the handlers for the detected protocol behind this one, on the event loop.
    init(statistics: RPCServer.Statistics, install: @escaping (Detected, any Channel) throws -> Void) {
        self.statistics = statistics
        self.install = install
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if var buffered {
            buffered.writeBuffer(&incoming)
            self.buffered = buffered
        } else {
            buffered = incoming
        }
        guard let seen = buffered, let detected = Self.detect(seen) else { return }
        do {
            try install(detected, context.channel)
        } catch {
            context.fireErrorCaught(error)
            context.close(promise: nil)
            return
        }
        self.buffered = nil
        // Hand over what was read, then step aside.
        context.fireChannelRead(wrapInboundOut(seen))
        context.fireChannelReadComplete()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    /// A client that connected and went quiet before saying which protocol it speaks, or a
    /// shutdown before it did: nothing is in progress, so the connection just closes.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            context.close(promise: nil)
        } else if event is RPCServer.Drain {
            context.close(promise: nil)
        } else if event is RPCServer.HandshakeDeadline {
            // Still not a whole preface: a slowloris, or a port scanner that went quiet.
            statistics.connectionClosedForAbuse()
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    /// nil while every byte so far matches the start of the preface and it is not complete.
    static func detect(_ bytes: ByteBuffer) -> Detected? {
        let count = min(bytes.readableBytes, preface.count)
        let matches = bytes.withUnsafeReadableBytes { raw in
            zip(raw.prefix(count), preface.prefix(count)).allSatisfy { $0 == $1 }
        }
        if !matches { return .http1 }
        return count == preface.count ? .http2 : nil
    }
}
