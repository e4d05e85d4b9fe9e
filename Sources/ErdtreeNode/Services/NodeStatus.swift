import ErdtreeRPC

/// What `Admin/Status` reports about a node (`erdtree.v1.StatusResponse`), in the parts an
/// operator reads them by: the Admin service fills it in, the wire carries it flat, and
/// `KVClient.status()` hands it to the CLI.
public struct NodeStatus: Sendable, Equatable {
    /// Which node this is.
    public struct Identity: Sendable, Equatable {
        public var isMaster = true
        public var replicationID = ""
        /// On a slave, its master's address; empty on a master.
        public var masterAddress = ""
        public var version = ""
        public var uptimeMs: Int64 = 0
        /// The epoch of the node's history.
        public var epoch: UInt64 = 1
        /// Records moved to divergent files (`<wal.directory>/divergent/`).
        public var divergentRecords: UInt64 = 0
        /// Why a master that stepped down takes no writes; empty otherwise.
        public var fencedReason = ""
    }

    /// How far the log has come.
    public struct Positions: Sendable, Equatable {
        public var lastLSN: UInt64 = 0
        /// The last LSN visible to reads (trails `lastLSN` while a slave applies a backlog).
        public var appliedLSN: UInt64 = 0
        public var durableLSN: UInt64 = 0
        /// The oldest LSN the log can still stream (older positions need a full resync).
        public var oldestStreamableLSN: UInt64 = 0
    }

    /// The in-memory engine.
    public struct Store: Sendable, Equatable {
        public var keys: UInt64 = 0
        public var residentValues: UInt64 = 0
        public var memoryBytes: UInt64 = 0
        public var expiredReclaimed: UInt64 = 0
        /// Gets answered by reading an evicted value back from the log.
        public var diskReads: UInt64 = 0
    }

    /// The write-ahead log on disk.
    public struct Log: Sendable, Equatable {
        public var segments: UInt32 = 0
        public var diskBytes: UInt64 = 0
        public var deadBytes: UInt64 = 0
        public var compactions: UInt64 = 0
        /// Unix ms; 0 if none since start.
        public var lastCompactionMs: Int64 = 0
    }

    /// How far behind: a slave's own lag, or on a master its slowest connected slave's.
    public struct Lag: Sendable, Equatable {
        public var entries: UInt64 = 0
        public var ms: Int64 = 0
    }

    /// What the server's abuse limits did since the node started (DESIGN §11).
    public struct Connections: Sendable, Equatable {
        /// Closed on accept: `server.max_connections` were open.
        public var rejected: UInt64 = 0
        /// Closed for a protocol violation, a flood, or a handshake not finished in time.
        public var closedForAbuse: UInt64 = 0
        /// Requests refused RESOURCE_EXHAUSTED at a buffered-bytes cap.
        public var requestsRefusedForMemory: UInt64 = 0
        /// Request bytes held now, before handlers take them.
        public var bufferedRequestBytes: UInt64 = 0
    }

    public var identity = Identity()
    public var positions = Positions()
    public var store = Store()
    public var log = Log()
    public var lag = Lag()
    public var connections = Connections()

    public init() {}

    /// `master` or `slave`.
    public var role: String { identity.isMaster ? "master" : "slave" }
}

extension NodeStatus.Connections {
    init(_ statistics: RPCServer.Statistics) {
        self.init(
            rejected: UInt64(statistics.connectionsRejected),
            closedForAbuse: UInt64(statistics.connectionsClosedForAbuse),
            requestsRefusedForMemory: UInt64(statistics.requestsRefusedForMemory),
            bufferedRequestBytes: UInt64(max(statistics.bufferedRequestBytes, 0)))
    }
}
