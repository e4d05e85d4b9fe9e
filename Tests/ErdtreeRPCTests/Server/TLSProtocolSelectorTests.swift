import NIOCore
import NIOEmbedded
import NIOTLS
import Testing

@testable import ErdtreeRPC

/// What ALPN's answer installs behind the TLS handler, and what a connection that never
/// finishes its handshake gets.
@Suite struct TLSProtocolSelectorTests {
    /// A channel with a selector that records what it was asked to install.
    private func channel(statistics: RPCServer.Statistics = RPCServer.Statistics()) throws -> (EmbeddedChannel, Box) {
        let installed = Box()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(
            TLSProtocolSelector(statistics: statistics) { detected, _ in installed.value = detected })
        return (channel, installed)
    }

    final class Box {
        var value: ProtocolSniffer.Detected?
    }

    @Test(arguments: [("h2", ProtocolSniffer.Detected.http2), ("http/1.1", .http1)])
    func negotiatedProtocolIsInstalledAndTheSelectorStepsAside(alpn: String, want: ProtocolSniffer.Detected) throws {
        let (channel, installed) = try channel()
        defer { channel.tearDown() }
        channel.pipeline.fireUserInboundEventTriggered(TLSUserEvent.handshakeCompleted(negotiatedProtocol: alpn))
        #expect(installed.value == want)
        #expect(throws: (any Error).self) {
            try channel.pipeline.syncOperations.handler(type: TLSProtocolSelector.self)
        }
        _ = try channel.finish()
    }

    @Test func noALPNLeavesItToTheSniffer() throws {
        let (channel, installed) = try channel()
        defer { channel.tearDown() }
        channel.pipeline.fireUserInboundEventTriggered(TLSUserEvent.handshakeCompleted(negotiatedProtocol: nil))
        #expect(installed.value == nil)
        _ = try channel.pipeline.syncOperations.handler(type: ProtocolSniffer.self)
        // The decrypted bytes decide, as on a cleartext port.
        try channel.writeInbound(ByteBuffer(string: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
        #expect(installed.value == .http2)
        _ = try channel.finish()
    }

    @Test func aHandshakeThatStallsIsClosedOnIdleAndOnDrain() throws {
        for event in [IdleStateHandler.IdleStateEvent.read as Any, RPCServer.Drain() as Any] {
            let (channel, _) = try channel()
            defer { channel.tearDown() }
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            channel.pipeline.fireUserInboundEventTriggered(event)
            #expect(!channel.isActive)
        }
    }

    /// `server.handshake_timeout` bounds the TLS handshake too: a slowloris that never finishes
    /// it is closed and counted as abuse.
    @Test func aHandshakeNotDoneByTheDeadlineIsClosedAndCounted() throws {
        let statistics = RPCServer.Statistics()
        let (channel, _) = try channel(statistics: statistics)
        defer { channel.tearDown() }
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        channel.pipeline.fireUserInboundEventTriggered(RPCServer.HandshakeDeadline())
        #expect(!channel.isActive)
        #expect(statistics.connectionsClosedForAbuse == 1)
    }
}
