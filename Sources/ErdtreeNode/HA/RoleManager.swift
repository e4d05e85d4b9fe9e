import ErdtreeRPC
import ErdtreeSync
import Logging
import NIOCore
import Synchronization

/// What this node is in replication, and every change of it: promotion, following, a planned
/// switchover, and stepping down on hearing of a newer epoch (docs/high-availability.md).
///
/// Roles are not fixed at start: any node has a `ReplicationHub` (which admits slaves only while
/// this is the master) and, while it follows a master, a `Replicator`. Whether client writes get
/// in is the engine's `WriteGate`, open only on a master; what a refused write is told comes from
/// here (`refusal(for:)`). One role change at a time: a second Failover, Promote or Follow while
/// one runs is refused. Every change is saved in `<wal.directory>/role` (`RoleFile`), which a
/// restart starts from.
public final class RoleManager: Sendable {
    public enum Role: Sendable, Equatable {
        case master
        /// Handing the role to `target` (Admin.Failover): writes are held.
        case handingOver(target: String)
        /// Following the master at `master`.
        case slave(master: String)
        /// A master that heard of `epoch`, newer than its own, and follows nobody yet.
        case fenced(epoch: UInt64)
        /// `erdtree node` before the coordinator named a master (or while it elects one).
        case electing
    }

    /// The default wait of Admin.Failover for its target to catch up.
    static let defaultFailoverTimeout = Duration.seconds(5)

    let engine: KVEngine
    let hub: ReplicationHub
    private let group: any EventLoopGroup
    /// How a `Replicator` dials whatever master this node follows (heartbeats, token, TLS): the
    /// config's `master:` with the address left to be filled in.
    private let masterLink: NodeConfig.Master
    /// How this node names itself (its slave id, the address a master reports for itself) once
    /// it knows the port it serves on.
    private let server: NodeConfig.Server
    /// `ha.advertise`, when a coordinator names this node to others.
    private let advertise: String?
    private let ownAddressValue: Locked<String>
    public var ownAddress: String { ownAddressValue.withLock { $0 } }
    let logger: Logger
    private let walDirectory: String
    let state: Locked<State>
    private let promotionCount = Atomic<UInt64>(0)

    /// Times this node became master since it started: a promotion by Admin.Promote, by a
    /// switchover that handed it the role, or by etcd after a failover.
    var promotions: UInt64 { promotionCount.load(ordering: .relaxed) }
    /// A coordinator (etcd) decides the role: Admin's role changes are refused.
    public let coordinated: Bool
    /// Told when the node may serve reads or must not (a slave before its first sync).
    private let serving: @Sendable (Bool) -> Void

    struct State {
        var role: Role
        var replicator: Replicator?
        var held: [HeldWrite] = []
        var changing = false
        var stopped = false
    }

    /// A client write that arrived while the gate was closed for a moment (a switchover, a
    /// promotion): answered once the role settles, on its call's event loop.
    struct HeldWrite: Sendable {
        var eventLoop: any EventLoop
        var retry: @Sendable () -> Void
        var refuse: @Sendable (NodeError) -> Void
    }

    init(
        initialRole: Role, engine: KVEngine, hub: ReplicationHub, group: any EventLoopGroup,
        masterLink: NodeConfig.Master, server: NodeConfig.Server, advertise: String? = nil, walDirectory: String,
        logger: Logger,
        serving: @escaping @Sendable (Bool) -> Void
    ) {
        self.walDirectory = walDirectory
        coordinated = initialRole == .electing
        self.engine = engine
        self.hub = hub
        self.group = group
        self.masterLink = masterLink
        self.server = server
        self.advertise = advertise
        ownAddressValue = Locked(advertise ?? ServerNode.slaveID(server))
        self.logger = logger
        self.serving = serving
        state = Locked(State(role: initialRole))
        if initialRole != .master { engine.writeGate.close() }
        hub.admission = { [weak self] hello in self?.admit(hello) }
    }

    // MARK: Reading the role

    public var role: Role { state.withLock { $0.role } }

    /// Whether this node is the master (handing over included: it still is until the target
    /// takes over).
    public var isMaster: Bool {
        switch role {
        case .master, .handingOver: true
        case .slave, .fenced, .electing: false
        }
    }

    /// The master's address as this node knows it: its own on a master, none when fenced.
    public var masterAddress: String {
        switch role {
        case .master, .handingOver: ownAddress
        case .slave(let master): master
        case .fenced, .electing: ""
        }
    }

    /// Why a fenced node takes no writes; empty otherwise.
    var fencedReason: String {
        guard case .fenced(let epoch) = role else { return "" }
        return NodeError.steppedDown(epoch: epoch).description
    }

