import ErdtreeSync
import Synchronization

/// Where one epoch of a history begins: the LSN of its epoch marker.
public struct EpochStart: Sendable, Equatable, CustomStringConvertible {
    public var epoch: UInt64
    public var firstLSN: UInt64

    public init(epoch: UInt64, firstLSN: UInt64) {
        self.epoch = epoch
        self.firstLSN = firstLSN
    }

    public var description: String { "epoch \(epoch) from LSN \(firstLSN)" }
}

/// The epochs of this node's history after epoch 1, rebuilt from the epoch markers in its log
/// (recovery, replication and snapshots all apply them through `KVEngine.apply`).
///
/// PostgreSQL keeps a timeline history file for the same purpose; here the markers in the log are
/// the history, so there is no second file to keep in step with it.
final class EpochHistory: Sendable {
    private let starts = Locked<[EpochStart]>([])
    /// The newest epoch, read by every write's answer: an atomic, not the lock.
    private let newest = Atomic<UInt64>(1)

    /// Epochs after 1, oldest first.
    var epochs: [EpochStart] { starts.withLock { $0 } }

    /// The epoch of the newest marker, or 1.
    var current: UInt64 { newest.load(ordering: .acquiring) }

    /// A marker was applied. Markers arrive in LSN order; one already known (a replay) or one
    /// that does not raise the epoch changes nothing.
    func record(_ start: EpochStart) {
        starts.withLock { starts in
            guard start.epoch > (starts.last?.epoch ?? 1), start.firstLSN > (starts.last?.firstLSN ?? 0) else {
                return
            }
            starts.append(start)
            newest.store(start.epoch, ordering: .releasing)
        }
    }

    /// The epoch `lsn` belongs to.
    func epoch(at lsn: UInt64) -> UInt64 {
        starts.withLock { starts in starts.last { $0.firstLSN <= lsn }?.epoch ?? 1 }
    }

    /// Forgets everything: the log is about to be replayed or replaced.
    func removeAll() {
        starts.withLock { starts in
            starts.removeAll()
            newest.store(1, ordering: .releasing)
        }
    }

    /// The last LSN that `mine` (ending at `myLastLSN`) and `theirs` (ending at `theirLastLSN`)
    /// hold in the same epoch: up to it, both logs are the same history, since an LSN's record is
    /// fixed by the epoch it was written in (raft's log matching rule, with epochs for terms).
    ///
    /// Walks both lists of epoch starts (each with epoch 1 from LSN 1 in front) while they agree;
    /// the shared stretch ends where either's epoch ends first.
    static func branchPoint(
        mine: [EpochStart], myLastLSN: UInt64, theirs: [EpochStart], theirLastLSN: UInt64
    ) -> UInt64 {
        let a = [EpochStart(epoch: 1, firstLSN: 1)] + mine
        let b = [EpochStart(epoch: 1, firstLSN: 1)] + theirs
        var shared: UInt64 = 0
        for index in 0..<min(a.count, b.count) {
            guard a[index] == b[index] else { break }
            let endA = index + 1 < a.count ? a[index + 1].firstLSN - 1 : myLastLSN
            let endB = index + 1 < b.count ? b[index + 1].firstLSN - 1 : theirLastLSN
            shared = min(endA, endB)
            guard endA == endB, index + 1 < a.count, index + 1 < b.count else { break }
        }
        return min(shared, myLastLSN, theirLastLSN)
    }
}
