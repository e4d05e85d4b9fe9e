import ErdtreeStorage
import ErdtreeWAL
import NIOCore

extension KVEngine {
    /// A write a client asked for, decoded and validated by the service.
    enum Write: Sendable {
        /// `expiresAtMs` is absolute (Unix ms), 0 for no expiry.
        case set(key: [UInt8], value: [UInt8], expiresAtMs: Int64)
        case delete(key: [UInt8])
    }

    /// What a write did.
    struct Written: Sendable, Equatable {
        /// The LSN it was logged at; 0 when it wrote nothing (a delete of a missing key).
        var lsn: UInt64
        /// For a delete, whether a live key was removed; false for a set.
        var deleted: Bool
        /// The epoch of the history when it was logged.
        var epoch: UInt64
    }

    /// Logs `write`, applies it, then calls `completion` on `eventLoop` with its LSN.
    ///
    /// Called by the KVStore service on the event loop of the call, which it passes as
    /// `eventLoop`. The write is applied inside the log's completion, on the committing thread
    /// before the log counts it completed, so compaction (which judges only completed records)
    /// sees every logged write in the store, and `appliedLSN` never runs ahead of the store.
    ///
    /// How the record reaches the disk is the engine's business. Under an interval sync policy
    /// the event loop commits its turn's writes itself once every request it read in this turn
    /// is queued: one group commit per turn, one `write`, no hand-off to the writer thread and
    /// back. Under `always` the writer thread writes and fsyncs each batch (an fsync must not hold
    /// up an event loop), and `completion` hops back to `eventLoop`.
    ///
    /// `completion` runs inline, before this returns, when nothing is logged: the write gate is
    /// closed (`.writesClosed`: not the master, or handing the role over), a new key refused
    /// under noeviction (`.storeFull`), a delete of a missing key (`Written(lsn: 0, deleted:
    /// false)`: it takes no LSN, as the proto says), or a closed log (`.notLogged(.closed)`).
    func write(
        _ write: Write, on eventLoop: any EventLoop,
        completion: @escaping @Sendable (Result<Written, NodeError>) -> Void
    ) {
        guard self.write(write, on: eventLoop, responder: WriteClosure(body: completion)) else {
            return completion(.failure(.writesClosed))
        }
    }

    /// `write(_:on:completion:)`, telling `responder` how it ended. The KVStore service answers
    /// through a responder, which the log's completion holds inline: a closure of its own would
    /// be one more allocation per write (measured: ~300 instructions of a Set's ~29k).
    ///
    /// - Returns: false, telling `responder` nothing, when the write gate is closed: the caller
    ///   holds or refuses the write (`RoleManager.writeBlocked`), and only then pays for keeping it.
    @discardableResult
    func write<Responder: WriteResponder>(_ write: Write, on eventLoop: any EventLoop, responder: Responder) -> Bool {
        guard writeGate.enter() else { return false }
        // One clock read serves the refusal checks, the record's timestamp and its apply.
        let nowMs = WallClock.nowMs()
        let record: WALRecord
        let key: StoreKey
        switch write {
        case .set(let keyBytes, let value, let expiresAtMs):
            key = StoreKey(keyBytes)
            // Under noeviction a new key past storage.max_entries is refused before it is logged.
            do {
                try store.admit(key, nowMs: nowMs)
            } catch {
                writeGate.leave()
                responder.written(.failure(.storeFull(error)))
                return true
            }
            record = WALRecord(
                lsn: 0, timestampMs: nowMs, op: .set, expiresAtMs: expiresAtMs, key: keyBytes, value: value)
        case .delete(let keyBytes):
            key = StoreKey(keyBytes)
            guard store.get(key, nowMs: nowMs) != nil else {
                writeGate.leave()
                responder.written(.success(Written(lsn: 0, deleted: false, epoch: epochs.current)))
                return true
            }
            record = WALRecord(lsn: 0, timestampMs: nowMs, op: .delete, expiresAtMs: 0, key: keyBytes, value: [])
        }
        let claimed = wal.append(
            op: record.op, key: record.key, value: record.value, expiresAtMs: record.expiresAtMs,
            timestampMs: record.timestampMs, byCaller: callersCommit
        ) { [self] result in
            let outcome: Result<Written, NodeError>
            switch result {
            case .success(let appended):
                var logged = record
                logged.lsn = appended.lsn
                let changed = Self.apply(logged, key: key, at: appended.location, to: store, nowMs: nowMs)
                appliedWaiters.advance(to: appended.lsn)
                outcome = .success(
                    Written(lsn: appended.lsn, deleted: record.op == .delete && changed, epoch: epochs.current))
            case .failure(let error):
                outcome = .failure(.notLogged(error))
            }
            writeGate.leave()
            if eventLoop.inEventLoop {
                responder.written(outcome)
            } else {
                eventLoop.execute { responder.written(outcome) }
            }
        }
        // The first write of the turn queues the commit behind every request already read.
        if claimed { eventLoop.execute { [wal] in wal.commitQueued() } }
        return true
    }
}

/// Who hears how a write ended, on the event loop the write named.
protocol WriteResponder: Sendable {
    func written(_ result: Result<KVEngine.Written, NodeError>)
}

/// A closure as a `WriteResponder`, for callers that hold nothing else.
private struct WriteClosure: WriteResponder {
    let body: @Sendable (Result<KVEngine.Written, NodeError>) -> Void

    func written(_ result: Result<KVEngine.Written, NodeError>) { body(result) }
}

extension KVEngine {
    /// Starts epoch `epoch` at the log's next LSN: logs its epoch marker and applies it, then
    /// calls `completion` with where it starts. A promotion; the caller keeps the write gate
    /// closed until this completes, so the marker is the first record of the new epoch.
    func startEpoch(_ epoch: UInt64, completion: @escaping @Sendable (Result<EpochStart, NodeError>) -> Void) {
        let marker = WALRecord.epochMarker(epoch, timestampMs: WallClock.nowMs())
        wal.append(
            op: marker.op, key: marker.key, value: marker.value, expiresAtMs: 0, timestampMs: marker.timestampMs,
            byCaller: false
        ) { [self] result in
            switch result {
            case .success(let appended):
                var logged = marker
                logged.lsn = appended.lsn
                Self.apply(logged, at: appended.location, to: store, epochs: epochs, nowMs: marker.timestampMs)
                appliedWaiters.advance(to: appended.lsn)
                completion(.success(EpochStart(epoch: epoch, firstLSN: appended.lsn)))
            case .failure(let error):
                completion(.failure(.notLogged(error)))
            }
        }
    }
}
