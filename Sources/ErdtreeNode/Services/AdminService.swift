import ErdtreeRPC
import NIOCore
import NIOPosix

/// `erdtree.v1.Admin`: what a node reports about itself.
///
/// Until replication lands a node is always a master without slaves: `ListSlaves` is
/// empty and `AddSlave`/`RemoveSlave` answer UNIMPLEMENTED, saying why.
public struct AdminService: Sendable {
    public static let version = "0.1.0"

    private let kv: KVStoreService
    private let sweeper: ExpirySweeper
    private let compactor: Compactor
    private let startedAt: ContinuousClock.Instant

    public init(
        kv: KVStoreService, sweeper: ExpirySweeper, compactor: Compactor, startedAt: ContinuousClock.Instant = .now
    ) {
        self.kv = kv
        self.sweeper = sweeper
        self.compactor = compactor
        self.startedAt = startedAt
    }

    public func register(in router: inout RPCRouter) {
        let kv = self.kv
        let sweeper = self.sweeper
        let compactor = self.compactor
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
                    return ListSlavesResponse().encode(allocator: call.allocator)
                }
            })
        for method in ["AddSlave", "RemoveSlave"] {
            router.register(
                "/erdtree.v1.Admin/\(method)",
                .unary { _, call in
                    call.finish(
                        RPCStatus(
                            .unimplemented,
                            "\(method) needs replication, which this version of erdtree does not have yet"))
                })
        }
    }
}
