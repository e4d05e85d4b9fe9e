import NIOCore
import NIOPosix
import Testing

@testable import ErdtreeRPC

/// A TLS dial that never gets a connection fails like a cleartext one: a slave redials a master
/// that is not up yet this way, and the handshake's promise must not be left behind (NIO traps
/// on a leaked promise, which took a slave down in about one dial in five).
@Suite struct RPCClientTLSConnectTests {
    @Test func aRefusedTLSDialThrowsAndTheNextOneToo() async throws {
        let port = try await unusedLoopbackPort()
        for _ in 0..<20 {
            await #expect(throws: (any Error).self) {
                _ = try await RPCClient.connect(
                    host: "127.0.0.1", port: port, group: TestServer.group, tls: ClientTLS())
            }
        }
    }
}
