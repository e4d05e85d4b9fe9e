import ErdtreeSync
import NIOCore
import Synchronization

/// Reclaims expired keys in the background, like Redis's active expire cycle.
///
/// Reads already hide an expired key; this frees its memory even if nobody reads it again.
/// Every `interval` it sweeps the earliest deadlines of every shard, a bounded number per
/// shard per pass, and keeps going only while passes find work and the tick's time budget
/// lasts, so a burst of expiries never stalls the event loop it runs on.
public final class ExpirySweeper: Sendable {
    public static let interval = TimeAmount.milliseconds(100)
    static let deadlinesPerShardPerPass = 20
    static let budget = Duration.milliseconds(5)

    private let engine: KVEngine
    private let reclaimed = Atomic<UInt64>(0)
    private let task: Locked<RepeatedTask?> = Locked(nil)

    /// Built by `ServerNode`, which calls `start` once, on one of its event loops.
    public init(engine: KVEngine) {
        self.engine = engine
    }

    /// Keys removed by the sweep since start (reads that find an expired key remove it too,
    /// and are not counted here).
    public var expiredReclaimed: UInt64 { reclaimed.load(ordering: .relaxed) }

    public func start(on eventLoop: any EventLoop) {
        let repeated = eventLoop.scheduleRepeatedTask(initialDelay: Self.interval, delay: Self.interval) {
            [self] _ in
            sweepOnce()
        }
        task.withLock { $0 = repeated }
    }

    public func stop() {
        task.withLock { task in
            task?.cancel()
            task = nil
        }
    }

    /// One tick: passes over all shards until one finds nothing or the budget is spent.
    /// - Returns: how many keys were removed.
    @discardableResult
    func sweepOnce() -> Int {
        let clock = ContinuousClock()
        let deadline = clock.now + Self.budget
        var total = 0
        while true {
            let removed = engine.sweepExpired(nowMs: WallClock.nowMs(), maxPerShard: Self.deadlinesPerShardPerPass)
            total += removed
            if removed == 0 || clock.now >= deadline { break }
        }
        if total > 0 { reclaimed.add(UInt64(total), ordering: .relaxed) }
        return total
    }
}
