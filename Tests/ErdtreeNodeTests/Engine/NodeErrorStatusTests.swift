import ErdtreeRPC
import ErdtreeStorage
import ErdtreeWAL
import Testing

@testable import ErdtreeNode

/// The node's one error → status mapping: each error's code and message, word for word, since
/// clients (and tests/interop) read them.
@Suite struct NodeErrorStatusTests {
    private static let diskFull = WALError.io(call: "write", path: "/data/wal/1.log", errno: 28)
    private static let corrupt = WALError.corruptRecord(
        segment: "/data/wal/1.log", offset: 40, lsn: 3, reason: "bad CRC")

    static let cases: [(NodeError, RPCStatus.Code, String)] = [
        (
            .notMaster(method: "Set", masterAddress: "10.0.0.1:8080"), .failedPrecondition,
            "this node is a slave and takes no writes; send Set to the master at 10.0.0.1:8080"
        ),
        (
            .storeFull(.limitExceeded(name: "storage.max_entries", limit: 3, actual: 3)), .resourceExhausted,
            "storage.max_entries reached: the store holds 3 keys (max: 3) and eviction_policy noeviction refuses "
                + "new keys; overwrite or delete existing keys, or raise storage.max_entries"
        ),
        (
            .notLogged(.closed), .unavailable,
            "the write was not logged, so it was not applied: The write-ahead log is closed."
        ),
        (
            .acksTimedOut(lsn: 7, acked: 1, required: 2, timeout: .seconds(5)), .unavailable,
            "the write is logged and applied on the master at LSN 7, but only 1 of the 2 slave acks "
                + "replication.min_acks asks for arrived within replication.ack_timeout (5.0 seconds)"
        ),
        (
            .minLSNAhead(minLSN: 99, appliedLSN: 3), .unavailable,
            "min_lsn 99 is ahead of this node, which has applied up to LSN 3"
        ),
        (.minLSNDeadlinePassed(minLSN: 99), .deadlineExceeded, "deadline passed waiting for min_lsn 99"),
        (
            .evictedValueUnreadable(key: StoreKey("k"), diskFull), .unavailable,
            "cannot read the value of key \"k\" back from the write-ahead log: \(diskFull)"
        ),
        (
            .evictedValueUnreadable(key: StoreKey("k"), corrupt), .internal,
            "cannot read the value of key \"k\" back from the write-ahead log: \(corrupt)"
        ),
        (
            .evictedRecordMismatch(key: StoreKey("b"), lsn: 1, found: .set, foundKey: StoreKey("a"), foundLSN: 1),
            .internal,
            "the value of key \"b\" was evicted from memory at LSN 1, but the write-ahead log's record at its "
                + "location is a set of key \"a\" at LSN 1"
        ),
        (
            .evictedRecordKeptMoving(key: StoreKey("k")), .unavailable,
            "the record of key \"k\" moved three times while being read (compaction); try again"
        ),
        (.logUnreadable(diskFull), .unavailable, "cannot read the write-ahead log: \(diskFull)"),
        (.helloRepeated, .invalidArgument, "Hello may be sent only once, first"),
        (.helloMissing, .invalidArgument, "the first message must be a Hello"),
        (.masterShuttingDown, .unavailable, "the master is shutting down"),
        (.slaveRemoved, .cancelled, "removed by Admin.RemoveSlave"),
        (.snapshotUnreadable(diskFull), .unavailable, "the master cannot read its log for a snapshot: \(diskFull)"),
        (.slaveLeftDuringSnapshot, .cancelled, "the slave went away during the snapshot"),
        (.slaveStalled, .resourceExhausted, "the slave stopped reading; reconnect to catch up from the log"),
        (
            .positionCompactedAway(afterLSN: 12), .failedPrecondition,
            "the entries after LSN 12 were compacted away; resync"
        ),
        (.masterLogUnreadable(diskFull), .unavailable, "the master cannot read its log: \(diskFull)"),
        (
            .badMasterAddress(.invalidAddress(input: "nowhere", reason: "no port")), .invalidArgument,
            "master.address: \(ConfigError.invalidAddress(input: "nowhere", reason: "no port"))"
        ),
        (
            .masterUnreachable(address: "10.0.0.1:8080", reason: "connection refused"), .unavailable,
            "cannot connect to the master at 10.0.0.1:8080: connection refused"
        ),
        (
            .slavesManagedOnMaster(method: "AddSlave", masterAddress: "10.0.0.1:8080"), .failedPrecondition,
            "AddSlave manages a master's slaves, and this node is a slave of 10.0.0.1:8080; call it there"
        ),
        (
            .slavesManagedOnMaster(method: "RemoveSlave", masterAddress: nil), .failedPrecondition,
            "RemoveSlave manages a master's slaves, and this node is a slave"
        ),
        (.unknownService("no.such.Service"), .notFound, "unknown service 'no.such.Service'"),
        (
            .unknownReplicateResponse(kind: 9), .unimplemented,
            "this slave does not understand ReplicateResponse kind 9"
        ),
        (.writesClosed, .unavailable, "this node takes no writes now"),
        (
            .switchoverUnderWay(target: "10.0.0.2:8080"), .unavailable,
            "a switchover to 10.0.0.2:8080 is under way and this node no longer takes writes; "
                + "send them to the new master at 10.0.0.2:8080"
        ),
        (
            .steppedDown(epoch: 3), .unavailable,
            "this node stepped down: it heard of epoch 3, newer than its own, and follows no master yet; "
                + "find the master with Admin/Status on the other nodes"
        ),
        (
            .staleMaster(epoch: 1, slaveEpoch: 2), .failedPrecondition,
            "this node was the master of epoch 1, but the slave knows epoch 2: it has been replaced, so it "
                + "stepped down and takes no more writes"
        ),
        (
            .alreadyMaster(epoch: 2), .failedPrecondition,
            "this node is already the master (epoch 2); Promote is for a slave"
        ),
        (
            .followSelf(address: "127.0.0.1:8080"), .invalidArgument,
            "127.0.0.1:8080 is this node's own address; a node cannot follow itself"
        ),
        (
            .unknownSlave("s9", connected: ["s1", "s2"]), .notFound,
            "no connected slave is named s9 (connected: s1, s2)"
        ),
        (.unknownSlave("s9", connected: []), .notFound, "no connected slave is named s9 (connected: none)"),
        (.noSlaveToPromote, .failedPrecondition, "no slave is connected to hand the master's role to"),
        (.roleChangeUnderWay, .failedPrecondition, "a Failover, Promote or Follow is already under way on this node"),
        (
            .switchoverTimedOut(target: "s1:1", ackedLSN: 5, lastLSN: 9, timeout: .seconds(2)), .deadlineExceeded,
            "slave s1:1 acked LSN 5 of this master's last LSN 9 within 2.0 seconds; "
                + "the switchover is abandoned and this node takes writes again"
        ),
        (
            .leaseLapsed, .unavailable,
            "this master could not renew its lease in etcd within ha.lease_ttl, so another node may be "
                + "elected: it takes no writes until it renews (or steps down)"
        ),
        (
            .roleDecidedByEtcd(method: "Promote"), .failedPrecondition,
            "this node's role is decided through etcd (erdtree node); Promote is for nodes run as "
                + "erdtree master or erdtree slave"
        ),
        (
            .noMasterYet, .unavailable,
            "this node does not know the master yet: the nodes are electing one through etcd; retry shortly"
        ),
        (
            .switchoverTargetLeft(target: "s1:1"), .unavailable,
            "slave s1:1 disconnected before it could be promoted; "
                + "the switchover is abandoned and this node takes writes again"
        ),
    ]

