import ErdtreeWAL
import Foundation
import Logging
import NIOCore
import NIOPosix

@testable import ErdtreeNode

/// A `KVEngine` on a WAL in a fresh temporary directory, for engine tests that need no server.
struct TestEngine {
    let engine: KVEngine
    let directory: URL
    var walDirectory: String { directory.appendingPathComponent("wal").path }

    /// - Parameter directory: an existing test engine's directory, to reopen its WAL; nil for a
    ///   fresh temporary one.
    static func open(
        storage: NodeConfig.Storage = NodeConfig.Storage(),
        syncInterval: NodeConfig.SyncPolicy = .interval(.seconds(1)),
        maxFileSizeBytes: Int64 = 64 << 20, directory: URL? = nil
    ) throws -> TestEngine {
        let directory =
            directory
            ?? FileManager.default.temporaryDirectory
            .appendingPathComponent("erdtree-engine-test-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let wal = NodeConfig.WAL(
            directory: directory.appendingPathComponent("wal").path, syncInterval: syncInterval,
            maxFileSizeBytes: maxFileSizeBytes, retentionBytes: 0)
        let engine = try KVEngine(storage: storage, wal: wal, logger: TestNode.quietLogger)
        return TestEngine(engine: engine, directory: directory)
    }

    /// Closes the engine and, unless `keepingData`, removes its directory.
    func close(keepingData: Bool = false) {
        engine.close()
        if !keepingData { try? FileManager.default.removeItem(at: directory) }
    }

    static var eventLoop: any EventLoop { MultiThreadedEventLoopGroup.singleton.next() }

    /// Writes through `KVEngine.write` as the KVStore service does, from an event loop, and waits
    /// for the outcome.
    func write(_ write: KVEngine.Write) async -> Result<KVEngine.Written, NodeError> {
        let eventLoop = Self.eventLoop
        return await withCheckedContinuation { continuation in
            eventLoop.execute {
                engine.write(write, on: eventLoop) { continuation.resume(returning: $0) }
            }
        }
    }

    /// Sets `key` and returns the write's LSN.
    func set(_ key: String, _ value: [UInt8], expiresAtMs: Int64 = 0) async throws -> UInt64 {
        try await write(.set(key: Array(key.utf8), value: value, expiresAtMs: expiresAtMs)).get().lsn
    }
}
