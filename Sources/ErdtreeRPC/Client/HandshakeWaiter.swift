import NIOCore
import NIOTLS

/// Completes its promise when the TLS handshake ends: succeeded on `handshakeCompleted`,
/// failed with the first error or the close that comes before it. `RPCClient.connect` waits on
/// it so a refused certificate is the connect's error, with NIOSSL's reason, rather than a
/// first call's UNAVAILABLE "connection closed".
final class HandshakeWaiter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    let promise: EventLoopPromise<Void>
    private var done = false

    init(promise: EventLoopPromise<Void>) {
        self.promise = promise
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        context.fireUserInboundEventTriggered(event)
        if case TLSUserEvent.handshakeCompleted = event, !done {
            done = true
            promise.succeed(())
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failIfWaiting(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failIfWaiting(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }

    /// A connect that fails (refused, timed out) closes a channel that never became active:
    /// no `channelInactive` then, only the handlers' removal, and a promise left unfulfilled
    /// would trap ("leaking promise") when it is released.
    func handlerRemoved(context: ChannelHandlerContext) {
        failIfWaiting(ChannelError.ioOnClosedChannel)
    }

    private func failIfWaiting(_ error: any Error) {
        guard !done else { return }
        done = true
        promise.fail(error)
    }
}
