import ErdtreeProto
import ErdtreeRPC
import Foundation
import NIOCore
import Testing

@testable import ErdtreeNode

/// A real master and a real slave on loopback ports, each on its own WAL in a temporary
/// directory, reached through KVClient: what docs/replication.md promises a client.
@Suite struct ReplicationTests {
    @Test func aWriteOnTheMasterIsReadOnTheSlaveWithMinLSN() async throws {
        try await withMasterAndSlave { master, slave in
            let lsn = try await master.set("greeting", value: Array("hello".utf8))
            let read = try #require(try await slave.get("greeting", minLSN: lsn), "the slave has no greeting")
            #expect(read.bytes == Array("hello".utf8))
            #expect(read.lsn == lsn, "the slave keeps the master's LSN")
            let deleted = try await master.delete("greeting")
            #expect(try await slave.get("greeting", minLSN: deleted.lsn) == nil)
        }
    }

    @Test func aSlaveRestartedOnItsLogCatchesUpWithWhatItMissed() async throws {
        let master = try await TestNode.start()
        let writer = try await master.connect()
        var slave = try await TestNode.start(following: master)
        do {
            let before = try await writer.set("before", value: [1])
            let reader = try await slave.connect()
            #expect(try await reader.get("before", minLSN: before)?.bytes == [1])
            await reader.rpc.close()
            await slave.stop(keepingData: true)

            var last: UInt64 = 0
            for index in 0..<50 { last = try await writer.set("while-down-\(index)", value: [UInt8(index)]) }
            slave = try await TestNode.start(dataDirectory: slave.dataDirectory, following: master)
            let again = try await slave.connect()
            #expect(try await again.get("while-down-49", minLSN: last)?.bytes == [49])
            #expect(try await again.get("before")?.bytes == [1], "what it had before the restart is still there")
            #expect(slave.node.engine.lastLSN == master.node.engine.lastLSN)
            #expect(slave.node.engine.replicationID == master.node.engine.replicationID)
            await again.rpc.close()
        } catch {
            await stop(writer, slave, master)
            throw error
        }
        await stop(writer, slave, master)
    }

    @Test func aSlaveRefusesWritesNamingItsMaster() async throws {
        try await withMasterAndSlave { master, slave, masterNode in
            for (method, write) in [
                ("Set", { _ = try await slave.set("k", value: [1]) }),
                ("Delete", { _ = try await slave.delete("k") }),
            ] as [(String, () async throws -> Void)] {
                let status = await statusOf(write)
                #expect(status?.code == .failedPrecondition, "\(method)")
                #expect(
                    status?.message
                        == "this node is a slave and takes no writes; send \(method) to the master at \(masterNode.address)"
                )
            }
            #expect(masterNode.node.engine.lastLSN == 0)
        }
    }

    @Test func listSlavesOnTheMasterShowsTheSlaveAndWhatItApplied() async throws {
        try await withMasterAndSlave { master, slave, _ in
            let lsn = try await master.set("k", value: [1])
            _ = try await slave.get("k", minLSN: lsn)
            // Acks trail the apply by up to a millisecond (coalesced) or a heartbeat.
            var listed = try await listSlaves(master)
            let deadline = ContinuousClock.now + patience(.seconds(5))
            while listed.first?.appliedLSN ?? 0 < lsn, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
                listed = try await listSlaves(master)
            }
            #expect(listed.count == 1)
            #expect(listed.first?.connected == true)
            #expect(listed.first?.appliedLSN == lsn)
            // A slave has no slaves to list.
            #expect(try await listSlaves(slave).isEmpty)
        }
    }

    @Test func aWriteUnderMinAcksIsAnsweredOnceTheSlaveAckedIt() async throws {
        let replication = NodeConfig.Replication(minAcks: 1, ackTimeout: .seconds(5))
        try await withMasterAndSlave(replication: replication) { master, slave in
            let lsn = try await master.set("k", value: [1])
            // Acked as durable by the slave before the master answered: the slave has it.
            #expect(try await slave.get("k")?.lsn == lsn)
        }
    }

    @Test func aWriteUnderMinAcksWithNoSlaveTimesOutSayingHowManyAcked() async throws {
        let replication = NodeConfig.Replication(minAcks: 1, ackTimeout: .milliseconds(200))
        let master = try await TestNode.start(replication: replication)
        let client = try await master.connect()
        let status = await statusOf { _ = try await client.set("k", value: [1]) }
        #expect(status?.code == .unavailable)
        #expect(
            status?.message
                == "the write is logged and applied on the master at LSN 1, but only 0 of the 1 slave acks "
                + "replication.min_acks asks for arrived within replication.ack_timeout (0.2 seconds)")
        // Nothing to ack: a delete of a missing key is answered at once.
        #expect(try await client.delete("ghost") == (false, 0))
        await client.rpc.close()
        await master.stop()
    }
}

// MARK: Helpers

/// Starts a master and a slave following it, and a client of each; runs `body`; stops them all,
/// also when `body` throws.
private func withMasterAndSlave(
    replication: NodeConfig.Replication = NodeConfig.Replication(),
    _ body: (_ master: KVClient, _ slave: KVClient, _ masterNode: TestNode) async throws -> Void
) async throws {
    let master = try await TestNode.start(replication: replication)
    let slave = try await TestNode.start(following: master)
    let masterClient = try await master.connect()
    let slaveClient = try await slave.connect()
    do {
        try await body(masterClient, slaveClient, master)
    } catch {
        await slaveClient.rpc.close()
        await stop(masterClient, slave, master)
        throw error
    }
    await slaveClient.rpc.close()
    await stop(masterClient, slave, master)
}

private func withMasterAndSlave(
    replication: NodeConfig.Replication = NodeConfig.Replication(),
    _ body: (_ master: KVClient, _ slave: KVClient) async throws -> Void
) async throws {
    try await withMasterAndSlave(replication: replication) { master, slave, _ in try await body(master, slave) }
}

/// Closes the master's client, then stops the slave and the master.
private func stop(_ client: KVClient, _ slave: TestNode, _ master: TestNode) async {
    await client.rpc.close()
    await slave.stop()
    await master.stop()
}

/// One `SlaveInfo` of `Admin/ListSlaves`, as far as these tests look.
private struct ListedSlave {
    var slaveID: String
    var appliedLSN: UInt64
    var connected: Bool
}

/// `Admin/ListSlaves`, decoded with the generated C code (KVClient has no call for it).
private func listSlaves(_ client: KVClient) async throws -> [ListedSlave] {
    let raw = try await client.rpc.unary(
        path: "/erdtree.v1.Admin/ListSlaves", request: ByteBuffer(), timeout: .seconds(5))
    let bytes = Array(raw.readableBytesView)
    let decoded = try #require(erdtree__v1__list_slaves_response__unpack(nil, bytes.count, bytes))
    defer { erdtree__v1__list_slaves_response__free_unpacked(decoded, nil) }
    return (0..<decoded.pointee.n_slaves).compactMap { index in
        decoded.pointee.slaves?[index].map { info in
            ListedSlave(
                slaveID: String(cString: info.pointee.slave_id), appliedLSN: info.pointee.applied_lsn,
                connected: info.pointee.state == ERDTREE__V1__SLAVE_STATE__SLAVE_STATE_CONNECTED)
        }
    }
}
