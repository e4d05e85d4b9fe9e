import Foundation
import Logging
import NIOPosix
import Testing

@testable import ErdtreeNode

@Suite struct SlaveIdentityTests {
    @Test func aSlaveIsNamedByItsAddressOrByHostnameWhenItListensEverywhere() {
        let host = "slave7"
        #expect(ServerNode.slaveID(.init(address: "10.0.0.5", port: 8081), hostname: host) == "10.0.0.5:8081")
        #expect(ServerNode.slaveID(.init(address: "0.0.0.0", port: 8081), hostname: host) == "slave7:8081")
        #expect(ServerNode.slaveID(.init(address: "::", port: 8082), hostname: host) == "slave7:8082")
        // No hostname to be had: the address, as before.
        #expect(ServerNode.slaveID(.init(address: "0.0.0.0", port: 8081), hostname: "") == "0.0.0.0:8081")
        #expect(!ServerNode.currentHostname().isEmpty)
    }
}

/// A slave must not report SERVING between binding its port and its first sync: found by the
/// chaos test (seed 1592948438), where a health check in that window saw SERVING from a wiped
/// slave that had not dialled its master yet, and reads there would have come from an empty store.
@Suite struct HealthBeforeStartTests {
    private func node(_ role: Role) throws -> (ServerNode, URL) {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("erdtree-test-\(UUID().uuidString)", isDirectory: true)
        var config = NodeConfig.defaults(for: role)
        config.server = NodeConfig.Server(address: "127.0.0.1", port: 0)
        config.wal.directory = directory.appendingPathComponent("wal").path
        if role == .slave {
            // Nothing listens there: the slave can never complete a first sync.
            config.master = NodeConfig.Master(address: "127.0.0.1:1", syncInterval: .milliseconds(50))
        }
        let node = try ServerNode(
            config: config, role: role, group: MultiThreadedEventLoopGroup.singleton,
            logger: Logger(label: "erdtree.node.test") { _ in SwiftLogNoOpLogHandler() })
        return (node, directory)
    }

    @Test func aSlaveSaysNotServingFromConstructionUntilItsFirstSync() async throws {
        let (slave, directory) = try node(.slave)
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(slave.health.status == .notServing)
        _ = try await slave.start()
        #expect(slave.health.status == .notServing)
        await slave.stop(gracePeriod: .seconds(1))
    }

    @Test func aMasterServesAsSoonAsItsPortIsBound() async throws {
        let (master, directory) = try node(.master)
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(master.health.status == .serving)
        await master.stop(gracePeriod: .seconds(1))
    }
}
