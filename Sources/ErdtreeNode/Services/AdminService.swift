import ErdtreeRPC
import NIOCore
import NIOPosix

/// `erdtree.v1.Admin`: what a node reports about itself, a master's list of slaves, and role
/// changes.
///
/// `Status` reports the engine's positions and sizes, the compactor's and the sweeper's work,
/// replication lag, the epoch and the master's address, and what the server's abuse limits did.
/// On a master `ListSlaves` lists the
/// connected slaves and the ones `AddSlave` pre-registered; `RemoveSlave` drops one. A slave
/// answers those two FAILED_PRECONDITION, naming its master (slaves need no Admin call to join:
/// they register by dialling in). `Failover`, `Promote` and `Follow` are the `RoleManager`'s.
public struct AdminService: Sendable {
    public static let version = "0.1.0"

    let engine: KVEngine
    let sweeper: ExpirySweeper
    let compactor: Compactor
    /// What the node is now; its hub lists the slaves.
    let roles: RoleManager
    /// The server's abuse-limit counters.
    let serverStatistics: RPCServer.Statistics
    /// When the node started, for `uptime_ms`.
    var startedAt = ContinuousClock.now

    public func register(in router: inout RPCRouter) {
        let engine = self.engine
        let roles = self.roles
        router.register(
            "/erdtree.v1.Admin/Status",
            .unary { request, call in
                // Dead bytes take a pass over every key: off the event loop.
                NIOThreadPool.singleton.submit { _ in
                    answer(call) { () throws(RPCStatus) in
                        try decodeStatusRequest(request)
                        return self.status(includingDeadBytes: true).encode(allocator: call.allocator)
                    }
                }
            })
        router.register(
            "/erdtree.v1.Admin/ListSlaves",
            .unary { request, call in
                answer(call) { () throws(RPCStatus) in
                    try decodeListSlavesRequest(request)
                    let slaves = roles.isMaster ? roles.hub.listing(lastLSN: engine.lastLSN) : []
                    return ListSlavesResponse(slaves: slaves).encode(allocator: call.allocator)
                }
            })
        router.register(
            "/erdtree.v1.Admin/AddSlave",
            .unary { request, call in
                answer(call) { () throws(RPCStatus) in
                    let hub = try Self.master(roles, for: "AddSlave")
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
                    let hub = try Self.master(roles, for: "RemoveSlave")
                    let remove = try RemoveSlave(decoding: request)
                    return RemoveSlave.response(removed: hub.remove(slaveID: remove.slaveID), allocator: call.allocator)
                }
            })
        Self.registerRoleChanges(roles, in: &router)
    }

    /// What `Status` reports, and what `/metrics` reads at each scrape.
    ///
    /// - Parameter includingDeadBytes: the log's dead bytes take a pass over every key, so only
    ///   `Status`, off the event loop, asks for them; without them every figure is O(1) (or
    ///   O(slaves)), which a scrape on an event loop can afford.
    func status(includingDeadBytes: Bool) -> NodeStatus {
        let uptime = ContinuousClock.now - startedAt
        let engineStatistics = engine.statistics()
        var status = NodeStatus()
        status.identity.replicationID = engineStatistics.replicationID
        status.identity.version = Self.version
        status.identity.uptimeMs =
            ConfigUnits.milliseconds(uptime)
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
            deadBytes: includingDeadBytes ? UInt64(compactor.deadBytes()) : 0, compactions: compactor.compactions,
            lastCompactionMs: compactor.lastCompactionMs)
        status.identity.epoch = engine.epoch
        status.identity.divergentRecords = UInt64(engine.divergentRecordCount)
        status.identity.fencedReason = roles.fencedReason
        status.connections = NodeStatus.Connections(serverStatistics)
        status.identity.masterAddress = roles.masterAddress
        status.identity.isMaster = roles.isMaster
        if !roles.isMaster, let replicator = roles.replicator {
            let masterLSN = max(replicator.masterLSN, applied)
            status.lag.entries = masterLSN - applied
            // Behind, or cut off from the master (it cannot know what it misses):
            // the time since it last heard from it.
            let silent = !replicator.isConnected && replicator.lastContactMs > 0
            status.lag.ms =
                status.lag.entries == 0 && !silent
                ? 0 : max(0, WallClock.nowMs() - replicator.lastContactMs)
        } else if roles.isMaster {
            let slaves = roles.hub.listing(lastLSN: engineStatistics.lastLSN).filter(\.connected)
            status.lag.entries = slaves.map(\.lagEntries).max() ?? 0
            status.lag.ms = slaves.map(\.lagMs).max() ?? 0
        }
        return status
    }

    /// The master's replication hub, or FAILED_PRECONDITION on a node that is not the master.
    private static func master(_ roles: RoleManager, for method: String) throws(RPCStatus) -> ReplicationHub {
        guard roles.isMaster else {
            let master = roles.masterAddress
            throw NodeError.slavesManagedOnMaster(method: method, masterAddress: master.isEmpty ? nil : master).status
        }
        return roles.hub
    }

    /// Failover, Promote and Follow: each waits for the role change, so they run as tasks.
    private static func registerRoleChanges(_ roles: RoleManager, in router: inout RPCRouter) {
        router.register(
            "/erdtree.v1.Admin/Failover",
            .unary { request, call in
                let failover: FailoverRequest
                do throws(RPCStatus) { failover = try FailoverRequest(decoding: request) } catch {
                    return call.finish(error)
                }
                let timeout =
                    failover.timeoutMs == 0
                    ? RoleManager.defaultFailoverTimeout : .milliseconds(Int64(failover.timeoutMs))
                respond(call, roles, "Failover") { () async throws(NodeError) in
                    try await roles.failover(to: failover.to, timeout: timeout).encode(allocator: call.allocator)
                }
            })
        router.register(
            "/erdtree.v1.Admin/Promote",
            .unary { request, call in
                do throws(RPCStatus) { try PromoteMessages.decodeRequest(request) } catch { return call.finish(error) }
                respond(call, roles, "Promote") { () async throws(NodeError) in
                    PromoteMessages.encodeResponse(try await roles.promote(), allocator: call.allocator)
                }
            })
        router.register(
            "/erdtree.v1.Admin/Follow",
            .unary { request, call in
                let address: String
                do throws(RPCStatus) {
                    address = try FollowMessages.decodeRequest(request)
                    do throws(ConfigError) {
                        _ = try SocketAddressSpec(parsing: address)
                    } catch {
                        throw RequestError.badAddress(field: "FollowRequest.master_address", error).status
                    }
                } catch {
                    return call.finish(error)
                }
                respond(call, roles, "Follow") { () async throws(NodeError) in
                    try await roles.follow(address)
                    return FollowMessages.encodeResponse(allocator: call.allocator)
                }
            })
    }

    /// Runs `body` as a task and answers the call on its event loop with what it returns or throws.
    /// On a node etcd places, a role change by hand is refused (`method`).
    private static func respond(
        _ call: ServerCall, _ roles: RoleManager, _ method: String,
        _ body: @escaping @Sendable () async throws(NodeError) -> ByteBuffer
    ) {
        guard !roles.coordinated else { return call.finish(NodeError.roleDecidedByEtcd(method: method).status) }
        Task {
            let result: Result<ByteBuffer, NodeError>
            do throws(NodeError) {
                result = .success(try await body())
            } catch {
                result = .failure(error)
            }
            call.eventLoop.execute {
                switch result {
                case .success(let response): call.respond(response)
                case .failure(let error): call.finish(error.status)
                }
            }
        }
    }
}
