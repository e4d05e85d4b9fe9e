import ErdtreeSync
import Logging
import NIOCore
import Synchronization

/// Decides this node's role through etcd, as Patroni does for PostgreSQL
/// (docs/high-availability.md, part 2).
///
/// Each session holds a lease of `ha.lease_ttl`, renewed every ttl/3. Under it the node keeps
/// `/erdtree/<cluster>/members/<name>` (address, role, epoch, LSNs), and the master holds
/// `/erdtree/<cluster>/leader` (name, address, epoch). The master's write gate is open only until
/// its last renewal's send time plus the ttl minus a margin, on its own monotonic clock
/// (`WriteGate.holdLease`): it stops taking writes before etcd can let the key expire and anyone
/// else take it, even if its process was stopped, its clock jumped or etcd is unreachable.
///
/// Every `decisionInterval` the node looks at the leader key: it follows whoever holds it, and
/// when nobody does, the live member with the highest epoch, then durable LSN (name breaking
/// ties) creates it in a transaction (`create_revision == 0`) for the next epoch and promotes
/// itself. A value it cannot read is logged and ignored: the node keeps its role.
final class EtcdCoordinator: Coordinator {
    let ha: NodeConfig.HA
    let roles: RoleManager
    let engine: KVEngine
    let group: any EventLoopGroup
    let logger: Logger
    private let task = Locked<Task<Void, Never>?>(nil)
    /// When the last successful renewal of this session's lease was sent: writes are open until
    /// then + ttl - margin.
    private let renewedAt = Locked(ContinuousClock.now)
    /// Whether this session's lease holds the leader key (set by the decisions, read by renewals).
    private let holdsKey = Atomic<Bool>(false)
    /// The lease of the session under way, for `stop` to revoke.
    private let session = Locked<(client: EtcdClient, lease: Int64)?>(nil)

    /// How often the leader key is checked while nothing changes.
    static let decisionInterval = Duration.milliseconds(200)

    init(ha: NodeConfig.HA, roles: RoleManager, engine: KVEngine, group: any EventLoopGroup, logger: Logger) {
        self.ha = ha
        self.roles = roles
        self.engine = engine
        self.group = group
        var logger = logger
        logger[metadataKey: "member"] = "\(ha.name)"
        self.logger = logger
    }

    var leaderKey: [UInt8] { Array("/erdtree/\(ha.cluster)/leader".utf8) }
    var memberPrefix: [UInt8] { Array("/erdtree/\(ha.cluster)/members/".utf8) }
    var memberKey: [UInt8] { memberPrefix + Array(ha.name.utf8) }

    /// A renewal sent at `t` keeps writes open until `t + ttl - margin`: etcd counts the ttl from
    /// when the renewal reached it, later than `t`, so the master stops first by at least the margin.
    var margin: Duration { max(ha.leaseTTL / 4, .milliseconds(100)) }

    func start() {
        let task = Task { [self] in await run() }
        self.task.withLock { $0 = task }
    }

    /// A graceful stop: this node takes no more writes, then gives its lease back, so that a
    /// master's key goes at once and another member is elected without waiting for the ttl.
    func stop() async {
        engine.writeGate.close()
        // Revoked while the session still runs (its client is open); the session then ends.
        if let (client, lease) = session.withLock({ $0 }) {
            try? await client.revokeLease(lease)
        }
        let task = self.task.withLock { $0 }
        task?.cancel()
        await task?.value
    }

    private func run() async {
        var retry = Duration.milliseconds(100)
        while !Task.isCancelled {
            do {
                try await runSession()
                retry = .milliseconds(100)
            } catch {
                if Task.isCancelled { return }
                logger.warning(
                    "etcd session ended; a master takes no writes once its lease runs out",
                    metadata: ["error": "\(error)", "retry_in": "\(retry)"])
            }
            try? await Task.sleep(for: retry)
            retry = min(retry * 2, ha.leaseTTL / 2)
        }
    }

