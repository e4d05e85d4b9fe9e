internal import Foundation

// The values the nodes keep in etcd, as JSON: Patroni's habit, and readable with `etcdctl get`.

/// `/erdtree/<cluster>/leader`: who the master is.
struct Leader: Codable, Equatable {
    var name: String
    var address: String
    var epoch: UInt64
    var cluster: String

    init(name: String, address: String, epoch: UInt64, cluster: String) {
        self.name = name
        self.address = address
        self.epoch = epoch
        self.cluster = cluster
    }

    /// nil for anything that is not a leader value of this cluster.
    init?(decoding bytes: [UInt8], cluster: String) {
        guard let leader = try? JSONDecoder().decode(Leader.self, from: Data(bytes)), leader.cluster == cluster,
            !leader.name.isEmpty, (try? SocketAddressSpec(parsing: leader.address)) != nil
        else { return nil }
        self = leader
    }

    func encoded() -> [UInt8] { Array((try? JSONEncoder().encode(self)) ?? Data()) }
}

/// `/erdtree/<cluster>/members/<name>`: one node as it last reported itself.
struct Member: Codable, Equatable {
    var name: String
    var address: String
    var role: String
    var epoch: UInt64
    var appliedLSN: UInt64
    var durableLSN: UInt64

    init(name: String, address: String, role: String, epoch: UInt64, appliedLSN: UInt64, durableLSN: UInt64) {
        self.name = name
        self.address = address
        self.role = role
        self.epoch = epoch
        self.appliedLSN = appliedLSN
        self.durableLSN = durableLSN
    }

    init?(decoding bytes: [UInt8]) {
        guard let member = try? JSONDecoder().decode(Member.self, from: Data(bytes)), !member.name.isEmpty else {
            return nil
        }
        self = member
    }

    func encoded() -> [UInt8] { Array((try? JSONEncoder().encode(self)) ?? Data()) }

    /// The election's order: the newest epoch, then the most durable log, then (ties) the
    /// smallest name wins.
    static func ranksBelow(_ a: Member, _ b: Member) -> Bool {
        (a.epoch, a.durableLSN) != (b.epoch, b.durableLSN)
            ? (a.epoch, a.durableLSN) < (b.epoch, b.durableLSN) : a.name > b.name
    }
}
