import NIOCore

/// Connect streaming (`application/connect+proto|json`): the messages travel in the same 5-byte
/// envelopes as gRPC's; the stream ends with an end-stream envelope (flag 0x02) holding `{}` or
/// `{"error":{"code","message"}}` instead of trailers.
enum ConnectStreaming {
    static let compressedFlag: UInt8 = 0x01
    static let endStreamFlag: UInt8 = 0x02

    /// A streaming call's Connect settings, read from its request fields.
    struct Options: Equatable {
        var codec: ConnectProtocol.Codec
        /// `connect-content-encoding: gzip`: request envelopes flagged compressed are inflated.
        var inflatesRequests = false
        /// `connect-accept-encoding` offers gzip: answers of `ConnectProtocol.compressMinBytes`
        /// or more go compressed.
        var compressesResponses = false
        var timeoutNanos: Int64?

        init(codec: ConnectProtocol.Codec) {
            self.codec = codec
        }

        /// `connect-content-encoding`, `connect-accept-encoding` and `connect-timeout-ms`, or why
        /// the call is refused.
        static func read(codec: ConnectProtocol.Codec, fields: RequestHead.ConnectFields) -> Result<Options, RPCStatus>
        {
            var options = Options(codec: codec)
            switch fields.streamContentEncoding?.lowercased() {
            case nil, "identity": break
            case "gzip": options.inflatesRequests = true
            case let other?:
                return .failure(
                    RPCStatus(
                        .unimplemented,
                        "connect-content-encoding \(other) is not supported; this server takes "
                            + ConnectProtocol.encodings))
            }
            options.compressesResponses = ConnectProtocol.namesGzip(fields.streamAcceptEncoding)
            switch ConnectProtocol.timeoutNanos(fields.timeoutMs) {
            case .success(let nanos): options.timeoutNanos = nanos
            case .failure(let status): return .failure(status)
            }
            return .success(options)
        }

        /// `application/connect+proto` or `application/connect+json`.
        var contentType: String {
            codec == .json ? "application/connect+json" : "application/connect+proto"
        }

        /// The response's header fields after `:status`.
        var responseHeaders: [(String, String)] {
            compressesResponses
                ? [("content-type", contentType), ("connect-content-encoding", "gzip")]
                : [("content-type", contentType)]
        }

        /// A request message in the binary encoding (JSON transcoded), or the refusal.
        func request(_ message: ByteBuffer, route: RPCRouter.Route, allocator: ByteBufferAllocator)
            -> Result<ByteBuffer, RPCStatus>
        {
            guard codec == .json else { return .success(message) }
            guard let transcoder = route.transcoder else {
                return .failure(
                    RPCStatus(.unimplemented, "\(route.path) has no JSON mapping; use application/connect+proto"))
            }
            do throws(RPCStatus) {
                return .success(try transcoder.binaryRequest(fromJSON: message, allocator: allocator))
            } catch {
                return .failure(error)
            }
        }

        /// Appends one response message's envelope (JSON transcoded, gzip when asked and large
        /// enough) to `out`.
        /// - Throws: INTERNAL when the message cannot be written as JSON.
        func write(
            _ message: ByteBuffer, route: RPCRouter.Route?, into out: inout ByteBuffer, allocator: ByteBufferAllocator
        ) throws(RPCStatus) {
            var envelope = message
            if codec == .json {
                guard let transcoder = route?.transcoder,
                    let json = try? transcoder.jsonResponse(fromBinary: message, allocator: allocator)
                else { throw RPCStatus(.internal, "cannot write the response message as JSON") }
                envelope = json
            }
            var flags: UInt8 = 0
            if compressesResponses, envelope.readableBytes >= ConnectProtocol.compressMinBytes {
                envelope = Gzip.compress(envelope, allocator: allocator)
                flags = ConnectStreaming.compressedFlag
            }
            GRPCMessageFramer.write(envelope, into: &out, flags: flags)
        }
    }

    /// Appends the end-stream envelope for `status` to `out`.
    static func endStream(_ status: RPCStatus, into out: inout ByteBuffer) {
        var body = Array("{".utf8)
        if status.code != .ok {
            body += Array(#""error":"#.utf8)
            body += ConnectProtocol.errorBody(status)
        }
        // Connect's end-stream metadata: each name maps to a list of values.
        for (index, (name, value)) in status.metadata.sorted(by: { $0.key < $1.key }).enumerated() {
            body += Array((index == 0 ? (status.code != .ok ? #","metadata":{"# : #""metadata":{"#) : ",").utf8)
            JSONWriter.appendString(name, to: &body)
            body += Array(":[".utf8)
            JSONWriter.appendString(value, to: &body)
            body += Array("]".utf8)
            if index == status.metadata.count - 1 { body.append(UInt8(ascii: "}")) }
        }
        body.append(UInt8(ascii: "}"))
        out.writeInteger(endStreamFlag)
        out.writeInteger(UInt32(body.count))
        out.writeBytes(body)
    }
}
