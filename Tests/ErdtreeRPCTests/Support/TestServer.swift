import ErdtreeRPC
import ErdtreeSync
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// What the test handlers saw of their calls, for assertions about the server side.
final class HandlerProbe: Sendable {
    private let startedCount = Atomic<Int>(0)
    private let cancelledCount = Atomic<Int>(0)

    /// Handlers of `TestRoutes.silent` and `TestRoutes.slow` that have started.
    var started: Int { startedCount.load(ordering: .acquiring) }
    /// `onCancel` callbacks that have fired.
    var cancelled: Int { cancelledCount.load(ordering: .acquiring) }

    func markStarted() { startedCount.add(1, ordering: .releasing) }
    func markCancelled() { cancelledCount.add(1, ordering: .releasing) }
}

/// The methods of the test server, one per shape of call the transport must carry.
enum TestRoutes {
    /// Unary: answers with the request bytes.
    static let echo = "/erdtree.test.Echo/Unary"
    /// Server streaming: the request is a big-endian UInt32 N; answers N messages holding
    /// the UInt32s 0..<N, then OK.
    static let count = "/erdtree.test.Echo/Count"
    /// Bidirectional: echoes each message as it arrives; OK when the client half-closes.
    static let bidi = "/erdtree.test.Echo/Bidi"
    /// Unary that never answers; its `onCancel` is counted by the probe.
    static let silent = "/erdtree.test.Echo/Silent"
    /// Unary answered from another thread: the request is a big-endian UInt32 delay in
    /// milliseconds, echoed back after that delay.
    static let slow = "/erdtree.test.Echo/Slow"
    /// Bidirectional that ends the call with ABORTED on the first message, without waiting
    /// for the client to half-close.
    static let finishEarly = "/erdtree.test.Echo/FinishEarly"

    static func router(probe: HandlerProbe) -> RPCRouter {
        var router = RPCRouter()
        router.register(echo, .unary { request, call in call.respond(request) })
        router.register(
            count,
            .serverStreaming { request, call in
                guard let n = request.getInteger(at: request.readerIndex, as: UInt32.self) else {
                    call.finish(RPCStatus(.invalidArgument, "Count takes a UInt32"))
                    return
                }
                for i in 0..<n {
                    var message = call.allocator.buffer(capacity: 4)
                    message.writeInteger(i)
                    call.send(message)
                }
                call.finish(.ok)
            })
        router.register(
            bidi,
            .bidirectional { call in
                call.onMessage { message in call.send(message) }
                call.onRequestEnd { call.finish(.ok) }
            })
        router.register(
            silent,
            .unary { _, call in
                call.onCancel { probe.markCancelled() }
                probe.markStarted()
            })
        router.register(
            slow,
            .unary { request, call in
                call.onCancel { probe.markCancelled() }
                probe.markStarted()
                let delayMs = request.getInteger(at: request.readerIndex, as: UInt32.self) ?? 0
                Task.detached {
                    try? await Task.sleep(for: .milliseconds(Int(delayMs)))
                    call.respond(request)
                }
            })
        router.register(
            finishEarly,
            .bidirectional { call in
                call.onMessage { _ in call.finish(RPCStatus(.aborted, "one message is enough")) }
            })
        return router
    }
}

/// An `RPCServer` with the test routes on a loopback port chosen by the OS.
struct TestServer {
    let server: RPCServer
    let port: Int
    let probe: HandlerProbe

    static var group: any EventLoopGroup { MultiThreadedEventLoopGroup.singleton }
    static let quietLogger = Logger(label: "erdtree.rpc.test") { _ in SwiftLogNoOpLogHandler() }

