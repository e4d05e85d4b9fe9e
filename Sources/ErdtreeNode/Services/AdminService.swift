import ErdtreeRPC
import NIOCore

/// `erdtree.v1.Admin`: what a node reports about itself.
///
/// Until replication lands a node is always a master without slaves: `ListSlaves` is
/// empty and `AddSlave`/`RemoveSlave` answer UNIMPLEMENTED, saying why.
public struct AdminService: Sendable {
    public static let version = "0.1.0"

    private let kv: KVStoreService
    private let sweeper: ExpirySweeper
    private let startedAt: ContinuousClock.Instant

    public init(kv: KVStoreService, sweeper: ExpirySweeper, startedAt: ContinuousClock.Instant = .now) {
        self.kv = kv
        self.sweeper = sweeper
        self.startedAt = startedAt
    }

    public func register(in router: inout RPCRouter) {
        let kv = self.kv
        let sweeper = self.sweeper
        let startedAt = self.startedAt
        router.register(
            "/erdtree.v1.Admin/Status",
            .unary { request, call in
                answer(call) { () throws(RPCStatus) in
                    try decodeStatusRequest(request)
                    let uptime = ContinuousClock.now - startedAt
                    let disk = kv.wal.diskUsage
                    return StatusResponse(
                        isMaster: true, replicationID: kv.wal.replicationID, lastLSN: kv.currentLSN,
                        durableLSN: kv.wal.durableLSN, keys: UInt64(kv.store.count),
                        residentValues: UInt64(kv.store.residentCount),
                        memoryBytes: UInt64(kv.store.payloadBytes), segments: UInt32(clamping: disk.segments),
                        diskBytes: UInt64(max(disk.bytes, 0)), expiredReclaimed: sweeper.expiredReclaimed,
                        version: Self.version,
                        uptimeMs: uptime.components.seconds * 1000 + uptime.components.attoseconds
                            / 1_000_000_000_000_000
                    ).encode(allocator: call.allocator)
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