    /// The link to the master while following one.
    public var replicator: Replicator? { state.withLock { $0.replicator } }

    // MARK: Writes

    /// What a write that found the gate closed is told, or nil when it should wait (the gate is
    /// closed only for a moment: a switchover or a promotion under way).
    func refusal(for method: String) -> NodeError? {
        refusal(for: method, in: role)
    }

    private func refusal(for method: String, in role: Role) -> NodeError? {
        switch role {
        case .master, .handingOver: engine.writeGate.withinLease ? nil : .leaseLapsed
        case .slave(let master): .notMaster(method: method, masterAddress: master)
        case .fenced(let epoch): .steppedDown(epoch: epoch)
        case .electing: .noMasterYet
        }
    }

    /// Holds a write the gate refused, or refuses it at once when this node is no master.
    func writeBlocked(method: String, _ write: HeldWrite) {
        let refusal: NodeError? = state.withLock { state in
            if let refusal = self.refusal(for: method, in: state.role) { return refusal }
            state.held.append(write)
            return nil
        }
        if let refusal { write.refuse(refusal) }
        // The gate may have opened between the refusal and the hold.
        if engine.writeGate.isOpen { releaseHeld(refusing: nil) }
    }

    /// Saves `role` for the next start; a failure is logged (the role holds until the restart).
    func save(_ role: Role) {
        do {
            try RoleFile.write(role, walDirectory: walDirectory)
        } catch {
            logger.error(
                "cannot save the role; a restart will start in the config's role", metadata: ["error": "\(error)"])
        }
    }

    /// Answers every held write: retried (`refusing` nil) or refused.
    func releaseHeld(refusing refusal: NodeError?) {
        let held = state.withLock { state in
            defer { state.held.removeAll() }
            return state.held
        }
        for write in held {
            write.eventLoop.execute {
                if let refusal { write.refuse(refusal) } else { write.retry() }
            }
        }
    }

    // MARK: Lifecycle

    /// Starts following the configured master, if any. Called once the node serves on `port`.
    func start(port: Int) {
        var server = self.server
        server.port = port
        ownAddressValue.withLock { $0 = advertise ?? ServerNode.slaveID(server) }
        if role == .electing { serving(false) }
        guard case .slave(let master) = role else { return }
        serving(false)
        startFollowing(master, firstSync: true)
    }

    func stop() async {
        let replicator = state.withLock { state in
            state.stopped = true
            return state.replicator
        }
        await replicator?.stop()
        releaseHeld(refusing: .masterShuttingDown)
    }

    func startFollowing(_ master: String, firstSync: Bool) {
        let replicator = Replicator(
            master: masterLink.at(master), engine: engine, group: group,
            slaveID: ownAddress, logger: logger)
        replicator.onRedirect { [weak self] address in
            // Not awaited here: following stops this replicator, whose loop is the caller.
            Task { [weak self] in try? await self?.follow(address, because: "its master pointed there") }
        }
        replicator.onPromote { [weak self] lastLSN in
            Task { [weak self] in await self?.promoteOnRequest(lastLSN: lastLSN) }
        }
        if firstSync { replicator.onFirstSync { [serving] in serving(true) } }
        let started = state.withLock { state in
            guard !state.stopped else { return false }
            state.replicator = replicator
            return true
        }
        if started { replicator.start() }
    }

    // MARK: Role changes

    /// Admin.Promote: this slave (or fenced node) starts the next epoch and takes writes. A
    /// coordinator that claimed epoch `atLeast` in etcd gets that one (or a later one).
    func promote(atLeast claimed: UInt64 = 0) async throws(NodeError) -> EpochStart {
        let (replicator, fencedEpoch) = try state.withLock { state throws(NodeError) in
            guard !state.changing else { throw .roleChangeUnderWay }
            var fencedEpoch: UInt64 = 0
            switch state.role {
            case .master, .handingOver: throw .alreadyMaster(epoch: engine.epoch)
            case .fenced(let epoch): fencedEpoch = epoch
            case .slave, .electing: break
            }
            state.changing = true
            // The master from now on: writes that come before the marker is logged are held.
            state.role = .master
            defer { state.replicator = nil }
            return (state.replicator, fencedEpoch)
        }
        await replicator?.stop()
        let epoch = max(max(engine.epoch, fencedEpoch) + 1, claimed)
        let started: Result<EpochStart, NodeError> = await withCheckedContinuation { continuation in
            engine.startEpoch(epoch) { continuation.resume(returning: $0) }
        }
        switch started {
        case .success(let start):
            promotionCount.add(1, ordering: .relaxed)
            save(.master)
            engine.writeGate.open()
            state.withLock { $0.changing = false }
            releaseHeld(refusing: nil)
            serving(true)
            logger.warning(
                "promoted to master: a new epoch starts",
                metadata: ["epoch": "\(start.epoch)", "first_lsn": "\(start.firstLSN)"])
            return start
        case .failure(let error):
            state.withLock { state in
                state.role = .fenced(epoch: engine.epoch)
                state.changing = false
            }
            releaseHeld(refusing: error)
            logger.error("promotion failed: the epoch marker was not logged", metadata: ["error": "\(error)"])
            throw error
        }
    }

