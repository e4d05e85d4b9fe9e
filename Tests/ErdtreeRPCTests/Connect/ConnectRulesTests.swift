import NIOCore
import Testing

@testable import ErdtreeRPC

/// Connect's request rules as pure functions of the request fields (connectrpc.com/docs/protocol).
@Suite struct ConnectRulesTests {
    @Test func timeoutIsZeroToTenDigitsOfMilliseconds() {
        #expect(ConnectProtocol.timeoutNanos(nil) == .success(nil))
        #expect(ConnectProtocol.timeoutNanos("0") == .success(0))
        #expect(ConnectProtocol.timeoutNanos("9999999999") == .success(9_999_999_999_000_000))
        for bad in ["soon", "-1", "12345678901", ""] {
            #expect(
                ConnectProtocol.timeoutNanos(bad)
                    == .failure(RPCStatus(.invalidArgument, "connect-timeout-ms \(bad) is not 0-10 digits")))
        }
    }

    @Test func gzipIsOfferedUnlessItsQualityIsZero() {
        #expect(ConnectProtocol.namesGzip("br, gzip"))
        #expect(ConnectProtocol.namesGzip("GZIP;q=0.5"))
        #expect(!ConnectProtocol.namesGzip("gzip;q=0"))
        #expect(!ConnectProtocol.namesGzip("identity"))
        #expect(!ConnectProtocol.namesGzip(nil))
    }

    @Test func streamingOptionsComeFromTheConnectFields() throws {
        var fields = RequestHead.ConnectFields()
        fields.streamContentEncoding = "gzip"
        fields.streamAcceptEncoding = "gzip"
        fields.timeoutMs = "20"
        let options = try ConnectStreaming.Options.read(codec: .json, fields: fields).get()
        #expect(options.inflatesRequests && options.compressesResponses && options.timeoutNanos == 20_000_000)
        #expect(options.responseHeaders.map(\.0) == ["content-type", "connect-content-encoding"])
        fields.streamContentEncoding = "zstd"
        guard case .failure(let status) = ConnectStreaming.Options.read(codec: .json, fields: fields) else {
            Issue.record("an unknown encoding was accepted")
            return
        }
        #expect(status.code == .unimplemented && status.message.contains("zstd"))
    }

    @Test func aGetQueryCarriesCodecMessageAndCompression() throws {
        let parsed = try ConnectGet.parse(query: "connect=v1&encoding=proto&message=AQI&base64=1&compression=gzip")
            .get()
        #expect(parsed.codec == .proto && parsed.body == [1, 2] && parsed.compression == "gzip")
        let json = try ConnectGet.parse(query: "encoding=json&message=%7B%22k%22%3A+1%7D").get()
        #expect(String(decoding: json.body, as: UTF8.self) == #"{"k": 1}"#)
    }

    @Test(arguments: [
        ("message=x", "a Connect GET needs encoding=json or encoding=proto"),
        ("encoding=xml&message=x", "encoding=xml is not json or proto"),
        ("encoding=json", "a Connect GET needs the message parameter"),
        ("connect=v2&encoding=json&message=x", "connect=v2 is not v1"),
        ("encoding=json&message=%zz", "the query is not valid percent-encoding"),
        ("encoding=proto&message=***&base64=1", "message is not base64"),
    ])
    func aBadGetQueryIsInvalidArgumentSayingWhy(query: String, message: String) {
        #expect(
            ConnectGet.parse(query: Substring(query)).map(\.codec) == .failure(RPCStatus(.invalidArgument, message)))
    }

    @Test func aUnaryAnswerTranscodesAndCompressesWhenAskedAndLargeEnough() {
        var fields = RequestHead.ConnectFields()
        fields.acceptEncoding = "gzip"
        let exchange = ConnectUnary(codec: .proto, fields: fields, encoding: nil)
        var framedMessage = ByteBuffer()
        framedMessage.writeBytes(framed([UInt8](repeating: 7, count: 4096)))
        let large = exchange.response(
            to: .ok, framedMessage: framedMessage, route: nil, allocator: ByteBufferAllocator())
        #expect(large.status == .ok && large.contentEncoding == "gzip" && large.body.readableBytes < 4096)
        let missing = exchange.response(
            to: .ok, framedMessage: ByteBuffer(), route: nil, allocator: ByteBufferAllocator())
        #expect(missing.status == .internalServerError, "OK without a message is the handler's bug")
    }

    /// A status's metadata goes in the end-stream message's `metadata`, each name with a list of
    /// values (connectrpc.com/docs/protocol#error-end-stream).
    @Test func theEndStreamMessageCarriesTheStatusMetadata() {
        var out = ByteBuffer()
        let status = RPCStatus(
            .failedPrecondition, "not the master", metadata: ["erdtree-master": "10.0.0.2:8080", "b": "2"])
        ConnectStreaming.endStream(status, into: &out)
        out.moveReaderIndex(forwardBy: 5)
        let json = out.readString(length: out.readableBytes)
        #expect(
            json == #"{"error":{"code":"failed_precondition","message":"not the master"},"#
                + #""metadata":{"b":["2"],"erdtree-master":["10.0.0.2:8080"]}}"#)

        var ok = ByteBuffer()
        ConnectStreaming.endStream(RPCStatus(.ok, metadata: ["m": "v"]), into: &ok)
        ok.moveReaderIndex(forwardBy: 5)
        #expect(ok.readString(length: ok.readableBytes) == #"{"metadata":{"m":["v"]}}"#)
    }
}
