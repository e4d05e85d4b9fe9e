import ErdtreeStorage
import ErdtreeWAL

/// Why the node refused or failed a call, or ended a replication stream, once the request itself
/// was valid (a malformed request is a `RequestError`).
///
/// The engine and the services throw these, carrying what happened and where; the one mapping
/// to a gRPC/Connect status, code and message, is `NodeError+Status.swift`. Nothing else in
/// ErdtreeNode turns a WAL, storage or replication failure into a status.
enum NodeError: Error, Equatable {
    // MARK: Writes

    /// A write reached a slave, which takes none; `method` is the KVStore method.
    case notMaster(method: String, masterAddress: String)
    /// `storage.eviction_policy: noeviction` refused a new key before it was logged.
    case storeFull(StorageError)
    /// The WAL did not take the write (a full disk, a closed log), so it was not applied either.
    case notLogged(WALError)
    /// A write logged and applied at `lsn` waited `timeout` (`replication.ack_timeout`) for
    /// `required` slave acks (`replication.min_acks`), and only `acked` came.
    case acksTimedOut(lsn: UInt64, acked: Int, required: Int, timeout: Duration)

    // MARK: Reads

    /// A Get's `min_lsn` is past what this node has applied: at once on a master, which has
    /// applied everything it logged; on a slave, once its wait for the LSN ran out.
    case minLSNAhead(minLSN: UInt64, appliedLSN: UInt64)
    /// The call's own deadline passed while a slave waited for `min_lsn`.
    case minLSNDeadlinePassed(minLSN: UInt64)
    /// An evicted value could not be read back from its record in the log.
    case evictedValueUnreadable(key: StoreKey, WALError)
    /// The record at an evicted key's location is not the write its index entry promised: the
    /// index and the log disagree.
    case evictedRecordMismatch(key: StoreKey, lsn: UInt64, found: WALOp, foundKey: StoreKey, foundLSN: UInt64)
    /// Compactions kept moving an evicted key's record while it was being read.
    case evictedRecordKeptMoving(key: StoreKey)
    /// `GetUpdates` could not read the log.
    case logUnreadable(WALError)

    // MARK: Replication, on the master

    /// A slave sent a second Hello on its stream.
    case helloRepeated
    /// A slave's stream did not start with a Hello.
    case helloMissing
    /// The master is stopping; its slaves redial.
    case masterShuttingDown
    /// `Admin.RemoveSlave` dropped the slave's stream.
    case slaveRemoved
    /// The master could not read its log to build a slave's snapshot.
    case snapshotUnreadable(WALError)
    /// The slave's stream ended while its snapshot was being sent.
    case slaveLeftDuringSnapshot
    /// The slave kept its send buffer full past the stall timeout.
    case slaveStalled
    /// The entries after a streaming slave's position were compacted away meanwhile.
    case positionCompactedAway(afterLSN: UInt64)
    /// The master could not read its log to stream to a slave.
    case masterLogUnreadable(WALError)

    // MARK: Replication, on the slave

    /// `master.address` does not parse as `host:port`.
    case badMasterAddress(ConfigError)
    /// `master.token_file` cannot be read, or holds no usable token (it is read at each dial).
    case badMasterToken(ConfigError)
    /// The slave could not connect to its master; `reason` is the connection's error.
    case masterUnreachable(address: String, reason: String)
    /// The master sent a `ReplicateResponse` of a kind this slave's proto does not have (a newer
    /// master).
    case unknownReplicateResponse(kind: UInt32)

    // MARK: Admin and Health

    /// An Admin call that manages a master's slaves reached a slave (whose master, if known, it names).
    case slavesManagedOnMaster(method: String, masterAddress: String?)
    /// `grpc.health.v1.Health/Check` for a service this node does not serve.
    case unknownService(String)

    // MARK: Roles and epochs

    /// The write gate is closed: the engine's refusal, which the KVStore service turns into the
    /// role's own (`RoleManager.refusal`).
    case writesClosed
    /// A write reached a master handing its role to `target` (Admin.Failover).
    case switchoverUnderWay(target: String)
    /// A write reached a master that heard of a newer epoch and stepped down, and follows no one
    /// yet (once it follows the new master, refusals are `notMaster`, naming it).
    case steppedDown(epoch: UInt64)
    /// A slave of a newer epoch dialled this master: it steps down.
    case staleMaster(epoch: UInt64, slaveEpoch: UInt64)
    /// Admin.Promote on the master.
    case alreadyMaster(epoch: UInt64)
    /// Admin.Follow naming this node's own address.
    case followSelf(address: String)
    /// Admin.Failover named no connected slave.
    case unknownSlave(String, connected: [String])
    /// Admin.Failover with no slave connected.
    case noSlaveToPromote
    /// A second Admin.Failover or Promote or Follow while one is under way.
    case roleChangeUnderWay
    /// Admin.Failover's target did not ack the master's last LSN in time; nothing changed.
    case switchoverTimedOut(target: String, ackedLSN: UInt64, lastLSN: UInt64, timeout: Duration)
    /// Admin.Failover's target disconnected before it was promoted; nothing changed.
    case switchoverTargetLeft(target: String)
    /// A master under a coordinator's lease that it could not renew in time takes no writes.
    case leaseLapsed
    /// `erdtree node` before the coordinator named a master.
    case noMasterYet
    /// Admin.Failover, Promote or Follow on an `erdtree node`, whose role etcd decides.
    case roleDecidedByEtcd(method: String)
}