    static func start(limits: RPCServer.Limits = RPCServer.Limits()) async throws -> TestServer {
        // Limits on a client's silence bound hangs here, and no test asserts them: stretched
        // under a sanitizer, where the loops every test shares can stall for seconds.
        var limits = limits
        limits.handshakeTimeout = patience(limits.handshakeTimeout)
        limits.idleTimeout = patience(limits.idleTimeout)
        let probe = HandlerProbe()
        let server = RPCServer(
            router: TestRoutes.router(probe: probe), limits: limits, group: group, logger: quietLogger)
        let address = try await server.start(host: "127.0.0.1", port: 0)
        guard let port = address.port else { throw TestSetupError("bound address \(address) has no port") }
        return TestServer(server: server, port: port, probe: probe)
    }

    func connect(maxMessageBytes: Int = 4 << 20) async throws -> RPCClient {
        try await RPCClient.connect(
            host: "127.0.0.1", port: port, group: Self.group, connectTimeout: patience(.seconds(5)),
            maxMessageBytes: maxMessageBytes)
    }

    func stop() async {
        await server.shutdownGracefully(gracePeriod: .seconds(1))
    }
}

/// A loopback port nothing listens on: the OS handed it out for a socket just closed again.
func unusedLoopbackPort() async throws -> Int {
    let probe = try await ServerBootstrap(group: TestServer.group).bind(host: "127.0.0.1", port: 0).get()
    let port = probe.localAddress?.port
    try await probe.close()
    guard let port else { throw TestSetupError("a bound socket has no port") }
    return port
}

struct TestSetupError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The events of one call as an async sequence, for tests that talk back and forth.
/// Owned by the one test task that reads it.
final class StreamingCall {
    enum Event: Sendable {
        case message(ByteBuffer)
        case finished(RPCStatus)
    }

    let call: ClientCall
    private var iterator: AsyncStream<Event>.Iterator

    init(client: RPCClient, path: String, timeout: Duration? = nil) {
        let (events, continuation) = AsyncStream<Event>.makeStream()
        iterator = events.makeAsyncIterator()
        call = client.makeCall(
            path: path, timeout: timeout,
            onMessage: { continuation.yield(.message($0)) },
            onFinish: {
                continuation.yield(.finished($0))
                continuation.finish()
            })
    }

    /// The next event; nil once the call is over.
    func next() async -> Event? {
        await iterator.next()
    }

    /// Everything that happens up to the end of the call: the messages, then the status.
    func rest() async -> (messages: [ByteBuffer], status: RPCStatus?) {
        var messages: [ByteBuffer] = []
        while let event = await next() {
            switch event {
            case .message(let message): messages.append(message)
            case .finished(let status): return (messages, status)
            }
        }
        return (messages, nil)
    }
}

/// A lock-protected value that escaping `@Sendable` callbacks can share.
final class LockedBox<Value: Sendable>: Sendable {
    private let state: Locked<Value>

    init(_ value: Value) { state = Locked(value) }

    var value: Value { state.withLock { $0 } }

    func mutate(_ body: (inout Value) -> Void) { state.withLock { body(&$0) } }
}

extension RPCClient {
    /// Runs a call of any shape to its end: sends `requests`, half-closes, and collects
    /// every response message and the final status.
    func collect(
        path: String, requests: [ByteBuffer], timeout: Duration? = nil
    ) async -> (messages: [ByteBuffer], status: RPCStatus) {
        let received = LockedBox<[ByteBuffer]>([])
        let status = await withCheckedContinuation { (continuation: CheckedContinuation<RPCStatus, Never>) in
            let call = makeCall(
                path: path, timeout: timeout,
                onMessage: { message in received.mutate { $0.append(message) } },
                onFinish: { continuation.resume(returning: $0) })
            for request in requests { call.send(request) }
            call.closeSend()
        }
        return (received.value, status)
    }
}

/// Polls `condition` every 10 ms until it holds or `patience(timeout)` passes.
/// - Returns: whether it held in time.
func eventually(timeout: Duration = .seconds(2), _ condition: () -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let end = clock.now + patience(timeout)
    while clock.now < end {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}

extension ByteBuffer {
    /// A buffer holding one big-endian UInt32.
    static func uint32(_ value: UInt32) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(value)
        return buffer
    }
}
