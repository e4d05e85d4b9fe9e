import ErdtreeRPC
import NIOCore
import NIOPosix

/// `erdtree.v1.Admin`: what a node reports about itself, and a master's list of slaves.
///
/// `Status` reports the engine's positions and sizes, the compactor's and the sweeper's work, and
/// replication lag. On a master `ListSlaves` lists the connected slaves and the ones `AddSlave`
/// pre-registered; `RemoveSlave` drops one. A slave answers those two FAILED_PRECONDITION, naming
/// its master (slaves need no Admin call to join: they register by dialling in).
public struct AdminService: Sendable {
    public static let version = "0.1.0"

    let engine: KVEngine
    let sweeper: ExpirySweeper
    let compactor: Compactor
    /// The master's side of replication; nil on a slave.
    let replication: ReplicationHub?
    /// The slave's link to its master; nil on a master.
    let replicator: Replicator?
    /// When the node started, for `uptime_ms`.
    var startedAt = ContinuousClock.now

    public func register(in router: inout RPCRouter) {
        let engine = self.engine
        let sweeper = self.sweeper
        let compactor = self.compactor
        let replication = self.replication
        let replicator = self.replicator
        let startedAt = self.startedAt
        router.register(
            "/erdtree.v1.Admin/Status",
            .unary { request, call in
                // Dead bytes take a pass over every key: off the event loop.
                NIOThreadPool.singleton.submit { _ in
                    answer(call) { () throws(RPCStatus) in
                        try decodeStatusRequest(request)
                        let uptime = ContinuousClock.now - startedAt
                        let engineStatistics = engine.statistics()
                        var status = NodeStatus()
                        status.identity.replicationID = engineStatistics.replicationID
                        status.identity.version = Self.version
                        status.identity.uptimeMs =
                            uptime.components.seconds * 1000 + uptime.components.attoseconds / 1_000_000_000_000_000
                        // Applied (visible to reads) trails written while a slave catches up.
                        let applied = engineStatistics.appliedLSN
                        status.positions = NodeStatus.Positions(
                            lastLSN: engineStatistics.lastLSN, appliedLSN: applied,
                            durableLSN: engineStatistics.durableLSN,
                            oldestStreamableLSN: engineStatistics.oldestStreamableLSN)
                        status.store = NodeStatus.Store(
                            keys: UInt64(engineStatistics.keys),
                            residentValues: UInt64(engineStatistics.residentValues),
                            memoryBytes: UInt64(engineStatistics.memoryBytes),
                            expiredReclaimed: sweeper.expiredReclaimed, diskReads: engineStatistics.diskReads)
                        status.log = NodeStatus.Log(
                            segments: UInt32(clamping: engineStatistics.segments),
                            diskBytes: UInt64(max(engineStatistics.diskBytes, 0)),
                            deadBytes: UInt64(compactor.deadBytes()), compactions: compactor.compactions,
                            lastCompactionMs: compactor.lastCompactionMs)
                        if let replicator {
                            status.identity.isMaster = false
                            status.identity.masterAddress = replicator.masterAddress
                            let masterLSN = max(replicator.masterLSN, applied)
                            status.lag.entries = masterLSN - applied
                            // Behind, or cut off from the master (it cannot know what it misses):
                            // the time since it last heard from it.
                            let silent = !replicator.isConnected && replicator.lastContactMs > 0
                            status.lag.ms =
                                status.lag.entries == 0 && !silent
                                ? 0 : max(0, WallClock.nowMs() - replicator.lastContactMs)
                        } else if let replication {
                            let slaves = replication.listing(lastLSN: engineStatistics.lastLSN).filter(\.connected)
                            status.lag.entries = slaves.map(\.lagEntries).max() ?? 0
                            status.lag.ms = slaves.map(\.lagMs).max() ?? 0
                        }
                        return status.encode(allocator: call.allocator)
                    }
                }
            })
        router.register(
            "/erdtree.v1.Admin/ListSlaves",
            .unary { request, call in
                answer(call) { () throws(RPCStatus) in
                    try decodeListSlavesRequest(request)
                    let slaves = replication?.listing(lastLSN: engine.lastLSN) ?? []
                    return ListSlavesResponse(slaves: slaves).encode(allocator: call.allocator)
                }
            })
        router.register(
            "/erdtree.v1.Admin/AddSlave",
            .unary { request, call in
                answer(call) { () throws(RPCStatus) in
                    let hub = try Self.master(replication, replicator, for: "AddSlave")
                    let add = try AddSlave(decoding: request)
                    guard !add.slaveID.isEmpty else { throw RequestError.emptyField("AddSlaveRequest.slave_id").status }
                    do throws(ConfigError) {
                        _ = try SocketAddressSpec(parsing: add.address)
                    } catch {
                        throw RequestError.badAddress(field: "AddSlaveRequest.address", error).status
                    }
                    hub.add(slaveID: add.slaveID, address: add.address)
                    let listed = hub.listing(lastLSN: engine.lastLSN).first { $0.slaveID == add.slaveID }
                    return AddSlave.response(
                        listed
                            ?? SlaveListing(
                                slaveID: add.slaveID, address: add.address, appliedLSN: 0, durableLSN: 0,
                                lagEntries: 0, lagMs: 0, connectedSinceMs: 0, connected: false),
                        allocator: call.allocator)
                }
            })
        router.register(
            "/erdtree.v1.Admin/RemoveSlave",
            .unary { request, call in
                answer(call) { () throws(RPCStatus) in
                    let hub = try Self.master(replication, replicator, for: "RemoveSlave")
                    let remove = try RemoveSlave(decoding: request)
                    return RemoveSlave.response(removed: hub.remove(slaveID: remove.slaveID), allocator: call.allocator)
                }
            })
    }

    /// The master's replication hub, or FAILED_PRECONDITION on a slave.
    private static func master(_ hub: ReplicationHub?, _ replicator: Replicator?, for method: String) throws(RPCStatus)
        -> ReplicationHub
    {
        guard let hub else {
            throw NodeError.slavesManagedOnMaster(method: method, masterAddress: replicator?.masterAddress).status
        }
        return hub
    }
}
