import ErdtreeRPC
import Glibc
import Prometheus

/// What a scrape reads the node's state from.
struct ScrapeSource: Sendable {
    let admin: AdminService
}

/// The series a scrape sets from the node's state. Each scrape asks the registry for them by
/// name (it hands back the registered one): a few dozen lookups under its lock, once per scrape.
struct ScrapeState {
    /// The per-slave series now exported, so a slave that left loses them.
    private var slaves: [String: [Gauge]] = [:]

    private typealias Labels = [(String, String)]

    mutating func update(from source: ScrapeSource, registry: PrometheusCollectorRegistry) {
        let status = source.admin.status(includingDeadBytes: false)
        func gauge(_ name: String, _ unit: String, _ help: String, _ labels: Labels = [], _ value: Double) {
            registry.makeGauge(descriptor: NodeMetrics.name(name, unit, help), labels: labels).set(value)
        }
        // Totals the node keeps itself: the counter is made to show them (scrapes are serial).
        func total(_ name: String, _ help: String, _ value: UInt64) {
            let counter = registry.makeCounter(descriptor: NodeMetrics.name(name, "total", help))
            counter.reset()
            counter.increment(by: Int64(clamping: value))
        }

        let lsnHelp = "Log positions: last written, applied (visible to reads), durable (fsynced)."
        gauge("lsn", "", lsnHelp, [("kind", "last")], Double(status.positions.lastLSN))
        gauge("lsn", "", lsnHelp, [("kind", "applied")], Double(status.positions.appliedLSN))
        gauge("lsn", "", lsnHelp, [("kind", "durable")], Double(status.positions.durableLSN))

        gauge("store_keys", "", "Keys in the store.", [], Double(status.store.keys))
        gauge(
            "store_resident_values", "", "Values held in memory (the rest are read back from the log).", [],
            Double(status.store.residentValues))
        gauge("store_data", "bytes", "Bytes of keys and values held in memory.", [], Double(status.store.memoryBytes))
        total("store_expired_keys", "Expired keys the sweeper reclaimed.", status.store.expiredReclaimed)
        // Not a figure `erdtree status` shows, so read from the store itself.
        total(
            "store_evictions", "Values evicted from memory to stay within storage.max_entries (LRU).",
            source.admin.engine.store.evictions)
        total("store_disk_reads", "Gets answered by reading an evicted value from the log.", status.store.diskReads)

        gauge("wal_segments", "", "Segment files of the write-ahead log.", [], Double(status.log.segments))
        gauge("wal_disk", "bytes", "Bytes the write-ahead log takes on disk.", [], Double(status.log.diskBytes))
        total("wal_compactions", "Log compactions finished.", status.log.compactions)

        let role = source.admin.roles.role
        for name in ["master", "slave", "handing_over", "fenced", "electing"] {
            gauge(
                "role", "", "1 for the role the node has now, 0 for the others.", [("role", name)],
                name == Self.label(role) ? 1 : 0)
        }
        gauge(
            "epoch", "", "The epoch of the node's history (it grows at each promotion).", [],
            Double(status.identity.epoch))
        total(
            "promotions",
            "Times this node became master since it started (Admin.Promote, a switchover to it, etcd after a failover).",
            source.admin.roles.promotions)

        total(
            "connections_rejected", "Connections closed on accept: server.max_connections were open.",
            status.connections.rejected)
        total(
            "connections_closed_for_abuse",
            "Connections closed for a protocol violation, a flood, or a handshake not finished in time.",
            status.connections.closedForAbuse)
        total(
            "requests_refused_for_memory", "Requests refused RESOURCE_EXHAUSTED at a buffered-bytes cap.",
            status.connections.requestsRefusedForMemory)
        gauge(
            "request_buffered", "bytes", "Request bytes received and not yet handed to handlers.", [],
            Double(status.connections.bufferedRequestBytes))
        let tls = source.admin.serverStatistics
        let handshakeHelp = "TLS handshakes on the server port (server.tls), by result."
        for (result, count) in [("ok", tls.tlsHandshakes), ("failed", tls.tlsHandshakesFailed)] {
            let counter = registry.makeCounter(
                descriptor: NodeMetrics.name("tls_handshakes", "total", handshakeHelp), labels: [("result", result)])
            counter.reset()
            counter.increment(by: Int64(count))
        }

        replication(source, status: status, registry: registry, gauge: gauge, total: total)
        ProcessFigures.read()?.set(registry: registry, gauge: gauge)
    }