    /// One lease's life: connect, grant, then renew and decide until something fails.
    private func runSession() async throws {
        let client = try await EtcdClient.connect(
            endpoints: ha.etcdEndpoints, group: group, timeout: ha.leaseTTL / 3, tls: ha.etcdTLS)
        let granted = ContinuousClock.now
        let lease: Int64
        do {
            lease = try await client.grantLease(ttl: ha.leaseTTL)
        } catch {
            await client.close()
            throw error
        }
        session.withLock { $0 = (client, lease) }
        defer { session.withLock { $0 = nil } }
        logger.info("etcd session started", metadata: ["lease": "\(lease)", "endpoints": "\(ha.etcdEndpoints)"])
        renewedAt.withLock { $0 = granted }
        holdsKey.store(false, ordering: .relaxed)
        // Renewals run beside the decisions, so that a slow decision (a promotion waiting for its
        // old stream to close) never delays them; either failing ends the session.
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { [self] in
                    while true {
                        try await Task.sleep(until: renewedAt.withLock { $0 } + ha.leaseTTL / 3)
                        try await renew(client, lease: lease)
                    }
                }
                group.addTask { [self] in
                    // The member value is rewritten when it changed and at most every ttl/3 —
                    // often enough that a slave's final LSNs are in etcd before a dead master's
                    // key can expire (at least ttl - ttl/3 after its last renewal) — and not
                    // with every decision: each put is a raft write (and an fsync) for etcd.
                    var published: (value: [UInt8], at: ContinuousClock.Instant)?
                    while true {
                        let value = memberValue()
                        if value != published?.value,
                            published.map({ ContinuousClock.now - $0.at >= ha.leaseTTL / 3 }) ?? true
                        {
                            try await client.put(memberKey, value, lease: lease)
                            published = (value, .now)
                        }
                        try await decide(client, lease: lease)
                        try await Task.sleep(for: Self.decisionInterval)
                    }
                }
                try await group.next()
                group.cancelAll()
            }
        } catch {
            await client.close()
            throw error
        }
        await client.close()
    }

    /// One keep-alive; the write deadline counts from when it was sent, and a master holding the
    /// leader key under this lease keeps taking writes until then + ttl - margin.
    private func renew(_ client: EtcdClient, lease: Int64) async throws {
        let sent = ContinuousClock.now
        _ = try await client.keepAlive(lease: lease)
        renewedAt.withLock { $0 = sent }
        if holdsKey.load(ordering: .relaxed), roles.isMaster { engine.writeGate.holdLease(until: writesUntil) }
    }

    /// Writes stay open until the last renewal's send time + ttl - margin.
    private var writesUntil: ContinuousClock.Instant { renewedAt.withLock { $0 } + ha.leaseTTL - margin }

    /// Follows the leader key, or runs for it when nobody holds it.
    private func decide(_ client: EtcdClient, lease: Int64) async throws {
        if let held = try await client.get(leaderKey) {
            guard let leader = Leader(decoding: held.value, cluster: ha.cluster) else {
                logger.error(
                    "the leader key holds something unreadable; keeping this node's role",
                    metadata: ["value": "\(String(decoding: held.value.prefix(200), as: UTF8.self))"])
                return
            }
            if leader.name == ha.name {
                // Under this session's lease: renewing it keeps writes open. Under an earlier
                // session's, while this node is still the master (its session broke, the lease
                // did not expire, so nobody else can have been elected): move the claim to this
                // session's lease rather than stop writes until the old one expires.
                guard held.lease == lease else {
                    guard roles.isMaster, leader.epoch == engine.epoch,
                        try await client.delete(leaderKey, ifValue: held.value)
                    else { return }
                    let (created, _) = try await client.create(leaderKey, held.value, lease: lease)
                    if created {
                        logger.info("leader key moved to this session's lease", metadata: ["lease": "\(lease)"])
                        holdsKey.store(true, ordering: .relaxed)
                        engine.writeGate.holdLease(until: writesUntil)
                    }
                    return
                }
                holdsKey.store(roles.isMaster, ordering: .relaxed)
                if roles.isMaster {
                    engine.writeGate.holdLease(until: writesUntil)
                } else {
                    // It stepped down (a slave of a newer epoch fenced it): give the key up, or
                    // nobody else could be elected while this session renews it.
                    logger.warning("holding the leader key but no longer the master; giving it up")
                    _ = try await client.delete(leaderKey, ifValue: held.value)
                }
                return
            }
            holdsKey.store(false, ordering: .relaxed)
            engine.writeGate.holdLease(until: nil)
            if roles.role != .slave(master: leader.address) {
                logger.warning(
                    "etcd names another master; following it",
                    metadata: ["leader": "\(leader.name)", "address": "\(leader.address)", "epoch": "\(leader.epoch)"])
                try await roles.follow(leader.address, because: "etcd's leader key names it")
            }
            return
        }
        // Nobody leads: the best live member takes the key.
        let members = try await client.get(prefix: memberPrefix).compactMap { Member(decoding: $0.value) }
        guard let best = members.max(by: Member.ranksBelow), best.name == ha.name else { return }
        let epoch =
            roles.isMaster ? engine.epoch : max(engine.epoch, members.map(\.epoch).max() ?? 1) + 1
        let claim = Leader(name: ha.name, address: ha.advertise, epoch: epoch, cluster: ha.cluster)
        // Renew first: the new master's write deadline counts from this renewal, not an older one.
        try await renew(client, lease: lease)
        let (created, existing) = try await client.create(leaderKey, claim.encoded(), lease: lease)
        guard created else {
            logger.info(
                "another member took the leader key first",
                metadata: ["holder": "\(existing.map { String(decoding: $0.value, as: UTF8.self) } ?? "?")"])
            return
        }
        holdsKey.store(true, ordering: .relaxed)
        engine.writeGate.holdLease(until: writesUntil)
        if roles.isMaster {
            logger.warning("leader key taken again by this master", metadata: ["epoch": "\(epoch)"])
            return
        }
        do {
            let start = try await roles.promote(atLeast: epoch)
            logger.warning(
                "elected master through etcd", metadata: ["epoch": "\(start.epoch)", "first_lsn": "\(start.firstLSN)"])
        } catch {
            logger.error("elected, but the promotion failed; giving the key up", metadata: ["error": "\(error)"])
            holdsKey.store(false, ordering: .relaxed)
            _ = try? await client.delete(leaderKey, ifValue: claim.encoded())
        }
    }

    private func memberValue() -> [UInt8] {
        let member = Member(
            name: ha.name, address: ha.advertise, role: roles.isMaster ? "master" : "slave", epoch: engine.epoch,
            appliedLSN: engine.appliedLSN, durableLSN: engine.durableLSN)
        return member.encoded()
    }
}
