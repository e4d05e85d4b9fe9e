import Logging
import NIOCore
import NIOEmbedded

@testable import ErdtreeRPC

/// A server and a client HTTP/2 connection handler, each in an `EmbeddedChannel`, with the
/// bytes each writes handed to the other: real nghttp2 sessions on both sides, no sockets.
final class EmbeddedHTTP2Pair {
    let server = EmbeddedChannel()
    let client = EmbeddedChannel()
    let clientHandler: GRPCClientConnectionHandler
    /// How many writes the server made, one per flush.
    private(set) var serverWrites = 0

    init(router: RPCRouter, limits: RPCServer.Limits = RPCServer.Limits()) throws {
        let logger = Logger(label: "erdtree.rpc.test") { _ in SwiftLogNoOpLogHandler() }
        clientHandler = try GRPCClientConnectionHandler(authority: "embedded")
        try server.pipeline.syncOperations.addHandler(
            HTTP2ServerConnectionHandler(
                router: router, limits: limits, statistics: RPCServer.Statistics(), logger: logger))
        try client.pipeline.syncOperations.addHandler(clientHandler)
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 8080)
        try client.connect(to: address).wait()
        try server.connect(to: address).wait()
        try pump()
    }

    deinit {
        client.tearDown()
        server.tearDown()
    }

    /// Opens a gRPC call from the client; its events are recorded on the returned call.
    func call(_ path: String, timeoutNanos: Int64? = nil) -> RecordedCall {
        let recorded = RecordedCall()
        let call = ClientCall(
            path: path, eventLoop: client.eventLoop, allocator: client.allocator, maxMessageBytes: 4 << 20,
            // Weakly: the recorded call holds the call, whose callbacks would otherwise hold it back.
            onMessage: { [weak recorded] in recorded?.messages.append($0.allBytes) },
            onFinish: { [weak recorded] in recorded?.status = $0 })
        recorded.call = call
        clientHandler.start(call, timeoutNanos: timeoutNanos)
        return recorded
    }

    /// A unary call: its request sent and half-closed, and the connection pumped.
    func unary(_ path: String, _ request: [UInt8], timeoutNanos: Int64? = nil) throws -> RecordedCall {
        let recorded = call(path, timeoutNanos: timeoutNanos)
        recorded.call?.send(ByteBuffer(bytes: request))
        recorded.call?.closeSend()
        try pump()
        return recorded
    }

    /// Moves bytes both ways, running each side's queued tasks, until neither has more to say.
    func pump() throws {
        var moved = true
        while moved {
            moved = false
            client.embeddedEventLoop.run()
            server.embeddedEventLoop.run()
            while let bytes = try client.readOutbound(as: ByteBuffer.self) {
                moved = true
                try server.writeInbound(bytes)
            }
            server.embeddedEventLoop.run()
            while let bytes = try server.readOutbound(as: ByteBuffer.self) {
                moved = true
                serverWrites += 1
                try client.writeInbound(bytes)
            }
        }
    }
}

/// What the client saw of one call.
final class RecordedCall {
    var call: ClientCall?
    var messages: [[UInt8]] = []
    var status: RPCStatus?
}
