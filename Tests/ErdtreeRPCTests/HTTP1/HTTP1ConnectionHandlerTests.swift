import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import ErdtreeRPC

/// The HTTP/1.1 connection handler behind NIOHTTP1's server pipeline, in an `EmbeddedChannel`:
/// raw request bytes in, raw response bytes out.
@Suite struct HTTP1ConnectionHandlerTests {
    private final class Connection {
        let channel = EmbeddedChannel()
        var serving = true

        init(router: RPCRouter = MachineRoutes.router) throws {
            let limits = RPCServer.Limits(maxMessageBytes: 64)
            let logger = Logger(label: "erdtree.rpc.test") { _ in SwiftLogNoOpLogHandler() }
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
            try channel.pipeline.syncOperations.addHandler(
                HTTP1ConnectionHandler(
                    router: router, limits: limits, isServing: { true },
                    makeHTTP2: {
                        try HTTP2ServerConnectionHandler(
                            router: router, limits: limits, statistics: RPCServer.Statistics(), logger: logger)
                    }))
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 8080)).wait()
        }

        deinit { channel.tearDown() }

        /// Sends `request` and returns everything written back.
        func exchange(_ request: String) throws -> String {
            try exchange(Array(request.utf8))
        }

        func exchange(_ request: [UInt8]) throws -> String {
            try channel.writeInbound(ByteBuffer(bytes: request))
            var out = ""
            // The pipeline holds pipelined requests back until the answer before them is
            // written, and hands them on at the next read.
            for _ in 0..<8 {
                channel.embeddedEventLoop.run()
                while let part = try channel.readOutbound(as: IOData.self) {
                    guard case .byteBuffer(let bytes) = part else { continue }
                    out += String(decoding: bytes.readableBytesView, as: UTF8.self)
                }
                channel.read()
            }
            return out
        }
    }

    private func post(_ path: String, _ contentType: String, _ body: [UInt8], extra: String = "") -> [UInt8] {
        Array(
            "POST \(path) HTTP/1.1\r\nhost: x\r\ncontent-type: \(contentType)\r\n\(extra)content-length: \(body.count)\r\n\r\n"
                .utf8) + body
    }

    @Test func healthzAnswersServingAndHeadOmitsTheBody() throws {
        let connection = try Connection()
        let get = try connection.exchange("GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        #expect(get.hasPrefix("HTTP/1.1 200 OK") && get.hasSuffix("SERVING\n"))
        let head = try connection.exchange("HEAD /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        #expect(head.contains("content-length: 8") && !head.contains("SERVING"))
    }

    @Test func aConnectUnaryCallIsAnsweredWholeWithItsLength() throws {
        let connection = try Connection()
        let response = try connection.exchange(post(MachineRoutes.unary, "application/json", Array(#"{"k":1}"#.utf8)))
        #expect(response.hasPrefix("HTTP/1.1 200 OK"))
        #expect(response.contains("content-type: application/json") && response.contains("content-length: 11"))
        #expect(response.hasSuffix(#"{"bytes":7}"#))
    }

    @Test func refusalsAreConnectErrorsAnsweredAfterTheBody() throws {
        let connection = try Connection()
        let unknown = try connection.exchange(post("/t.S/Nope", "application/json", Array("{}".utf8)))
        #expect(unknown.hasPrefix("HTTP/1.1 404") && unknown.contains(#""code":"unimplemented""#))
        let grpc = try connection.exchange(post(MachineRoutes.unary, "application/grpc", [0, 0, 0, 0, 0]))
        #expect(grpc.hasPrefix("HTTP/1.1 415") && grpc.contains("content-type application/grpc is not served"))
        let method = try connection.exchange("DELETE \(MachineRoutes.getter) HTTP/1.1\r\nhost: x\r\n\r\n")
        #expect(method.hasPrefix("HTTP/1.1 405") && method.contains("allow: GET, POST"))
        #expect(connection.channel.isActive, "refusals keep the connection")
    }

    @Test func aBodyOverTheLimitIsReadToItsEndAndRefused() throws {
        let connection = try Connection()
        let response = try connection.exchange(
            post(MachineRoutes.unary, "application/proto", [UInt8](repeating: 1, count: 100)))
        #expect(response.hasPrefix("HTTP/1.1 429") && response.contains("request body larger than the 64-byte limit"))
        let next = try connection.exchange("GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        #expect(next.hasPrefix("HTTP/1.1 200"), "the next request on the connection is served")
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let connection = try Connection()
        let response = try connection.exchange(
            post(MachineRoutes.unary, "application/proto", [1, 2])
                + Array("GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n".utf8)
                + post("/t.S/Nope", "application/proto", []))
        // The first answer's body is binary, with no line break before the next status line.
        let statuses = response.split(separator: "HTTP/1.1 ").map { $0.prefix(3) }
        #expect(statuses == ["200", "200", "404"], "\(response)")
    }

    @Test func aConnectStreamGoesOutChunkedAndEndsWithTheEndStreamEnvelope() throws {
        let connection = try Connection()
        let response = try connection.exchange(post(MachineRoutes.stream, "application/connect+proto", framed([5])))
        #expect(response.contains("transfer-encoding: chunked") && response.contains("application/connect+proto"))
        #expect(response.contains("{}"), "the end-stream envelope")
        #expect(response.hasSuffix("0\r\n\r\n"), "the body ended")
    }

    @Test func aBidirectionalStreamIs505AndTheConnectionCloses() throws {
        let connection = try Connection()
        let response = try connection.exchange(post(MachineRoutes.bidi, "application/connect+proto", framed([])))
        #expect(response.hasPrefix("HTTP/1.1 505") && response.contains("connection: close"))
        connection.channel.embeddedEventLoop.run()
        #expect(!connection.channel.isActive)
    }

    @Test func upgradeToH2CSwitchesAndAnswersTheRequestOverHTTP2() throws {
        let connection = try Connection()
        let response = try connection.exchange(
            "GET /t.S/Nope HTTP/1.1\r\nhost: x\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\n"
                + "http2-settings: AAMAAABkAAQAAP__\r\n\r\n")
        #expect(response.hasPrefix("HTTP/1.1 101 Switching Protocols"))
        let pipeline = connection.channel.pipeline.syncOperations
        #expect((try? pipeline.handler(type: HTTP2ServerConnectionHandler.self)) != nil)
        #expect((try? pipeline.handler(type: HTTP1ConnectionHandler.self)) == nil)
    }

    @Test func anUpgradeThatCannotHappenIsAnsweredOverHTTP1AndCloses() throws {
        let connection = try Connection()
        let response = try connection.exchange(
            "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n")
        #expect(response.hasPrefix("HTTP/1.1 200") && response.contains("connection: close"))
    }

    @Test func drainingClosesAnIdleConnectionAtOnce() throws {
        let connection = try Connection()
        connection.channel.pipeline.fireUserInboundEventTriggered(RPCServer.Drain())
        connection.channel.embeddedEventLoop.run()
        #expect(!connection.channel.isActive)
    }

    @Test func anIdleTimeoutClosesAConnectionStalledInsideARequest() throws {
        let connection = try Connection()
        _ = try connection.exchange("POST \(MachineRoutes.unary) HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n")
        connection.channel.pipeline.fireUserInboundEventTriggered(IdleStateHandler.IdleStateEvent.read)
        connection.channel.embeddedEventLoop.run()
        #expect(!connection.channel.isActive)
    }
}