    @Test(arguments: cases)
    func eachErrorMapsToItsCodeAndMessage(error: NodeError, code: RPCStatus.Code, message: String) {
        #expect(error.status.code == code)
        #expect(error.status.message == message)
    }

    /// Refusals that know the master say where it is in `erdtree-master` too (a gRPC trailer, a
    /// Connect header), so that clients need not parse the message; the others carry nothing.
    @Test func refusalsNamingTheMasterCarryItAsMetadata() {
        let address = "10.0.0.2:8080"
        for error: NodeError in [
            .notMaster(method: "Set", masterAddress: address), .switchoverUnderWay(target: address),
            .slavesManagedOnMaster(method: "Failover", masterAddress: address),
        ] {
            #expect(error.status.metadata == ["erdtree-master": address], "\(error)")
        }
        for error: NodeError in [.steppedDown(epoch: 2), .noSlaveToPromote, .writesClosed] {
            #expect(error.status.metadata.isEmpty, "\(error)")
        }
    }

    static let requestCases: [(RequestError, String)] = [
        (.emptyKey(limit: 8), "key must not be empty (keys are 1 to 8 bytes of UTF-8)"),
        (.keyTooLong(limit: 8, actual: 9), "key is 9 bytes; the limit is 8 bytes (max_key_bytes)"),
        (.keyNotUTF8, "key is not valid UTF-8"),
        (.keyContainsNUL, "key contains a NUL byte (U+0000), which keys cannot hold"),
        (.valueTooLarge(limit: 16, actual: 17), "value is 17 bytes; the limit is 16 bytes (max_value_bytes)"),
        (.negativeTTL(-1), "ttl_ms must be 0 (no expiry) or positive, got -1"),
        (.ttlTooLarge(.max), "ttl_ms \(Int64.max) puts the expiry past the year 9999"),
        (.emptyField("AddSlaveRequest.slave_id"), "AddSlaveRequest.slave_id must not be empty"),
        (.badReplicationID("xyz"), "Hello.replication_id \"xyz\" is not 32 hexadecimal digits"),
        (
            .badAddress(field: "AddSlaveRequest.address", .invalidAddress(input: "x", reason: "no port")),
            "AddSlaveRequest.address: \(ConfigError.invalidAddress(input: "x", reason: "no port"))"
        ),
        (
            .emptyOneof("ReplicateRequest", fields: "a hello or an ack"),
            "a ReplicateRequest must hold a hello or an ack"
        ),
    ]

    @Test(arguments: requestCases)
    func everyRequestErrorIsInvalidArgumentWithItsMessage(error: RequestError, message: String) {
        #expect(error.status == RPCStatus(.invalidArgument, message))
    }

    @Test func aLongReplicationIDIsCutInTheMessage() {
        let id = String(repeating: "z", count: 100)
        #expect(
            RequestError.badReplicationID(id).status.message
                == "Hello.replication_id \"\(String(repeating: "z", count: 64))\" is not 32 hexadecimal digits")
    }
}
