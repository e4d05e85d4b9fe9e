import ErdtreeSync
import NIOCore
import NIOPosix
import Testing

@testable import ErdtreeRPC

/// The handler's life on real sockets: what it holds after its connection ends.
@Suite struct NGHTTP2ChannelHandlerTests {
    /// A slave redials a master that is down, and the etcd client its dead endpoints, as often as
    /// every second: each refused connect must free its handler and nghttp2 session.
    @Test func aHandlerWhoseConnectWasRefusedIsFreed() async throws {
        let port = try await unusedLoopbackPort()
        let freed = WeakBox<GRPCClientConnectionHandler>()
        await #expect(throws: (any Error).self, "connected to \(port), where nothing listens") {
            _ = try await ClientBootstrap(group: TestServer.group).connect(host: "127.0.0.1", port: port) { channel in
                // As RPCClient.connect sets it up.
                channel.eventLoop.makeCompletedFuture {
                    let handler = try GRPCClientConnectionHandler(authority: "127.0.0.1:\(port)")
                    freed.value = handler
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
        }
        #expect(await eventually { freed.value == nil }, "the handler of the refused connection is still alive")
    }
}

/// A weak reference that a channel initializer (a `@Sendable` closure) may set.
private final class WeakBox<Object: AnyObject>: @unchecked Sendable {
    private let lock = Lock()
    private weak var object: Object?

    var value: Object? {
        get { lock.withLock { object } }
        set { lock.withLock { object = newValue } }
    }
}
