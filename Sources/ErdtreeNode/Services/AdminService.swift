import ErdtreeRPC
import NIOCore
import NIOPosix

/// `erdtree.v1.Admin`: what a node reports about itself.
///
/// On a master `ListSlaves` lists the connected slaves; `AddSlave`/`RemoveSlave` answer
/// UNIMPLEMENTED (slaves register themselves by dialling in).
public struct AdminService: Sendable {
    public static let version = "0.1.0"

    private let kv: KVStoreService
    private let sweeper: ExpirySweeper
    private let compactor: Compactor
    private let replication: ReplicationHub?
    private let replicator: Replicator?
    private let startedAt: ContinuousClock.Instant

    public init(
        kv: KVStoreService, sweeper: ExpirySweeper, compactor: Compactor, replication: ReplicationHub? = nil,
        replicator: Replicator? = nil, startedAt: ContinuousClock.Instant = .now
    ) {
        self.kv = kv
        self.sweeper = sweeper
        self.compactor = compactor
        self.replication = replication
        self.replicator = replicator
        self.startedAt = startedAt
    }

    public func register(in router: inout RPCRouter) {
        let kv = self.kv
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
                        let disk = kv.wal.diskUsage
                        var status = StatusResponse()
                        status.replicationID = kv.wal.replicationID
                        status.lastLSN = kv.currentLSN
                        // Applied (visible to reads) trails written while a slave catches up.
                        let applied = kv.appliedLSN
                        status.appliedLSN = applied
                        status.durableLSN = kv.wal.durableLSN
                        status.keys = UInt64(kv.store.count)
                        status.residentValues = UInt64(kv.store.residentCount)
                        status.memoryBytes = UInt64(kv.store.payloadBytes)
                        status.segments = UInt32(clamping: disk.segments)
                        status.diskBytes = UInt64(max(disk.bytes, 0))
                        status.expiredReclaimed = sweeper.expiredReclaimed
                        status.diskReads = kv.diskReads.load(ordering: .relaxed)
                        status.deadBytes = UInt64(compactor.deadBytes())
                        status.compactions = compactor.compactions
                        status.lastCompactionMs = compactor.lastCompactionMs
                        status.oldestStreamableLSN = kv.wal.oldestStreamableLSN
                        status.version = Self.version
                        if let replicator {
                            status.isMaster = false
                            status.masterAddress = replicator.masterAddress
                            let masterLSN = max(replicator.masterLSN, applied)
                            status.lagEntries = masterLSN - applied
                            // Behind, or cut off from the master (it cannot know what it misses):
                            // the time since it last heard from it.
                            let silent = !replicator.isConnected && replicator.lastContactMs > 0
                            status.lagMs =
                                status.lagEntries == 0 && !silent
                                ? 0 : max(0, WallClock.nowMs() - replicator.lastContactMs)
                        } else if let replication {
                            let slaves = replication.listing(lastLSN: kv.currentLSN).filter(\.connected)
                            status.lagEntries = slaves.map(\.lagEntries).max() ?? 0
                            status.lagMs = slaves.map(\.lagMs).max() ?? 0
                        }
                        status.uptimeMs =
                            uptime.components.seconds * 1000 + uptime.components.attoseconds / 1_000_000_000_000_000
                        return status.encode(allocator: call.allocator)
                    }
                }
            })
        router.register(
            "/erdtree.v1.Admin/ListSlaves",
            .unary { request, call in
                answer(call) { () throws(RPCStatus) in
                    try decodeListSlavesRequest(request)
                    let slaves = replication?.listing(lastLSN: kv.currentLSN) ?? []
                    return ListSlavesResponse(slaves: slaves).encode(allocator: call.allocator)
                }
            })
        router.register(
            "/erdtree.v1.Admin/AddSlave",
            .unary { request, call in
                answer(call) { () throws(RPCStatus) in
                    let hub = try Self.master(replication, replicator, for: "AddSlave")
                    let add = try AddSlave(decoding: request)
                    guard !add.slaveID.isEmpty else {
                        throw RPCStatus(.invalidArgument, "AddSlaveRequest.slave_id must not be empty")
                    }
                    do {
                        _ = try SocketAddressSpec(parsing: add.address)
                    } catch {
                        throw RPCStatus(.invalidArgument, "AddSlaveRequest.address: \(error)")
                    }
                    hub.add(slaveID: add.slaveID, address: add.address)
                    let listed = hub.listing(lastLSN: kv.currentLSN).first { $0.slaveID == add.slaveID }
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
            let master = replicator.map { " of \($0.masterAddress); call it there" } ?? ""
            throw RPCStatus(
                .failedPrecondition, "\(method) manages a master's slaves, and this node is a slave\(master)")
        }
        return hub
    }
}
