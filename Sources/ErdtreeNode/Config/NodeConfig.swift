import ErdtreeRPC

/// Everything a node reads from its YAML config file (docs/configuration.md), with units in the names.
///
/// Built by `NodeConfig.load(path:role:)` or `parse(yaml:role:source:)`, which apply the role's
/// defaults for missing keys and validate every value; see docs/configuration.md for the file
/// format. The properties are `var` so tests can start from `defaults(for:)` and change a field
/// (port 0, a temporary directory) without writing YAML; such changes are not re-validated.
/// TLS files are checked for presence of keys here, and read when the node starts
/// (`ServerTLSContext`, `ClientTLS.validate()`), so parsing stays free of file I/O.
public struct NodeConfig: Sendable, Equatable {
    public var server: Server
    public var wal: WAL
    public var storage: Storage
    /// The master this node follows: present for a slave, `nil` for a master.
    public var master: Master?
    public var replication: Replication
    public var limits: Limits
    /// Automatic failover through etcd: present for `erdtree node`, `nil` for a static role.
    public var ha: HA?
    /// Bearer tokens callers must present; `nil` leaves every method open (the default).
    public var auth: Auth?

    public init(
        server: Server,
        wal: WAL,
        storage: Storage = Storage(),
        master: Master? = nil,
        replication: Replication = Replication(),
        limits: Limits = Limits(),
        ha: HA? = nil,
        auth: Auth? = nil
    ) {
        self.server = server
        self.wal = wal
        self.storage = storage
        self.master = master
        self.replication = replication
        self.limits = limits
        self.ha = ha
        self.auth = auth
    }

    /// Where the node listens for clients (and, on a master, for slaves).
    public struct Server: Sendable, Equatable {
        /// The interface to bind: an IP literal or a host name; `0.0.0.0` for every IPv4 interface.
        public var address: String
        /// 0...65535; 0 asks the OS for a free port (tests read the bound port back).
        public var port: Int
        /// Event-loop threads serving connections; 0 means one per core. Each connection
        /// lives on one loop, so more loops help only with more connections.
        public var eventLoops: Int
        /// How long an HTTP/1.1 connection (or one that has not yet said which protocol it
        /// speaks) may send nothing before it is closed, unless a call on it is in progress.
        public var idleTimeout: Duration
        /// Connections open at once; one more is closed as soon as it is accepted.
        public var maxConnections = 10_000
        /// HTTP/2 streams one client connection may have open at once.
        public var maxConcurrentStreams = 100
        /// Largest request header list; a client that sends more is disconnected.
        public var maxHeaderListBytes = 64 << 10
        /// Request bytes one connection may make the node hold before handlers take them.
        public var maxBufferedBytesPerConnection = 32 << 20
        /// The same, over all connections together.
        public var maxBufferedBytes = 256 << 20
        /// How soon after connecting a client must have sent its whole HTTP/2 preface and
        /// SETTINGS (or the first bytes of an HTTP/1.1 request).
        public var handshakeTimeout: Duration = .seconds(10)
        /// When set, the port speaks only TLS (`server.tls`).
        public var tls: ServerTLS?

        public init(
            address: String, port: Int, eventLoops: Int = 0, idleTimeout: Duration = .seconds(30),
            tls: ServerTLS? = nil
        ) {
            self.address = address
            self.port = port
            self.eventLoops = eventLoops
            self.idleTimeout = idleTimeout
            self.tls = tls
        }
    }

    /// The write-ahead log (docs/configuration.md `wal`; the bytes: docs/wal-format.md).
    public struct WAL: Sendable, Equatable {
        /// The directory holding `<first-lsn>.log` segments; relative paths are relative to the
        /// working directory the node was started in.
        public var directory: String
        /// When appended batches are fsynced.
        public var syncInterval: SyncPolicy
        /// A segment is sealed and a new one started once it reaches this size.
        public var maxFileSizeBytes: Int64
        /// How much sealed WAL is kept for slaves that are behind; past it they get a full resync.
        public var retentionBytes: Int64

        public init(directory: String, syncInterval: SyncPolicy, maxFileSizeBytes: Int64, retentionBytes: Int64) {
            self.directory = directory
            self.syncInterval = syncInterval
            self.maxFileSizeBytes = maxFileSizeBytes
            self.retentionBytes = retentionBytes
        }
    }

    /// When the WAL writer fsyncs, written `always` or as a duration in YAML.
    public enum SyncPolicy: Sendable, Equatable {
        /// Fsync each group-committed batch before any of its writers is acknowledged.
        case always
        /// Fsync at most this often (Redis `appendfsync everysec` at 1s); a power failure can lose
        /// the writes acknowledged in the last interval.
        case interval(Duration)
    }

    /// The in-memory store (docs/configuration.md `storage`).
    public struct Storage: Sendable, Equatable {
        /// How many values stay in memory; keys themselves are always indexed.
        public var maxEntries: Int
        public var evictionPolicy: EvictionPolicy

