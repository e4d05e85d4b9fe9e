import ErdtreeRPC
import ErdtreeWAL
import Logging
import NIOCore
import Synchronization

/// The master's side of `erdtree.v1.Replication/Replicate`: one `SlaveStream` per connected
/// slave, each fed from the WAL.
///
/// Entries are never copied into per-slave queues: each stream remembers the last LSN it sent
/// and reads what follows from the log when the log commits (the WAL's commit observer wakes
/// every stream) and its connection has room. A slave that stops reading therefore costs the
/// master one bounded send buffer, never the writes of others; one that stays stuck past
/// `stallTimeout` is dropped and catches up from disk when it reconnects.
public final class ReplicationHub: Sendable {
    public static let serviceName = "erdtree.v1.Replication"

    struct Settings: Sendable {
        /// Heartbeat period while a stream has nothing to send.
        var heartbeatInterval: Duration = .seconds(1)
        /// Bytes queued on a slave's connection above which no more batches are read for it.
        var sendBufferBytes = 4 << 20
        /// How long a slave may keep its buffer full before it is dropped.
        var stallTimeout: Duration = .seconds(10)
        /// Entries per batch read from the log.
        var batchEntries = 1000
    }

    let wal: WriteAheadLog
    let settings: Settings
    let logger: Logger
    private let streams = Mutex<[ObjectIdentifier: SlaveStream]>([:])

    init(wal: WriteAheadLog, settings: Settings = Settings(), logger: Logger) {
        self.wal = wal
        self.settings = settings
        self.logger = logger
        wal.onCommit { [weak self] _ in self?.wakeAll() }
    }

    public func register(in router: inout RPCRouter) {
        router.register(
            "/erdtree.v1.Replication/Replicate",
            .bidirectional { [self] call in
                let stream = SlaveStream(call: call, hub: self)
                streams.withLock { $0[ObjectIdentifier(stream)] = stream }
                stream.start()
            })
    }

    /// The connected slaves, as `ListSlaves` reports them.
    var slaves: [SlaveStream.Info] {
        streams.withLock { Array($0.values) }.compactMap(\.info).sorted { $0.slaveID < $1.slaveID }
    }

    func remove(_ stream: SlaveStream) {
        streams.withLock { $0[ObjectIdentifier(stream)] = nil }
    }

    private func wakeAll() {
        for stream in streams.withLock({ Array($0.values) }) { stream.wake() }
    }
}
