import ErdtreeRPC
import ErdtreeStorage
import ErdtreeWAL

// The node's one error → status mapping: what a client (gRPC, or Connect through the code's HTTP
// mapping) or a slave sees of a `NodeError` or a `RequestError`, code and message. Every status
// ErdtreeNode builds for a refusal or failure comes from here; the messages are part of the API
// (tests/interop and the Swift tests assert them word for word), so change them with care.

extension NodeError: CustomStringConvertible {
    /// The status message: what happened, where, and what the caller can do about it.
    var description: String {
        switch self {
        case .notMaster(let method, let masterAddress):
            "this node is a slave and takes no writes; send \(method) to the master at \(masterAddress)"
        case .storeFull(let error):
            error.description
        case .notLogged(let error):
            "the write was not logged, so it was not applied: \(error)"
        case .acksTimedOut(let lsn, let acked, let required, let timeout):
            "the write is logged and applied on the master at LSN \(lsn), but only \(acked) of the "
                + "\(required) slave acks replication.min_acks asks for arrived within "
                + "replication.ack_timeout (\(timeout))"
        case .minLSNAhead(let minLSN, let appliedLSN):
            "min_lsn \(minLSN) is ahead of this node, which has applied up to LSN \(appliedLSN)"
        case .minLSNDeadlinePassed(let minLSN):
            "deadline passed waiting for min_lsn \(minLSN)"
        case .evictedValueUnreadable(let key, let error):
            "cannot read the value of key \(key) back from the write-ahead log: \(error)"
        case .evictedRecordMismatch(let key, let lsn, let found, let foundKey, let foundLSN):
            "the value of key \(key) was evicted from memory at LSN \(lsn), but the write-ahead "
                + "log's record at its location is a \(found) of key \(foundKey) at LSN \(foundLSN)"
        case .evictedRecordKeptMoving(let key):
            "the record of key \(key) moved three times while being read (compaction); try again"
        case .logUnreadable(let error):
            "cannot read the write-ahead log: \(error)"
        case .helloRepeated:
            "Hello may be sent only once, first"
        case .helloMissing:
            "the first message must be a Hello"
        case .masterShuttingDown:
            "the master is shutting down"
        case .slaveRemoved:
            "removed by Admin.RemoveSlave"
        case .snapshotUnreadable(let error):
            "the master cannot read its log for a snapshot: \(error)"
        case .slaveLeftDuringSnapshot:
            "the slave went away during the snapshot"
        case .slaveStalled:
            "the slave stopped reading; reconnect to catch up from the log"
        case .positionCompactedAway(let lsn):
            "the entries after LSN \(lsn) were compacted away; resync"
        case .masterLogUnreadable(let error):
            "the master cannot read its log: \(error)"
        case .badMasterAddress(let error):
            "master.address: \(error)"
        case .badMasterToken(let error):
            "\(error)"
        case .masterUnreachable(let address, let reason):
            "cannot connect to the master at \(address): \(reason)"
        case .unknownReplicateResponse(let kind):
            "this slave does not understand ReplicateResponse kind \(kind)"
        case .slavesManagedOnMaster(let method, let masterAddress):
            "\(method) manages a master's slaves, and this node is a slave"
                + (masterAddress.map { " of \($0); call it there" } ?? "")
        case .unknownService(let service):
            "unknown service '\(service)'"
        case .writesClosed:
            "this node takes no writes now"
        case .switchoverUnderWay(let target):
            "a switchover to \(target) is under way and this node no longer takes writes; "
                + "send them to the new master at \(target)"
        case .steppedDown(let epoch):
            "this node stepped down: it heard of epoch \(epoch), newer than its own, and follows no master yet; "
                + "find the master with Admin/Status on the other nodes"
        case .staleMaster(let epoch, let slaveEpoch):
            "this node was the master of epoch \(epoch), but the slave knows epoch \(slaveEpoch): "
                + "it has been replaced, so it stepped down and takes no more writes"
        case .alreadyMaster(let epoch):
            "this node is already the master (epoch \(epoch)); Promote is for a slave"
        case .followSelf(let address):
            "\(address) is this node's own address; a node cannot follow itself"
        case .unknownSlave(let name, let connected):
            "no connected slave is named \(name) (connected: "
                + (connected.isEmpty ? "none" : connected.joined(separator: ", ")) + ")"
        case .noSlaveToPromote:
            "no slave is connected to hand the master's role to"
        case .roleChangeUnderWay:
            "a Failover, Promote or Follow is already under way on this node"
        case .switchoverTimedOut(let target, let acked, let last, let timeout):
            "slave \(target) acked LSN \(acked) of this master's last LSN \(last) within \(timeout); "
                + "the switchover is abandoned and this node takes writes again"
        case .leaseLapsed:
            "this master could not renew its lease in etcd within ha.lease_ttl, so another node may be "
                + "elected: it takes no writes until it renews (or steps down)"
        case .roleDecidedByEtcd(let method):
            "this node's role is decided through etcd (erdtree node); \(method) is for nodes run as "
                + "erdtree master or erdtree slave"
        case .noMasterYet:
            "this node does not know the master yet: the nodes are electing one through etcd; retry shortly"
        case .switchoverTargetLeft(let target):
            "slave \(target) disconnected before it could be promoted; "
                + "the switchover is abandoned and this node takes writes again"
        }
    }

