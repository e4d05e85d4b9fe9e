import ArgumentParser
import Dispatch
import ErdtreeNode
import ErdtreeRPC
import Glibc
import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

@main
struct Erdtree: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "erdtree",
        abstract: "A replicated key-value store served over gRPC.",
        discussion: """
            Run a node with `erdtree master` or `erdtree slave`, or `erdtree node` for a role etcd decides;
            talk to one with get, set, del, health and status;
            change roles with failover, promote and follow; list a master's slaves with slaves;
            read a log on disk with `erdtree wal dump` and `erdtree wal verify`.
            """,
        version: AdminService.version,
        subcommands: [
            MasterCommand.self, SlaveCommand.self, NodeCommand.self, GetCommand.self, SetCommand.self, DelCommand.self,
            HealthCommand.self,
            StatusCommand.self, SlavesCommand.self, FailoverCommand.self, PromoteCommand.self, FollowCommand.self,
            WALCommand.self,
        ]
    )
}

/// `--server host:port` and the TLS flags, shared by the client subcommands.
struct ClientOptions: ParsableArguments {
    @Option(
        name: .long,
        help: "The node to talk to, as host:port or http://host:port (cleartext) or https://host:port (TLS).")
    var server: String = "127.0.0.1:8080"

    @Option(name: .customLong("tls-ca"), help: "PEM CA that signed the server's certificate; implies TLS.")
    var tlsCA: String?

    @Option(name: .customLong("tls-cert"), help: "PEM client certificate for mutual TLS (with --tls-key); implies TLS.")
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: "PEM key of --tls-cert.")
    var tlsKey: String?

    @Option(
        name: .customLong("tls-server-name"),
        help: "The name the server's certificate must carry; default the host in --server; implies TLS.")
    var tlsServerName: String?

    @Option(name: .long, help: "Give up after this long (e.g. 500ms, 5s).")
    var timeout: String = "10s"

    @Option(
        name: .long,
        help: ArgumentHelp(
            "A file holding the bearer token to send (authorization: Bearer).",
            discussion: "Without it, the token in the ERDTREE_TOKEN environment variable is sent, if set."))
    var tokenFile: String?

    /// Connects, runs `body`, closes; turns failures into a one-line message and exit 1.
    ///
    /// With `followingMaster`, a refusal that names the master (`erdtree-master`: a write sent to
    /// a slave) is retried there, once.
    func withClient<T>(followingMaster: Bool = false, _ body: (KVClient) async throws -> T) async throws -> T {
        do {
            return try await withClient(at: server, body)
        } catch let status as RPCStatus {
            guard followingMaster, let master = status.metadata["erdtree-master"], master != server else {
                throw CLIError("\(status)")
            }
            let notice = "\(server) is not the master; sending to \(master)\n"
            _ = notice.withCString { Glibc.write(2, $0, strlen($0)) }
            do {
                return try await withClient(at: master, body)
            } catch let status as RPCStatus {
                throw CLIError("\(status)")
            }
        }
    }

    /// TLS when `--server` says `https://` or any `--tls-*` flag is given; with no `--tls-ca`
    /// the system's roots are trusted, as curl does.
    func clientTLS() throws -> ClientTLS? {
        let wantsTLS =
            server.hasPrefix("https://") || tlsCA != nil || tlsCert != nil || tlsKey != nil || tlsServerName != nil
        guard wantsTLS else { return nil }
        if (tlsCert == nil) != (tlsKey == nil) {
            throw ValidationError("--tls-cert and --tls-key go together")
        }
        return ClientTLS(caFile: tlsCA, serverName: tlsServerName, certFile: tlsCert, keyFile: tlsKey)
    }

    /// `host:port` without the `http://` or `https://` that `--server` may carry (or a trailing `/`).
    static func hostPort(_ server: String) -> String {
        var rest = Substring(server)
        for scheme in ["https://", "http://"] where rest.hasPrefix(scheme) {
            rest = rest.dropFirst(scheme.count)
        }
        return String(rest.hasSuffix("/") ? rest.dropLast() : rest)
    }

    /// Connects to `server`, runs `body`, closes; RPC failures are rethrown as they are.
    private func withClient<T>(at server: String, _ body: (KVClient) async throws -> T) async throws -> T {
        let address: SocketAddressSpec
        do {
            address = try SocketAddressSpec(parsing: Self.hostPort(server))
        } catch {
            throw ValidationError("--server: \(error)")
        }
        let tls = try clientTLS()
        guard let timeout = ConfigUnits.duration(self.timeout) else {
            throw ValidationError("--timeout: '\(self.timeout)' is not a duration (try 500ms, 5s, 1m)")
        }
        let metadata = try bearerToken().map { [HTTPField("authorization", "Bearer \($0)")] } ?? []
        let rpc: RPCClient
        do {
            rpc = try await RPCClient.connect(
                host: address.host, port: address.port, group: MultiThreadedEventLoopGroup.singleton,
                metadata: metadata, tls: tls)
        } catch {
            throw CLIError("cannot connect to \(server): \(error)")
        }
        defer { Task { await rpc.close() } }
        return try await body(KVClient(rpc: rpc, timeout: timeout))
    }

    /// `--token-file`'s token, else `ERDTREE_TOKEN`'s; nil when neither is given. Errors name
    /// the file, never the token.
    private func bearerToken() throws -> String? {
        if let tokenFile {
            do throws(ConfigError) {
                return String(decoding: try TokenFiles.read(tokenFile, key: "--token-file", source: ""), as: UTF8.self)
            } catch {
                guard case .invalidValue(_, _, let reason, _) = error else { throw CLIError("\(error)") }
                throw CLIError("--token-file \(tokenFile): \(reason)")
            }
        }
        guard let raw = getenv("ERDTREE_TOKEN") else { return nil }
        let token = String(cString: raw).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else { return nil }
        guard token.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw CLIError("ERDTREE_TOKEN must be printable ASCII without spaces")
        }
        return token
    }

    /// `--timeout` as a duration (validated by `withClient`).
    var timeoutDuration: Duration { ConfigUnits.duration(timeout) ?? .seconds(10) }
}

