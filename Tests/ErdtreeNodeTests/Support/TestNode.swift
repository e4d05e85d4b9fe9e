import ErdtreeRPC
import ErdtreeSync
import Foundation
import Logging
import NIOCore
import NIOPosix

@testable import ErdtreeNode

/// A node on a loopback port chosen by the OS, with its data in a fresh temporary directory, and
/// clients connected to it: a master, or a slave following one (`following:`). The one place
/// tests start a node.
struct TestNode {
    let node: ServerNode
    let port: Int
    let dataDirectory: URL

    static var group: any EventLoopGroup { MultiThreadedEventLoopGroup.singleton }
    static let quietLogger = Logger(label: "erdtree.node.test") { _ in SwiftLogNoOpLogHandler() }

    /// How often a test slave's master sends heartbeats when idle: short, so a slave that
    /// dialled in reports its first sync (and acks) within a test's patience.
    static let slaveSyncInterval = Duration.milliseconds(50)

    /// The address clients and slaves reach this node at.
    var address: String { "127.0.0.1:\(port)" }

    /// - Parameters:
    ///   - dataDirectory: an existing node's directory, to restart on its WAL; nil for a fresh
    ///     temporary one.
    ///   - master: the master to follow, which makes this node a slave; nil for a master.
    static func start(
        limits: NodeConfig.Limits = NodeConfig.Limits(), storage: NodeConfig.Storage = NodeConfig.Storage(),
        replication: NodeConfig.Replication = NodeConfig.Replication(), dataDirectory: URL? = nil,
        following master: TestNode? = nil
    ) async throws -> TestNode {
        let directory =
            dataDirectory
            ?? FileManager.default.temporaryDirectory
            .appendingPathComponent("erdtree-test-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let role: Role = master == nil ? .master : .slave
        var config = NodeConfig.defaults(for: role)
        config.server = NodeConfig.Server(address: "127.0.0.1", port: 0)
        // Limits on a client's silence bound hangs here, and no test asserts them: stretched
        // under a sanitizer, where the loops every test shares can stall for seconds.
        config.server.handshakeTimeout = patience(config.server.handshakeTimeout)
        config.server.idleTimeout = patience(config.server.idleTimeout)
        config.wal.directory = directory.appendingPathComponent("wal").path
        config.limits = limits
        config.storage = storage
        config.replication = replication
        if let master {
            config.master = NodeConfig.Master(address: master.address, syncInterval: slaveSyncInterval)
        }
        let node = try ServerNode(config: config, role: role, group: group, logger: quietLogger)
        let address = try await node.start()
        guard let port = address.port else {
            await node.stop(gracePeriod: .seconds(1))
            throw TestNodeError("bound address \(address) has no port")
        }
        if master != nil {
            do {
                try await waitUntilServing(node)
            } catch {
                await node.stop(gracePeriod: .seconds(1))
                throw error
            }
        }
        return TestNode(node: node, port: port, dataDirectory: directory)
    }

    /// A slave serves once its first sync with the master is done, as an operator's readiness
    /// probe would see it. Tests wait for that here, so that their own limits (a `min_lsn` wait
    /// of 5 s on the server) bound only what they test, not the dial and the catch-up, which
    /// take seconds on a busy machine under a sanitizer.
    private static func waitUntilServing(_ node: ServerNode) async throws {
        let limit = patience(.seconds(10))
        let deadline = ContinuousClock.now + limit
        while node.health.status != .serving {
            guard ContinuousClock.now < deadline else {
                throw TestNodeError("the slave did not finish its first sync with its master within \(limit)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    func connect() async throws -> KVClient {
        let rpc = try await RPCClient.connect(
            host: "127.0.0.1", port: port, group: Self.group, connectTimeout: patience(.seconds(5)))
        return KVClient(rpc: rpc, timeout: patience(.seconds(5)))
    }

    /// Stops the node and, unless `keepingData`, removes its directory.
    func stop(keepingData: Bool = false) async {
        await node.stop(gracePeriod: .seconds(1))
        if !keepingData { try? FileManager.default.removeItem(at: dataDirectory) }
    }
}

struct TestNodeError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Starts a node and one client, runs `body`, then closes both, also when `body` throws.
func withTestNode(
    limits: NodeConfig.Limits = NodeConfig.Limits(), storage: NodeConfig.Storage = NodeConfig.Storage(),
    _ body: (TestNode, KVClient) async throws -> Void
) async throws {
    let node = try await TestNode.start(limits: limits, storage: storage)
    let client: KVClient
    do {
        client = try await node.connect()
    } catch {
        await node.stop()
        throw error
    }
    do {
        try await body(node, client)
    } catch {
        await client.rpc.close()
        await node.stop()
        throw error
    }
    await client.rpc.close()
    await node.stop()
}

/// The status a call failed with, or nil when it succeeded.
func statusOf(_ body: () async throws -> Void) async -> RPCStatus? {
    do {
        try await body()
        return nil
    } catch let status as RPCStatus {
        return status
    } catch {
        return RPCStatus(.unknown, "not an RPCStatus: \(error)")
    }
}

/// A lock-protected value that escaping `@Sendable` callbacks can share.
final class LockedBox<Value: Sendable>: Sendable {
    private let state: Locked<Value>

    init(_ value: Value) { state = Locked(value) }

    var value: Value { state.withLock { $0 } }

    func mutate(_ body: (inout Value) -> Void) { state.withLock { body(&$0) } }
}

/// Hand-made protobuf encodings, for requests our own encoder would never produce.
enum RawProto {
    /// A length-delimited field (wire type 2) with a one-byte length.
    static func bytesField(_ number: UInt8, _ payload: [UInt8]) -> [UInt8] {
        precondition(payload.count < 128, "one-byte varint lengths only")
        return [number << 3 | 2, UInt8(payload.count)] + payload
    }
}