    /// The master a refusal points to, sent as the `erdtree-master` metadata (a gRPC trailer, a
    /// Connect response header) so that clients can follow it without parsing the message.
    var masterHint: String? {
        switch self {
        case .notMaster(_, let address), .switchoverUnderWay(let address): address
        case .slavesManagedOnMaster(_, let address): address
        default: nil
        }
    }

    /// The status code. UNAVAILABLE says "try again, here or elsewhere" (a full disk, a slave
    /// still catching up, a master going away); INTERNAL means the node's own state is
    /// inconsistent (the index and the log disagree) and retrying will not help.
    var code: RPCStatus.Code {
        switch self {
        case .notMaster, .positionCompactedAway, .slavesManagedOnMaster, .staleMaster, .alreadyMaster,
            .roleDecidedByEtcd,
            .noSlaveToPromote, .roleChangeUnderWay:
            .failedPrecondition
        case .writesClosed, .steppedDown, .switchoverUnderWay, .switchoverTargetLeft, .leaseLapsed, .noMasterYet:
            .unavailable
        case .switchoverTimedOut:
            .deadlineExceeded
        case .followSelf:
            .invalidArgument
        case .storeFull, .slaveStalled:
            .resourceExhausted
        case .notLogged, .acksTimedOut, .minLSNAhead, .evictedRecordKeptMoving, .logUnreadable, .masterShuttingDown,
            .snapshotUnreadable, .masterLogUnreadable, .masterUnreachable:
            .unavailable
        case .minLSNDeadlinePassed:
            .deadlineExceeded
        case .evictedValueUnreadable(_, let error):
            // Bytes that are not the promised record mean the index and the log disagree;
            // anything else is the disk failing, which may pass.
            if case .corruptRecord = error { .internal } else { .unavailable }
        case .evictedRecordMismatch:
            .internal
        case .helloRepeated, .helloMissing, .badMasterAddress, .badMasterToken:
            .invalidArgument
        case .slaveRemoved, .slaveLeftDuringSnapshot:
            .cancelled
        case .unknownService, .unknownSlave:
            .notFound
        case .unknownReplicateResponse:
            .unimplemented
        }
    }

    /// What a call or a replication stream ends with.
    var status: RPCStatus {
        RPCStatus(code, description, metadata: masterHint.map { [Self.masterHeader: $0] } ?? [:])
    }

    /// The metadata name that carries `masterHint`.
    static let masterHeader = "erdtree-master"
}

extension RequestError: CustomStringConvertible {
    /// The status message, naming the limit or the rule the request broke.
    var description: String {
        switch self {
        case .emptyKey(let limit):
            "key must not be empty (keys are 1 to \(limit) bytes of UTF-8)"
        case .keyTooLong(let limit, let actual):
            "key is \(actual) bytes; the limit is \(limit) bytes (max_key_bytes)"
        case .keyNotUTF8:
            "key is not valid UTF-8"
        case .keyContainsNUL:
            "key contains a NUL byte (U+0000), which keys cannot hold"
        case .valueTooLarge(let limit, let actual):
            "value is \(actual) bytes; the limit is \(limit) bytes (max_value_bytes)"
        case .negativeTTL(let ttl):
            "ttl_ms must be 0 (no expiry) or positive, got \(ttl)"
        case .ttlTooLarge(let ttl):
            "ttl_ms \(ttl) puts the expiry past the year 9999"
        case .emptyField(let field):
            "\(field) must not be empty"
        case .badReplicationID(let id):
            "Hello.replication_id \"\(id.prefix(64))\" is not 32 hexadecimal digits"
        case .badAddress(let field, let error):
            "\(field): \(error)"
        case .emptyOneof(let message, let fields):
            "a \(message) must hold \(fields)"
        }
    }

    /// Every refusal is about the request's own arguments, so INVALID_ARGUMENT; an oversized
    /// *message* is RESOURCE_EXHAUSTED, and the transport decides that.
    var status: RPCStatus { RPCStatus(.invalidArgument, description) }
}
