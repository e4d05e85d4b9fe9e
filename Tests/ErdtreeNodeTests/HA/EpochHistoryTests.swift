import Testing

@testable import ErdtreeNode

/// Where two histories branch: the last LSN both hold in the same epoch.
@Suite struct EpochHistoryTests {
    private static func starts(_ pairs: [(UInt64, UInt64)]) -> [EpochStart] {
        pairs.map { EpochStart(epoch: $0.0, firstLSN: $0.1) }
    }

    static let cases:
        [(
            mine: [(UInt64, UInt64)], myLast: UInt64, theirs: [(UInt64, UInt64)], theirLast: UInt64,
            branch: UInt64, why: String
        )] = [
            ([], 100, [], 60, 60, "same epoch, slave behind: nothing diverges"),
            ([], 100, [], 100, 100, "same epoch, caught up"),
            ([], 100, [], 130, 100, "same epoch, slave ahead (the master lost its tail): cut at the master's end"),
            ([(2, 101)], 200, [], 150, 100, "the slave's epoch 1 ran past where the master's ended: an old master"),
            ([(2, 101)], 200, [], 100, 100, "the slave stopped exactly where epoch 1 ended"),
            ([(2, 101)], 200, [(2, 101)], 150, 150, "both in epoch 2, slave behind"),
            ([(2, 101)], 200, [(2, 120)], 150, 100, "two different promotions to epoch 2: only epoch 1 is shared"),
            ([(2, 101), (3, 181)], 200, [(2, 101)], 190, 180, "the slave missed epoch 3's start"),
            ([], 100, [(2, 51)], 80, 50, "the slave knows a newer epoch the master never saw"),
            ([(2, 1)], 10, [], 40, 0, "promoted from an empty log: nothing is shared"),
        ]

    @Test(arguments: cases)
    func branchPoint(
        _ example: (
            mine: [(UInt64, UInt64)], myLast: UInt64, theirs: [(UInt64, UInt64)], theirLast: UInt64,
            branch: UInt64, why: String
        )
    ) {
        let branch = EpochHistory.branchPoint(
            mine: Self.starts(example.mine), myLastLSN: example.myLast, theirs: Self.starts(example.theirs),
            theirLastLSN: example.theirLast)
        #expect(branch == example.branch, "\(example.why)")
    }

    @Test func markersRaiseTheEpochInLSNOrderAndReplaysAreIgnored() {
        let history = EpochHistory()
        #expect(history.current == 1)
        history.record(EpochStart(epoch: 2, firstLSN: 10))
        history.record(EpochStart(epoch: 2, firstLSN: 10))  // replayed
        history.record(EpochStart(epoch: 1, firstLSN: 20))  // never raises it back
        history.record(EpochStart(epoch: 4, firstLSN: 30))
        #expect(history.epochs == Self.starts([(2, 10), (4, 30)]))
        #expect(history.current == 4)
        #expect([1, 9, 10, 29, 30, 99].map(history.epoch(at:)) == [1, 1, 2, 2, 4, 4])
        history.removeAll()
        #expect(history.current == 1 && history.epochs.isEmpty)
    }
}

/// The write gate: writes get in while it is open, and a closer can wait for the ones inside.
@Suite struct WriteGateTests {
    @Test func countsWritesInsideAndRefusesWhileClosed() {
        let gate = WriteGate()
        #expect(gate.enter() && gate.enter())
        #expect(gate.inFlight == 2)
        gate.close()
        #expect(!gate.enter(), "closed: refused")
        #expect(gate.inFlight == 2, "a refused write is not counted")
        gate.leave()
        gate.leave()
        #expect(gate.inFlight == 0 && !gate.isOpen)
        gate.open()
        #expect(gate.enter() && gate.isOpen)
    }

    /// Under a lease nothing gets in past its deadline, open or not: a master stopped for longer
    /// than its lease refuses what it reads when it wakes.
    @Test func nothingGetsInPastTheLease() {
        let gate = WriteGate()
        gate.holdLease(until: .now + .seconds(60))
        #expect(gate.withinLease && gate.enter())
        gate.leave()
        gate.holdLease(until: .now - .milliseconds(1))
        #expect(!gate.withinLease && !gate.enter())
        #expect(gate.isOpen && gate.inFlight == 0, "the lease is not the closed bit, and a refusal is not counted")
        gate.holdLease(until: nil)
        #expect(gate.withinLease && gate.enter())
    }
}
