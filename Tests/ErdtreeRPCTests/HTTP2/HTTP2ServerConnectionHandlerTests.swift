import NIOCore
import NIOEmbedded
import Testing

@testable import ErdtreeRPC

/// The HTTP/2 connection handler in an `EmbeddedChannel`, talking to the client handler over
/// real nghttp2 sessions: what reaches the wire for each kind of call.
@Suite struct HTTP2ServerConnectionHandlerTests {
    /// Routes whose handlers record what happened to them. Everything runs on the test's
    /// thread (embedded event loops), hence `@unchecked`.
    private final class Probe: @unchecked Sendable {
        var cancelled = 0
        var pending: [ServerCall] = []
    }

    private func router(_ probe: Probe) -> RPCRouter {
        var router = MachineRoutes.router
        // Weakly: a call keeps its route, and so this closure; the probe keeps the call.
        router.register(
            "/t.S/Silent",
            .unary { [weak probe] _, call in
                guard let probe else { return }
                call.onCancel { probe.cancelled += 1 }
                probe.pending.append(call)
            })
        return router
    }

    @Test func aUnaryCallIsAnsweredWithItsMessageAndOKTrailers() throws {
        let pair = try EmbeddedHTTP2Pair(router: MachineRoutes.router)
        let recorded = try pair.unary(MachineRoutes.unary, [1, 2, 3])
        #expect(recorded.messages == [[1, 2, 3]] && recorded.status == .ok)
    }

    @Test func anUnknownMethodIsUnimplementedWithoutAHandler() throws {
        let pair = try EmbeddedHTTP2Pair(router: MachineRoutes.router)
        let recorded = pair.call("/t.S/Nope")
        try pair.pump()
        #expect(recorded.status == RPCStatus(.unimplemented, "unknown method /t.S/Nope"))
        #expect(recorded.messages.isEmpty)
    }

    @Test func callsAnsweredInOneReadLeaveInOneWrite() throws {
        let pair = try EmbeddedHTTP2Pair(router: MachineRoutes.router)
        let calls = (0..<8).map { index in
            let recorded = pair.call(MachineRoutes.unary)
            recorded.call?.send(ByteBuffer(bytes: [UInt8(index)]))
            recorded.call?.closeSend()
            return recorded
        }
        pair.client.embeddedEventLoop.run()
        // Everything the client queued goes to the server as one read.
        var requests = ByteBuffer()
        while var bytes = try pair.client.readOutbound(as: ByteBuffer.self) { requests.writeBuffer(&bytes) }
        let before = pair.serverWrites
        try pair.server.writeInbound(requests)
        try pair.pump()
        #expect(pair.serverWrites - before == 1, "eight answers, one flush")
        #expect(calls.map(\.messages) == (0..<8).map { [[UInt8($0)]] })
        #expect(calls.allSatisfy { $0.status == .ok })
    }

    @Test func aClientResetCancelsTheHandler() throws {
        let probe = Probe()
        let pair = try EmbeddedHTTP2Pair(router: router(probe))
        let recorded = try pair.unary("/t.S/Silent", [0])
        #expect(probe.pending.count == 1 && probe.cancelled == 0)
        recorded.call?.cancel()
        try pair.pump()
        #expect(probe.cancelled == 1)
        #expect(recorded.status?.code == .cancelled)
        // An answer after the reset goes nowhere and breaks nothing.
        probe.pending.first?.respond(ByteBuffer(bytes: [1]))
        try pair.pump()
    }

    @Test func theDeadlineEndsACallThatDoesNotAnswer() throws {
        let probe = Probe()
        let pair = try EmbeddedHTTP2Pair(router: router(probe))
        let recorded = try pair.unary("/t.S/Silent", [0], timeoutNanos: 50_000_000)
        pair.server.embeddedEventLoop.advanceTime(to: .now() + .milliseconds(100))
        try pair.pump()
        #expect(recorded.status?.code == .deadlineExceeded)
        #expect(probe.cancelled == 1)
    }

    @Test func drainingSendsGoAwayAndClosesOnceTheLastCallIsAnswered() throws {
        let probe = Probe()
        let pair = try EmbeddedHTTP2Pair(router: router(probe))
        let recorded = try pair.unary("/t.S/Silent", [0])
        pair.server.pipeline.fireUserInboundEventTriggered(RPCServer.Drain())
        try pair.pump()
        #expect(pair.server.isActive, "the call in flight may finish")
        let late = pair.call(MachineRoutes.unary)
        try pair.pump()
        #expect(late.status?.code == .unavailable || late.status?.code == .cancelled, "no new stream after GOAWAY")
        probe.pending.first?.respond(ByteBuffer(bytes: [7]))
        try pair.pump()
        #expect(recorded.messages == [[7]] && recorded.status == .ok)
        #expect(!pair.server.isActive)
    }

    @Test func aBidirectionalCallStreamsBothWays() throws {
        var router = MachineRoutes.router
        router.register(
            "/t.S/Echo",
            .bidirectional { call in
                call.onMessage { call.send($0) }
                call.onRequestEnd { call.finish(.ok) }
            })
        let pair = try EmbeddedHTTP2Pair(router: router)
        let recorded = pair.call("/t.S/Echo")
        recorded.call?.send(ByteBuffer(bytes: [1]))
        try pair.pump()
        #expect(recorded.messages == [[1]] && recorded.status == nil)
        recorded.call?.send(ByteBuffer(bytes: [2]))
        recorded.call?.closeSend()
        try pair.pump()
        #expect(recorded.messages == [[1], [2]] && recorded.status == .ok)
    }
}
