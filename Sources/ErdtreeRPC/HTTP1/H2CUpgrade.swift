import NIOCore
import NIOHTTP1

/// HTTP/1.1 `Upgrade: h2c` (RFC 7540 §3.2): a client that does not know the server speaks
/// HTTP/2 asks in its first request; the server answers `101 Switching Protocols`, sends its
/// HTTP/2 connection preface, and answers that request on stream 1 over HTTP/2.
///
/// Honoured for every request except `/healthz` (HTTP/1.1 only), as long as the request
/// carries exactly one decodable `HTTP2-Settings` header. A request that asks to upgrade to
/// anything else, or that cannot be upgraded, is answered over HTTP/1.1 and the connection
/// closes after it: NIOHTTP1's decoder parses nothing after a request that asked to switch
/// protocols (llhttp stops at the switch point), so the connection cannot carry another.
enum H2CUpgrade {
    /// Whether the request asked to switch protocols at all, in llhttp's sense: an `Upgrade`
    /// header named in `Connection`, or CONNECT.
    static func asksToSwitch(_ head: HTTPRequestHead) -> Bool {
        if head.method == .CONNECT { return true }
        return head.headers.contains(name: "upgrade")
            && head.headers[canonicalForm: "connection"].contains { $0.lowercased() == "upgrade" }
    }

    /// The decoded `HTTP2-Settings` payload when the request asks for h2c and can have it.
    static func settings(_ head: HTTPRequestHead) -> [UInt8]? {
        guard head.headers[canonicalForm: "upgrade"].contains(where: { $0.lowercased() == "h2c" }) else { return nil }
        // "A server MUST NOT upgrade the connection to HTTP/2 if this header field is not
        // present or if more than one is present" (§3.2.1).
        let values = head.headers["http2-settings"]
        guard values.count == 1, let value = values.first else { return nil }
        if value.isEmpty { return [] }
        return Base64.decode(value)
    }

    /// The status line and headers of the switch, written raw: the HTTP/1.1 encoder is gone
    /// by then, and what follows on the wire is HTTP/2.
    static let switchingProtocols = ByteBuffer(
        string: "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n")

    /// Every handler `configureHTTPServerPipeline` and the server put in front of the
    /// HTTP/1.1 handler, which the switch takes out.
    static func removeHTTP1Handlers(from pipeline: ChannelPipeline.SynchronousOperations) {
        func remove<Handler: RemovableChannelHandler>(_ type: Handler.Type) {
            if let handler = try? pipeline.handler(type: type) { pipeline.removeHandler(handler, promise: nil) }
        }
        remove(HTTPResponseEncoder.self)
        remove(HTTPServerPipelineHandler.self)
        remove(NIOHTTPResponseHeadersValidator.self)
        remove(HTTPServerProtocolErrorHandler.self)
        // HTTP/2 connections carry quiet streams; see `RPCServer.Limits.idleTimeout`.
        remove(IdleStateHandler.self)
        // Leaves once the read it is delivering ends. Bytes after the upgrade request in that
        // same read are dropped: a client sends its HTTP/2 preface only after it saw the 101.
        remove(ByteToMessageHandler<HTTPRequestDecoder>.self)
    }
}

extension H2CUpgrade {
    /// Connection-specific fields, which have no place in HTTP/2 (RFC 9113 §8.2.2).
    static let hopByHop: Set<String> = [
        "connection", "upgrade", "http2-settings", "keep-alive", "proxy-connection", "transfer-encoding", "host",
        "te",
    ]
}