/// A failure the user caused or must act on: printed as `error: …`, exit status 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

struct MasterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "master",
        abstract: "Run a master node: it takes every write, serves reads and feeds its slaves.",
        discussion: """
            With no config file the node uses the embedded default: 127.0.0.1:8080, data under ./data/master.
            SIGTERM or SIGINT stops it gracefully: GOAWAY, in-flight calls finish, exit 0.
            SIGHUP rereads the auth token files and the server.tls certificate, key and client CA; a bad file keeps the old ones.
            """
    )

    @OptionGroup var options: NodeOptions

    func run() async throws {
        try await options.run(role: .master)
    }
}

struct SlaveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slave",
        abstract: "Run a slave node: it follows master.address, serves reads and refuses writes.",
        discussion: """
            With no config file the node uses the embedded default: 127.0.0.1:8081, data under ./data/slave,
            following 127.0.0.1:8080. Health is NOT_SERVING until the first sync with the master completes.
            SIGTERM or SIGINT stops it gracefully. SIGHUP rereads the auth token files and the server.tls files.
            """
    )

    @OptionGroup var options: NodeOptions

    func run() async throws {
        try await options.run(role: .slave)
    }
}

/// The options and the run loop the node commands share.
struct NodeOptions: ParsableArguments {
    @Option(
        name: [.customLong("config"), .customLong("config", withSingleDash: true)],
        help: "YAML config file (see docs/configuration.md).")
    var config: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Log level: trace, debug, info, notice, warning, error, critical.",
            discussion:
                "Overrides the config file's log.level; with neither, info. The file's log.format says text or json."
        ))
    var logLevel: String?

    /// Lifts the soft limit on open files to the hard one (as Go does for etcd): every client
    /// connection and every WAL segment read through its index holds a descriptor, and the
    /// default soft limit of 1024 is easy to reach with small `wal.max_file_size`.
    static func raiseOpenFileLimit(logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        let soft = limit.rlim_cur
        limit.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 {
            logger.warning("could not raise the open-file limit", metadata: ["soft": "\(soft)", "errno": "\(errno)"])
        }
    }

    /// Makes every logger of the process write `log.format` lines at `log.level` and up, to stderr.
    static func bootstrapLogging(_ log: NodeConfig.Log) {
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler =
                switch log.format {
                case .text: StreamLogHandler.standardError(label: label)
                case .json: JSONLogHandler(label: label)
                }
            handler.logLevel = log.level
            return handler
        }
    }

    func run(role: Role) async throws {
        let flagLevel = try logLevel.map { flag in
            guard let level = Logger.Level(rawValue: flag.lowercased()) else {
                let levels = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
                throw ValidationError("--log-level: '\(flag)' is not one of \(levels)")
            }
            return level
        }
        // Caught from here on: a SIGTERM while the log is replayed or the port is bound stops the
        // node gracefully once it has started, instead of killing it (the signal's default action).
        let termination = TerminationSignal()
        let hangup = HangupSignal()
        // Read before logging starts, since the file says how lines look; an error in it is printed
        // as a plain line, there being no logger yet to format it.
        var nodeConfig: NodeConfig
        do {
            nodeConfig = try NodeConfig.load(path: config, role: role)
        } catch {
            throw CLIError("\(error)")
        }
        nodeConfig.log.level = flagLevel ?? nodeConfig.log.level
        Self.bootstrapLogging(nodeConfig.log)
        let logger = Logger(label: "erdtree.\(role)")
        Self.raiseOpenFileLimit(logger: logger)
        let loops = nodeConfig.server.eventLoops
        let group =
            loops == 0 ? MultiThreadedEventLoopGroup.singleton : MultiThreadedEventLoopGroup(numberOfThreads: loops)
        let node: ServerNode
        do {
            node = try ServerNode(config: nodeConfig, role: role, group: group, logger: logger)
        } catch let error as ConfigError {
            throw CLIError("\(error)")
        } catch let error as TLSError {
            throw CLIError("\(error)")
        } catch {
            throw CLIError("cannot recover the write-ahead log in \(nodeConfig.wal.directory): \(error)")
        }
        do {
            _ = try await node.start()
        } catch {
            throw CLIError(
                "cannot listen on \(nodeConfig.server.address):\(nodeConfig.server.port): \(error)")
        }
        hangup.onEach {
            logger.info("received SIGHUP; reloading")
            node.reload()
        }
        let signal = await termination.wait()
        logger.info("received \(signal); draining")
        await node.stop()
    }
}