    /// A slave's own lag; on a master, connected slaves and each one's position and lag.
    private mutating func replication(
        _ source: ScrapeSource, status: NodeStatus, registry: PrometheusCollectorRegistry,
        gauge: (String, String, String, Labels, Double) -> Void, total: (String, String, UInt64) -> Void
    ) {
        let lagEntriesHelp = "LSNs the slave is behind its master (on a slave: its own lag)."
        let lagSecondsHelp = "How long the slave has been behind its master, or out of touch with it."
        gauge("replication_lag_entries", "", lagEntriesHelp, [], Double(status.lag.entries))
        gauge("replication_lag", "seconds", lagSecondsHelp, [], Double(status.lag.ms) / 1000)
        let roles = source.admin.roles
        // Kept by the replicator a slave follows its master with: they restart from 0 when it
        // follows another master (Prometheus reads that as a counter reset).
        let replicator = roles.isMaster ? nil : roles.replicator
        total(
            "replication_reconnects", "Times this slave dialled its master again.", replicator?.reconnects ?? 0)
        total(
            "replication_full_resyncs", "Full resyncs (the master's snapshot) this slave went through.",
            replicator?.fullResyncs ?? 0)
        let listed = roles.isMaster ? roles.hub.listing(lastLSN: status.positions.lastLSN).filter(\.connected) : []
        gauge("replication_connected_slaves", "", "Slaves streaming from this master.", [], Double(listed.count))
        let slaveHelp = "Per connected slave (on its master): "
        var now: [String: [Gauge]] = [:]
        for slave in listed {
            let labels = [("slave", slave.slaveID)]
            let series = [
                ("replication_slave_acked_lsn", "", slaveHelp + "the LSN it acknowledged applying.", slave.appliedLSN),
                ("replication_slave_lag_entries", "", slaveHelp + lagEntriesHelp, slave.lagEntries),
            ].map { name, unit, help, value in
                let gauge = registry.makeGauge(descriptor: NodeMetrics.name(name, unit, help), labels: labels)
                gauge.set(Double(value))
                return gauge
            }
            let seconds = registry.makeGauge(
                descriptor: NodeMetrics.name("replication_slave_lag", "seconds", slaveHelp + lagSecondsHelp),
                labels: labels)
            seconds.set(Double(slave.lagMs) / 1000)
            now[slave.slaveID] = series + [seconds]
        }
        for (id, gauges) in slaves where now[id] == nil {
            for gauge in gauges { registry.unregisterGauge(gauge) }
        }
        slaves = now
    }

    static func label(_ role: RoleManager.Role) -> String {
        switch role {
        case .master: "master"
        case .handingOver: "handing_over"
        case .slave: "slave"
        case .fenced: "fenced"
        case .electing: "electing"
        }
    }
}

/// The process's own figures, read from /proc at each scrape (swift-prometheus has no process
/// collector on Linux).
struct ProcessFigures {
    var residentBytes: Double
    var cpuSeconds: Double
    var startTimeSeconds: Double
    var openFDs: Double

    static func read() -> ProcessFigures? {
        guard let stat = readFile("/proc/self/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after the command name, which may hold spaces: state is field 3, utime 14,
        // stime 15, starttime 22, rss 24 (proc(5)).
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 22, let utime = Double(fields[11]), let stime = Double(fields[12]),
            let start = Double(fields[19]), let rss = Double(fields[21])
        else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let boot =
            readFile("/proc/stat")?.split(separator: "\n").first { $0.hasPrefix("btime ") }
            .flatMap { Double($0.dropFirst(6)) } ?? 0
        return ProcessFigures(
            residentBytes: rss * Double(sysconf(Int32(_SC_PAGESIZE))), cpuSeconds: (utime + stime) / ticks,
            startTimeSeconds: boot + start / ticks, openFDs: Double(countOpenFDs()))
    }

    func set(registry: PrometheusCollectorRegistry, gauge: (String, String, String, [(String, String)], Double) -> Void)
    {
        gauge("process_resident_memory", "bytes", "Resident memory of the process.", [], residentBytes)
        gauge("process_open_fds", "", "File descriptors the process holds open.", [], openFDs)
        gauge(
            "process_start_time", "seconds", "When the process started, in seconds since the Unix epoch.", [],
            startTimeSeconds)
        // A total, but kept by the kernel: the counter is made to show it.
        let cpu = registry.makeCounter(
            descriptor: NodeMetrics.name("process_cpu", "seconds_total", "User and system CPU time the process used."))
        cpu.reset()
        cpu.increment(by: cpuSeconds)
    }

    private static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count <= 0 { break }
            bytes += chunk.prefix(count)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Entries of /proc/self/fd, less the one `opendir` itself holds.
    private static func countOpenFDs() -> Int {
        guard let directory = opendir("/proc/self/fd") else { return 0 }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { $0.first }
            if name != UInt8(ascii: ".") { count += 1 }
        }
        return max(count - 1, 0)
    }
}
