import Dispatch
import FuzzSupport
import Glibc
import Logging
import NIOCore
import NIOEmbedded

@testable import ErdtreeNode
@testable import ErdtreeRPC

// Arbitrary bytes from a client, in chunks, to one server connection: the pipeline `RPCServer`
// installs on an accepted socket (sniffer, HTTP/1.1 with h2c upgrade, HTTP/2 through nghttp2),
// over the router and services of a real master node whose log is in a fresh directory on every
// input, so one input cannot change what the next sees. The abuse limits are set low enough for
// short inputs to reach them.
//
// The channel is NIOAsyncTestingChannel, the thread-safe EmbeddedChannel: a node answers some
// calls from other threads (the WAL writer, NIOThreadPool reads, metrics scrapes), which an
// EmbeddedEventLoop forbids. Its clock is virtual, so timers fire only when the input says.
//
// Input: `FuzzInput.takeChunks()` (the first byte's low 3 bits, then chunk sizes, then the bytes).
// The first byte's higher bits are flags: 0x08 sends the last chunk 1100 more times (past the
// empty DATA frame limit), 0x10 moves the clock past the handshake and idle deadlines at the end.

let scratch = ScratchDirectory(prefix: "erdtree-fuzz-connection")
let quiet = Logger(label: "fuzz.connection") { _ in SwiftLogNoOpLogHandler() }

let config: NodeConfig = {
    var config = NodeConfig.defaults(for: .master)
    config.wal.directory = scratch.path + "/wal"
    config.server.maxConcurrentStreams = 4
    config.server.maxHeaderListBytes = 2048
    config.server.maxBufferedBytesPerConnection = 8192
    config.server.maxBufferedBytes = 16384
    config.limits.maxMessageBytes = 4096
    return config
}()

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: data == nil ? 0 : size))
    let done = DispatchSemaphore(value: 0)
    Task.detached {
        await serve(bytes)
        done.signal()
    }
    done.wait()
    return 0
}

func serve(_ bytes: [UInt8]) async {
    var input = FuzzInput(bytes)
    let flags = (input.bytes.first ?? 0) >> 3
    var chunks = input.takeChunks()
    if flags & 1 != 0, let last = chunks.last {
        chunks += repeatElement(last, count: 1100)
    }
    _ = scratch.fresh("wal")
    // A loop of its own: no timer or task of one input's node is left for the next to run.
    let loop = NIOAsyncTestingEventLoop()
    let node: ServerNode
    do {
        node = try ServerNode(config: config, role: .master, group: loop, logger: quiet)
    } catch {
        fatalError("a master on an empty directory does not start: \(error)")
    }
    let channel = NIOAsyncTestingChannel(loop: loop)
    do {
        try await loop.executeInContext { try node.server.configureConnection(channel) }
        try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 50051))
    } catch {
        fatalError("the connection's pipeline cannot be set up: \(error)")
    }
    for chunk in chunks {
        guard channel.isActive else { break }
        // A protocol error closes the channel and is rethrown here; what matters is what follows.
        _ = try? await channel.writeInbound(ByteBuffer(bytes: chunk))
        await drain(channel)
    }
    if flags & 2 != 0 {
        await loop.advanceTime(by: .seconds(61))
        await drain(channel)
    }
    _ = try? await channel.close()
    await drain(channel)
    await node.stop(gracePeriod: .zero)
    await loop.run()
    await loop.shutdownGracefully()
}

/// Runs what the loop has queued and drops what the server wrote.
func drain(_ channel: NIOAsyncTestingChannel) async {
    await channel.testingEventLoop.run()
    while true {
        do {
            guard try await channel.readOutbound(as: ByteBuffer.self) != nil else { return }
        } catch {
            // Something other than bytes (the item is consumed all the same).
            continue
        }
    }
}

/// LeakSanitizer's suppressions for this harness. One false report: the first `NIOThreadPool.singleton`
/// use (compaction and `GetUpdates` submit work to it) starts a pool that NIO builds to live as long as
/// the process (`_makePerpetualStartedPool`, "cannot be shut down and must not be deinit'ed"), held
/// by a global `let` and an extra `Unmanaged.passRetained`; its queue (`Deque` storage made in
/// `_start`) is owned by that pool through its state enum, whose payload pointer Swift stores with
/// tag bits LSan does not read as a pointer. Nothing per input is suppressed: the pattern names only
/// that one allocation site.
@_cdecl("__lsan_default_suppressions")
func leakSuppressions() -> UnsafePointer<CChar> {
    UnsafeRawPointer(StaticString("leak:NIOThreadPoolC6_start\n").utf8Start).assumingMemoryBound(to: CChar.self)
}

runFuzzer(fuzzOne)