/// SIGHUP, which asks a running node to re-read its token and TLS files: ignored from the moment this
/// is made (its default action would kill the node), handled once `onEach` says how.
/// `setEventHandler` is thread-safe, and the source is not otherwise touched after `init`.
final class HangupSignal: @unchecked Sendable {
    private let queue = DispatchQueue(label: "erdtree.sighup")
    private let source: any DispatchSourceSignal

    init() {
        signal(SIGHUP, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: queue)
        // Resumed at once: libdispatch traps when a suspended source is released (a node that
        // fails to start drops this before `onEach`); until then a SIGHUP does nothing.
        source.resume()
    }

    /// Runs `action` on every SIGHUP from now on, one at a time.
    func onEach(_ action: @escaping @Sendable () -> Void) {
        source.setEventHandler(handler: action)
    }
}

/// SIGTERM and SIGINT, caught from the moment this is made: one that arrives before anyone
/// waits is remembered, not lost.
final class TerminationSignal: @unchecked Sendable {
    /// Every stored property below is touched only on this serial queue (or in `init`, before any
    /// handler can fire): that is the synchronisation.
    private let queue = DispatchQueue(label: "erdtree.signals")
    private var sources: [any DispatchSourceSignal] = []
    private var received: String?
    private var waiter: CheckedContinuation<String, Never>?

    init() {
        for (number, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")] {
            // A dispatch source only observes a signal; its default action (exit) must be off.
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { [self] in deliver(name) }
            source.resume()
            sources.append(source)
        }
    }

    /// Suspends until the first signal, or returns it if it already came.
    /// - Returns: the signal's name.
    func wait() async -> String {
        await withCheckedContinuation { continuation in
            queue.async { [self] in
                if let received { return continuation.resume(returning: received) }
                waiter = continuation
            }
        }
    }

    private func deliver(_ name: String) {
        guard received == nil else { return }
        received = name
        waiter?.resume(returning: name)
        waiter = nil
    }
}

struct GetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get",
        abstract: "Print a key's value. Exits 1 when the key does not exist.")

    @Argument(help: "The key.") var key: String
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let value = try await client.withClient { try await $0.get(key) }
        guard let value else { throw CLIError("key '\(key)' not found") }
        print(String(decoding: value.bytes, as: UTF8.self))
    }
}

