import ArgumentParser
import ErdtreeNode

struct SlavesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slaves",
        abstract: "List a master's slaves (erdtree.v1.Admin/ListSlaves): id, address, LSNs, lag, state.")

    @OptionGroup var client: ClientOptions

    func run() async throws {
        let slaves = try await client.withClient { try await $0.listSlaves() }
        guard !slaves.isEmpty else { return print("no slaves") }
        print("slave_id\taddress\tstate\tapplied_lsn\tdurable_lsn\tlag_entries\tlag_ms")
        for slave in slaves {
            print(
                "\(slave.slaveID)\t\(slave.address)\t\(slave.connected ? "connected" : "disconnected")\t"
                    + "\(slave.appliedLSN)\t\(slave.durableLSN)\t\(slave.lagEntries)\t\(slave.lagMs)")
        }
    }
}

struct FailoverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "failover",
        abstract: "Hand the master's role to a slave without losing a write (erdtree.v1.Admin/Failover).",
        discussion: """
            Run it against the master. It holds new writes, waits until the target has every write, promotes it
            (a new epoch), then follows it. Writes held meanwhile are refused with UNAVAILABLE naming the new
            master. If the target does not catch up within --timeout, nothing changes and the master takes writes again.
            """)

    @Option(name: .long, help: "The slave to promote (its id or address); default the most up-to-date one.")
    var to: String = ""
    @OptionGroup(title: "Connection (--timeout is how long the master waits for the target to catch up)")
    var client: ClientOptions

    func run() async throws {
        let wait = client.timeoutDuration
        let waitMs = UInt32(clamping: ConfigUnits.milliseconds(wait))
        let result = try await client.withClient { client in
            var client = client
            // The call itself may take the whole wait and the promotion after it.
            client.timeout = wait + .seconds(5)
            return try await client.failover(to: to, timeoutMs: max(1, waitMs))
        }
        print("OK new master \(result.masterAddress) epoch=\(result.epoch) last_lsn=\(result.lastLSN)")
    }
}

struct PromoteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "promote",
        abstract: "Make a slave the master: it starts the next epoch and takes writes (erdtree.v1.Admin/Promote).",
        discussion: """
            For a slave whose master is gone. Its old master, if it comes back, must be told to follow it
            (erdtree follow); records it took that this slave never got are then set aside as a divergent file.
            """)

    @OptionGroup var client: ClientOptions

    func run() async throws {
        let start = try await client.withClient { try await $0.promote() }
        print("OK epoch=\(start.epoch) first_lsn=\(start.firstLSN)")
    }
}

struct FollowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "follow",
        abstract: "Make a node a slave of ADDR, like Redis REPLICAOF; a master steps down (erdtree.v1.Admin/Follow).")

    @Argument(help: "The master to follow, as host:port.") var address: String
    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await client.withClient { try await $0.follow(address) }
        print("OK following \(address)")
    }
}