        public init(maxEntries: Int = 1_000_000, evictionPolicy: EvictionPolicy = .lru) {
            self.maxEntries = maxEntries
            self.evictionPolicy = evictionPolicy
        }
    }

    /// What happens when `maxEntries` values are in memory and another key arrives.
    public enum EvictionPolicy: String, Sendable, Equatable, CaseIterable {
        /// Drop the least recently used value from memory (it stays on disk and is read back on a Get).
        case lru
        /// Refuse new keys with RESOURCE_EXHAUSTED.
        case noeviction
    }

    /// The master a slave follows (docs/replication.md).
    public struct Master: Sendable, Equatable {
        /// `host:port` of the master; it parses with `SocketAddressSpec(parsing:)`.
        public var address: String
        /// The heartbeat period of the replication stream when no writes flow.
        public var syncInterval: Duration
        /// The file holding the token sent to the master (`authorization: Bearer`), read anew at
        /// each connection so a rotated secret is picked up; nil sends none.
        public var tokenFile: String?
        /// When set, the node dials its master over TLS (`master.tls`).
        public var tls: ClientTLS?

        public init(address: String, syncInterval: Duration, tokenFile: String? = nil, tls: ClientTLS? = nil) {
            self.address = address
            self.syncInterval = syncInterval
            self.tokenFile = tokenFile
            self.tls = tls
        }

        /// The same link settings, to the master at `address`.
        func at(_ address: String) -> Master {
            var master = self
            master.address = address
            return master
        }
    }

    /// Who may call what (docs/security.md): each token file holds one secret, and its role
    /// decides the methods it opens.
    public struct Auth: Sendable, Equatable {
        public var tokens: [Token]
        /// `auth.metrics`: whether `GET /metrics` needs a token (any role's) or is open.
        public var metrics: MetricsAccess

        public init(tokens: [Token], metrics: MetricsAccess = .open) {
            self.tokens = tokens
            self.metrics = metrics
        }

        /// DESIGN §11: scrapers usually hold no token, so `/metrics` is open unless told.
        public enum MetricsAccess: String, Sendable, Equatable, CaseIterable {
            case open
            case token
        }

        public struct Token: Sendable, Equatable {
            /// Names the token in errors and logs, which never show the secret.
            public var name: String
            public var role: AccessRole
            public var tokenFile: String

            public init(name: String, role: AccessRole, tokenFile: String) {
                self.name = name
                self.role = role
                self.tokenFile = tokenFile
            }
        }
    }

    /// A node whose role etcd decides (docs/high-availability.md, part 2).
    public struct HA: Sendable, Equatable {
        /// etcd's gRPC endpoints, `host:port` each, tried in order.
        public var etcdEndpoints: [String]
        /// Keys live under `/erdtree/<cluster>/`.
        public var cluster: String
        /// This node's member name, unique in the cluster.
        public var name: String
        /// Where the other nodes and clients reach this node (`host:port`).
        public var advertise: String
        /// The lease a master must keep renewing to take writes.
        public var leaseTTL: Duration
        /// When set, the node dials etcd over TLS (`ha.etcd.tls`).
        public var etcdTLS: ClientTLS?

        public init(
            etcdEndpoints: [String], cluster: String, name: String, advertise: String, leaseTTL: Duration,
            etcdTLS: ClientTLS? = nil
        ) {
            self.etcdTLS = etcdTLS
            self.etcdEndpoints = etcdEndpoints
            self.cluster = cluster
            self.name = name
            self.advertise = advertise
            self.leaseTTL = leaseTTL
        }
    }

    /// Semi-synchronous replication on the master (docs/replication.md).
    public struct Replication: Sendable, Equatable {
        /// Slave acks a write waits for before it is answered; 0 answers after the local WAL append.
        public var minAcks: Int
        /// How long a write waits for `minAcks` before answering UNAVAILABLE.
        public var ackTimeout: Duration

        public init(minAcks: Int = 0, ackTimeout: Duration = .seconds(5)) {
            self.minAcks = minAcks
            self.ackTimeout = ackTimeout
        }
    }

    /// Request size limits (docs/api.md); a violation is INVALID_ARGUMENT or RESOURCE_EXHAUSTED.
    public struct Limits: Sendable, Equatable {
        public var maxKeyBytes: Int
        public var maxValueBytes: Int
        /// The largest gRPC/Connect message accepted or sent, in bytes.
        public var maxMessageBytes: Int

        public init(maxKeyBytes: Int = 4096, maxValueBytes: Int = 1 << 20, maxMessageBytes: Int = 4 << 20) {
            self.maxKeyBytes = maxKeyBytes
            self.maxValueBytes = maxValueBytes
            self.maxMessageBytes = maxMessageBytes
        }
    }
}