struct SetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set", abstract: "Set a key to a value; prints the write's LSN.")

    @Argument(help: "The key.") var key: String
    @Argument(help: "The value.") var value: String
    @Option(name: .long, help: "Expire the key after this long (e.g. 30s, 5m); default never.")
    var ttl: String?
    @OptionGroup var client: ClientOptions

    func run() async throws {
        var ttlMs: Int64 = 0
        if let ttl {
            guard let duration = ConfigUnits.duration(ttl), duration > .zero else {
                throw ValidationError("--ttl: '\(ttl)' is not a positive duration (try 500ms, 30s, 5m)")
            }
            ttlMs = max(1, ConfigUnits.milliseconds(duration))
        }
        let written = try await client.withClient(followingMaster: true) {
            try await $0.write(key, value: Array(value.utf8), ttlMs: ttlMs)
        }
        print("OK lsn=\(written.lsn) epoch=\(written.epoch)")
    }
}

struct DelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "del", abstract: "Delete a key; prints whether it existed.")

    @Argument(help: "The key.") var key: String
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let result = try await client.withClient(followingMaster: true) { try await $0.delete(key) }
        print(result.deleted ? "deleted lsn=\(result.lsn)" : "not found")
    }
}

struct HealthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health",
        abstract: "Check a node's health (grpc.health.v1). Exits 0 only when SERVING.")

    @Option(name: .long, help: "A service name; default the whole node.") var service: String = ""
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let status = try await client.withClient { try await $0.health(service: service) }
        print(status)
        if status != .serving { throw ExitCode(1) }
    }
}

struct StatusCommand: AsyncParsableCommand {
    /// `ms` since the Unix epoch as an ISO 8601 UTC time.
    static func utc(ms: Int64) -> String {
        var seconds = time_t(ms / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        var text = [CChar](repeating: 0, count: 32)
        let length = strftime(&text, text.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        return String(decoding: text[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Print a node's status (erdtree.v1.Admin/Status): role, LSNs, keys, memory, disk.")

    @Flag(
        name: .long,
        help: ArgumentHelp(
            "Print one JSON object instead, for scripts.",
            discussion: """
                Every field of erdtree.v1.StatusResponse under its proto name (last_lsn, applied_lsn, lag_ms, …), \
                present even when zero; role as the proto3 JSON mapping writes the enum (ROLE_MASTER, ROLE_SLAVE); \
                integers as JSON numbers.
                """))
    var json = false

    @OptionGroup var client: ClientOptions

    func run() async throws {
        let status = try await client.withClient { try await $0.status() }
        if json { return print(status.json) }
        print(
            """
            role:              \(status.role)\(status.identity.isMaster || status.identity.masterAddress.isEmpty ? "" : " of \(status.identity.masterAddress)")
            master:            \(status.identity.masterAddress.isEmpty ? "unknown" : status.identity.masterAddress)
            epoch:             \(status.identity.epoch)\(status.identity.fencedReason.isEmpty ? "" : "\nfenced:            \(status.identity.fencedReason)")
            lag:               \(status.lag.entries) entries, \(status.lag.ms) ms
            version:           \(status.identity.version)
            uptime:            \(status.identity.uptimeMs / 1000) s
            replication id:    \(status.identity.replicationID)
            last lsn:          \(status.positions.lastLSN)
            applied lsn:       \(status.positions.appliedLSN)
            durable lsn:       \(status.positions.durableLSN)
            keys:              \(status.store.keys)
            resident values:   \(status.store.residentValues)
            memory (data):     \(status.store.memoryBytes) bytes
            wal segments:      \(status.log.segments)
            wal bytes:         \(status.log.diskBytes)
            wal dead bytes:    \(status.log.deadBytes)
            compactions:       \(status.log.compactions)
            last compaction:   \(status.log.lastCompactionMs == 0 ? "never" : Self.utc(ms: status.log.lastCompactionMs))
            oldest streamable: \(status.positions.oldestStreamableLSN)
            expired reclaimed: \(status.store.expiredReclaimed)
            disk reads:        \(status.store.diskReads)
            divergent records: \(status.identity.divergentRecords)
            conns rejected:    \(status.connections.rejected)
            conns abusive:     \(status.connections.closedForAbuse)
            refused (memory):  \(status.connections.requestsRefusedForMemory)
            buffered requests: \(status.connections.bufferedRequestBytes) bytes
            """)
    }
}