    /// A switchover's `Promote` arrived from the master: it has sent everything up to `lastLSN`.
    private func promoteOnRequest(lastLSN: UInt64) async {
        guard engine.appliedLSN >= lastLSN else {
            logger.error(
                "the master asked for a promotion, but this node has not applied its last LSN; not promoting",
                metadata: ["last_lsn": "\(lastLSN)", "applied_lsn": "\(engine.appliedLSN)"])
            return
        }
        do {
            _ = try await promote()
        } catch {
            logger.error("switchover promotion failed", metadata: ["error": "\(error)"])
        }
    }

    /// Admin.Follow: follow the master at `address` (a master steps down first).
    func follow(_ address: String, because reason: String = "Admin.Follow") async throws(NodeError) {
        guard !isOwnAddress(address) else { throw .followSelf(address: address) }
        let (previous, wasMaster, firstSync) = try state.withLock { state throws(NodeError) in
            guard !state.changing else { throw .roleChangeUnderWay }
            if case .slave(address) = state.role { return (nil as Replicator?, false, false) }
            state.changing = true
            let wasMaster: Bool
            switch state.role {
            case .master, .handingOver, .fenced: wasMaster = true
            case .slave, .electing: wasMaster = false
            }
            // A node that never followed anyone serves reads once it has caught up.
            let firstSync = state.role == .electing
            state.role = .slave(master: address)
            defer { state.replicator = nil }
            return (state.replicator, wasMaster, firstSync)
        }
        guard previous != nil || wasMaster || firstSync else { return }  // already following it
        engine.writeGate.close()
        save(.slave(master: address))
        if wasMaster {
            logger.warning("stepping down to follow \(address)", metadata: ["reason": "\(reason)"])
            hub.dropAll(NodeError.notMaster(method: "Replicate", masterAddress: address).status)
            releaseHeld(refusing: .notMaster(method: "a write", masterAddress: address))
        } else {
            logger.info("following a new master", metadata: ["address": "\(address)", "reason": "\(reason)"])
        }
        await previous?.stop()
        startFollowing(address, firstSync: firstSync)
        state.withLock { $0.changing = false }
    }

    // MARK: Slaves dialling in

    /// Whether a slave's Hello may stream from this node; the refusal otherwise. A Hello that
    /// knows a newer epoch than this master's makes it step down (fencing).
    private func admit(_ hello: Hello) -> NodeError? {
        let slaveEpoch = hello.epochs.last?.epoch ?? 1
        let fenced: UInt64? = state.withLock { state in
            guard case .master = state.role, slaveEpoch > engine.epoch, !state.changing else { return nil }
            state.role = .fenced(epoch: slaveEpoch)
            return slaveEpoch
        }
        if let fenced {
            let myEpoch = engine.epoch
            engine.writeGate.close()
            releaseHeld(refusing: .steppedDown(epoch: fenced))
            logger.error(
                "a slave knows a newer epoch than this master's: stepping down, taking no more writes",
                metadata: ["epoch": "\(myEpoch)", "newer_epoch": "\(fenced)", "slave": "\(hello.slaveID)"])
            hub.dropAll(NodeError.steppedDown(epoch: fenced).status)
            // An fsync: not on the event loop that read the Hello.
            Task { save(.fenced(epoch: fenced)) }
            return .staleMaster(epoch: myEpoch, slaveEpoch: fenced)
        }
        switch role {
        case .master: return nil
        case .handingOver(let target): return .switchoverUnderWay(target: target)
        case .slave(let master): return .notMaster(method: "Replicate", masterAddress: master)
        case .fenced(let epoch): return .steppedDown(epoch: epoch)
        case .electing: return .noMasterYet
        }
    }

    /// Whether `address` names this node: its own address, or its port on a loopback or wildcard
    /// host (no other node can listen there).
    private func isOwnAddress(_ address: String) -> Bool {
        if address == ownAddress { return true }
        guard let spec = try? SocketAddressSpec(parsing: address),
            let own = try? SocketAddressSpec(parsing: ownAddress), spec.port == own.port
        else { return false }
        let local = ["127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0", "::", "[::]"]
        return local.contains(spec.host) || spec.host == own.host
    }
}
