import Atomics
import ErdtreeRPC
import ErdtreeSync
import ErdtreeWAL
import Prometheus
import Synchronization

/// A node's Prometheus metrics (DESIGN §12, docs/metrics.md): the registry, what the server and
/// the log report as they work, and what `/metrics` reads at each scrape.
///
/// Two kinds of figures. Events (calls, connections, log writes and fsyncs) are counted as they
/// happen, through swift-prometheus's atomic counters and histograms reached without a lookup
/// (a call's through its route). State (positions, sizes, role, replication, the process) is
/// read at scrape time from what `erdtree status` reads (`AdminService.status`), all of it O(1)
/// or O(slaves), so a scrape never walks the store and can run on an event loop.
public final class NodeMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    /// `auth.metrics: token`.
    public let metricsNeedToken: Bool
    private let connections: [Gauge]
    private let wal: WALMetrics
    private let unrouted: MethodRecorder
    /// Read at scrape time; set once the services exist (after the engine, which needs `wal`).
    private let source = Locked<ScrapeSource?>(nil)
    /// One scrape at a time: the mirrored totals and per-slave series are updated, then emitted.
    private let scrapeLock = Locked(ScrapeState())

    public init(metricsNeedToken: Bool) {
        self.metricsNeedToken = metricsNeedToken
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        connections = RPCConnectionProtocol.allCases.map { kind in
            registry.makeGauge(
                descriptor: Self.name("connections", "", "Open connections, by the HTTP version they speak."),
                labels: [("protocol", kind.label)])
        }
        wal = WALMetrics(registry: registry)
        unrouted = MethodRecorder(registry: registry, service: "unknown", method: "unknown")
    }

    /// What the log's writer reports to.
    public var walObserver: any WALObserver { wal }

    /// Where the scrape reads the node's state from; called once the services exist.
    func attach(admin: AdminService) {
        source.withLock { $0 = ScrapeSource(admin: admin) }
    }

    static func name(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "erdtree", metricName: name, unitName: unit, helpText: help)
    }

    /// Latency buckets in seconds: fine where Gets and Sets land (100 µs to 2.5 ms), coarse up to
    /// 10 s (a call held by `min_acks`). Few, since every call walks them all.
    static let latencyBuckets: [Double] = [0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.01, 0.05, 0.25, 1, 10]
}

// MARK: Calls and connections

extension NodeMetrics: RPCObserver {
    public func recorder(forMethod path: String) -> any RPCMethodRecorder {
        let (service, method) = Self.labels(forPath: path)
        return MethodRecorder(registry: registry, service: service, method: method)
    }

    public var unroutedRecorder: any RPCMethodRecorder { unrouted }

    public func connectionOpened(_ kind: RPCConnectionProtocol) { connections[kind.rawValue].increment() }
    public func connectionClosed(_ kind: RPCConnectionProtocol) { connections[kind.rawValue].decrement() }

    public func exposition() -> [UInt8] {
        let source = self.source.withLock { $0 }
        return scrapeLock.withLock { state in
            if let source { state.update(from: source, registry: registry) }
            return registry.emitToBuffer()
        }
    }

    /// `service` and `method` of a route's path (`/erdtree.v1.KVStore/Get`). Only paths the router
    /// serves get here, so the label values are as many as the routes.
    static func labels(forPath path: String) -> (service: String, method: String) {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        guard parts.count == 2 else { return ("unknown", "unknown") }
        return (String(parts[0]), String(parts[1]))
    }
}

/// One method's counters by code and protocol, and its latency histogram.
///
/// A counter is registered the first time its code shows up (a method that never fails
/// exports no zero series for every code), then reached through a lock-free lazy reference.
final class MethodRecorder: RPCMethodRecorder {
    private static let codes = 17
    private let registry: PrometheusCollectorRegistry
    private let service: String
    private let method: String
    private let counters: [ManagedAtomicLazyReference<Counter>]
    /// In seconds, as a `Double` histogram: `Histogram<Duration>` compares `Duration`s through
    /// libswiftCore calls, ~40 instructions a bucket on every call (callgrind, per Get).
    private let duration: ValueHistogram

    init(registry: PrometheusCollectorRegistry, service: String, method: String) {
        self.registry = registry
        self.service = service
        self.method = method
        counters = (0..<(Self.codes * RPCCallProtocol.allCases.count)).map { _ in ManagedAtomicLazyReference() }
        duration = registry.makeValueHistogram(
            descriptor: NodeMetrics.name(
                "rpc_duration", "seconds", "RPC latency from the request head to the final status, by method."),
            labels: [("service", service), ("method", method)], buckets: NodeMetrics.latencyBuckets)
    }

    func finished(code: RPCStatus.Code, protocol kind: RPCCallProtocol, nanoseconds: Int64) {
        // A code outside the canonical 17 is counted as UNKNOWN: labels stay bounded.
        let code = (0..<Self.codes).contains(code.rawValue) ? code : .unknown
        let slot = counters[kind.rawValue * Self.codes + code.rawValue]
        let counter =
            slot.load()
            ?? slot.storeIfNilThenLoad(
                registry.makeCounter(
                    descriptor: NodeMetrics.name(
                        "rpc_requests", "total", "RPCs that ended, by method, status code and protocol."),
                    labels: [("service", service), ("method", method), ("code", "\(code)"), ("protocol", kind.label)]
                ))
        counter.increment()
        duration.record(Double(nanoseconds) / 1e9)
    }
}

// MARK: The log

/// Counted on the log's write path: once per write call and per fsync, never per record.
final class WALMetrics: WALObserver {
    private let appends: Counter
    private let bytes: Counter
    private let batch: ValueHistogram
    private let fsync: DurationHistogram

    init(registry: PrometheusCollectorRegistry) {
        appends = registry.makeCounter(
            descriptor: NodeMetrics.name("wal_appends", "total", "Records written to the write-ahead log."))
        bytes = registry.makeCounter(
            descriptor: NodeMetrics.name("wal_written_bytes", "total", "Bytes written to the write-ahead log."))
        batch = registry.makeValueHistogram(
            descriptor: NodeMetrics.name(
                "wal_batch", "records", "Records per write to the log (a group commit, split at rotations)."),
            buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096])
        fsync = registry.makeDurationHistogram(
            descriptor: NodeMetrics.name("wal_fsync_duration", "seconds", "Time the log's fsyncs took."),
            buckets: [
                .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5),
                .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
                .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
            ])
    }

    func wrote(records: Int, bytes: Int) {
        appends.increment(by: Int64(records))
        self.bytes.increment(by: Int64(bytes))
        batch.record(Double(records))
    }

    func synced(duration: Duration) {
        fsync.record(duration)
    }
}
