import Synchronization

/// Admits client writes while the node is the master, and counts the ones under way.
///
/// One atomic word: a closed bit and the number of writes admitted and not yet logged. A
/// switchover closes the gate, then waits for the count to reach zero: from then on the log's
/// last LSN is final, every write before it is logged, and none can follow. Open and closed cost
/// a write the same two atomic adds, with no lock.
public final class WriteGate: Sendable {
    private static let closedBit = 1 << 62
    private let state = Atomic<Int>(0)

    public init() {}

    /// Admits a write (then `leave()` once it is logged or refused), or returns false when closed.
    func enter() -> Bool {
        let after = state.wrappingAdd(1, ordering: .acquiring).newValue
        guard after & Self.closedBit == 0 else {
            leave()
            return false
        }
        return true
    }

    func leave() {
        state.wrappingSubtract(1, ordering: .releasing)
    }

    func close() {
        state.bitwiseOr(Self.closedBit, ordering: .acquiringAndReleasing)
    }

    func open() {
        state.bitwiseAnd(~Self.closedBit, ordering: .acquiringAndReleasing)
    }

    var isOpen: Bool { state.load(ordering: .acquiring) & Self.closedBit == 0 }

    /// Writes admitted and not yet logged.
    var inFlight: Int { state.load(ordering: .acquiring) & ~Self.closedBit }
}
