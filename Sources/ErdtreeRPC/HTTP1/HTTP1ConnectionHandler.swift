import NIOCore
import NIOHTTP1

/// What the port answers over HTTP/1.1 (behind NIOHTTP1's server pipeline, which keeps
/// pipelined requests in order and answers malformed ones with 400): `GET /healthz` for load
/// balancers — 200 `SERVING` or 503 `NOT_SERVING` from the node's health — and 404 naming the
/// port's protocols for anything else.
final class HTTP1ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let isServing: @Sendable () -> Bool
    private var head: HTTPRequestHead?

    init(isServing: @escaping @Sendable () -> Bool) {
        self.isServing = isServing
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break  // no route here takes a body; it is read and dropped, never buffered
        case .end:
            guard let head else { return }
            self.head = nil
            respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        var headers = HTTPHeaders()
        let status: HTTPResponseStatus
        let body: String
        switch (path, head.method) {
        case ("/healthz", .GET), ("/healthz", .HEAD):
            let serving = isServing()
            status = serving ? .ok : .serviceUnavailable
            body = serving ? "SERVING\n" : "NOT_SERVING\n"
        case ("/healthz", _):
            status = .methodNotAllowed
            headers.add(name: "allow", value: "GET, HEAD")
            body = "/healthz takes GET or HEAD\n"
        default:
            status = .notFound
            body = "\(path) is not served over HTTP/1.1; this port speaks gRPC over HTTP/2 and answers /healthz\n"
        }
        let bytes = context.channel.allocator.buffer(string: body)
        headers.add(name: "content-type", value: "text/plain; charset=utf-8")
        headers.add(name: "content-length", value: String(bytes.readableBytes))
        headers.add(name: "cache-control", value: "no-store")
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "connection", value: "close") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
            promise: nil)
        if head.method != .HEAD { context.write(wrapOutboundOut(.body(.byteBuffer(bytes))), promise: nil) }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
