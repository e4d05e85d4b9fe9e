import Synchronization

/// Admin.Failover, the planned switchover (docs/high-availability.md, "Switchover"): the master
/// holds writes, waits until the target has every one, promotes it over the replication stream,
/// and follows it; on timeout nothing changes.
extension RoleManager {
    /// Admin.Failover: hands the master's role to a slave without losing a write.
    func failover(to name: String, timeout: Duration) async throws(NodeError) -> FailoverResponse {
        let target = try state.withLock { state throws(NodeError) -> SlaveStream.Info in
            guard !state.changing else { throw .roleChangeUnderWay }
            switch state.role {
            case .master: break
            case .handingOver: throw .roleChangeUnderWay
            case .slave(let master): throw .slavesManagedOnMaster(method: "Failover", masterAddress: master)
            case .fenced(let epoch): throw .steppedDown(epoch: epoch)
            case .electing: throw .noMasterYet
            }
            let slaves = hub.slaves
            let chosen =
                name.isEmpty
                ? slaves.max { ($0.appliedLSN, $0.slaveID) < ($1.appliedLSN, $1.slaveID) }
                : slaves.first { $0.slaveID == name || $0.address == name }
            guard let chosen else {
                if name.isEmpty { throw .noSlaveToPromote }
                throw .unknownSlave(name, connected: slaves.map(\.slaveID))
            }
            state.changing = true
            state.role = .handingOver(target: chosen.address)
            return chosen
        }
        let started = ContinuousClock.now
        let deadline = started + timeout
        engine.writeGate.close()
        logger.warning("switchover: holding writes", metadata: ["target": "\(target.address)"])

        // Every admitted write logged: the last LSN is final.
        while engine.writeGate.inFlight > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .microseconds(200))
        }
        let lastLSN = engine.lastLSN
        var acked: UInt64 = 0
        while true {
            guard let info = hub.slaves.first(where: { $0.slaveID == target.slaveID }) else {
                return try resume(after: .switchoverTargetLeft(target: target.address))
            }
            acked = info.appliedLSN
            if acked >= lastLSN && engine.writeGate.inFlight == 0 { break }
            guard ContinuousClock.now < deadline else {
                return try resume(
                    after: .switchoverTimedOut(
                        target: target.address, ackedLSN: acked, lastLSN: lastLSN, timeout: timeout))
            }
            try? await Task.sleep(for: .microseconds(200))
        }
        guard let ended = hub.promote(slaveID: target.slaveID, lastLSN: lastLSN) else {
            return try resume(after: .switchoverTargetLeft(target: target.address))
        }
        // From here the target may be the master at any moment: this node never takes another
        // write in its epoch. The held writes are sent there once it has stopped following this
        // node (its promotion's first step, after which it holds writes until it takes them);
        // sent earlier, they would meet a slave that names this node.
        let epoch = engine.epoch + 1
        await ended.wait(until: deadline + .seconds(1))
        state.withLock { $0.role = .slave(master: target.address) }
        save(.slave(master: target.address))
        releaseHeld(refusing: .switchoverUnderWay(target: target.address))
        logger.warning(
            "switchover: promoted the target; following it",
            metadata: [
                "target": "\(target.address)", "last_lsn": "\(lastLSN)",
                "held_ms": "\((ContinuousClock.now - started) / .milliseconds(1))",
            ])
        hub.dropAll(NodeError.notMaster(method: "Replicate", masterAddress: target.address).status)
        startFollowing(target.address, firstSync: false)
        state.withLock { $0.changing = false }
        return FailoverResponse(masterAddress: target.address, epoch: epoch, lastLSN: lastLSN)
    }

    /// A switchover that did not happen: the master takes writes again and `error` is thrown.
    private func resume(after error: NodeError) throws(NodeError) -> FailoverResponse {
        state.withLock { state in
            state.role = .master
            state.changing = false
        }
        engine.writeGate.open()
        releaseHeld(refusing: nil)
        logger.warning("switchover abandoned; taking writes again", metadata: ["reason": "\(error)"])
        throw error
    }
}
