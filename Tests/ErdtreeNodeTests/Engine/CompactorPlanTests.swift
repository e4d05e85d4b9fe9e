import ErdtreeWAL
import Testing

@testable import ErdtreeNode

/// Which segments the compactor picks: never the active one, never the newest `retention` of
/// sealed log, and only once half of what it would rewrite is dead.
@Suite struct CompactorPlanTests {
    /// Segments of `bytes` each (records + the 40-byte header), numbered 1…, the last one active.
    private func segments(_ count: Int, bytes: Int64 = 1040) -> [WALSegmentInfo] {
        (0..<count).map { index in
            WALSegmentInfo(
                id: UInt32(index + 1), firstLSN: UInt64(index * 100 + 1), bytes: bytes, compacted: false,
                active: index == count - 1)
        }
    }

    private func live(_ bytes: Int64, in ids: ClosedRange<UInt32>) -> [UInt32: Int64] {
        Dictionary(uniqueKeysWithValues: ids.map { ($0, bytes) })
    }

    @Test func allDeadOldSegmentsAreCompactedButNotTheRetainedOnesOrTheActiveOne() {
        // 6 sealed + 1 active; retention keeps the newest 2 sealed (2 x 1040 <= 2100).
        let plan = Compactor.plan(segments: segments(7), live: [:], retentionBytes: 2100, minDeadBytes: 1000)
        #expect(plan == Compactor.Plan(count: 4, recordBytes: 4000, deadBytes: 4000))
    }

    @Test func lessThanHalfDeadWaits() {
        let mostlyLive = live(600, in: 1...4)
        #expect(Compactor.plan(segments: segments(7), live: mostlyLive, retentionBytes: 2100, minDeadBytes: 1) == nil)
        let halfDead = live(500, in: 1...4)
        #expect(
            Compactor.plan(segments: segments(7), live: halfDead, retentionBytes: 2100, minDeadBytes: 1)?.count == 4)
    }

    @Test func tooFewDeadBytesWait() {
        #expect(Compactor.plan(segments: segments(3), live: [:], retentionBytes: 1040, minDeadBytes: 5000) == nil)
    }

    @Test func everythingWithinRetentionIsKept() {
        #expect(Compactor.plan(segments: segments(7), live: [:], retentionBytes: 1 << 30, minDeadBytes: 1) == nil)
        #expect(Compactor.plan(segments: segments(1), live: [:], retentionBytes: 1, minDeadBytes: 1) == nil)
    }

    @Test func aSegmentLargerThanRetentionIsNotRetained() {
        // The newest sealed segment alone exceeds retention: nothing is retained.
        let plan = Compactor.plan(segments: segments(3, bytes: 5000), live: [:], retentionBytes: 4000, minDeadBytes: 1)
        #expect(plan?.count == 2)
    }
}
