extension NodeConfig {
    /// The configuration a node runs with when started without `--config`, and the base that a
    /// file's keys override.
    ///
    /// A master listens on 127.0.0.1:8080 with its WAL in `./data/master/wal`; a slave on
    /// 127.0.0.1:8081 with `./data/slave/wal`, following 127.0.0.1:8080. The two differ so that one
    /// master and one slave started from the same directory with no files do not collide.
    public static func defaults(for role: Role) -> NodeConfig {
        let wal = { (directory: String) in
            WAL(
                directory: directory,
                syncInterval: .interval(.seconds(1)),
                maxFileSizeBytes: 100 << 20,
                retentionBytes: 1 << 30
            )
        }
        switch role {
        case .master:
            return NodeConfig(
                server: Server(address: "127.0.0.1", port: 8080),
                wal: wal("./data/master/wal")
            )
        case .slave:
            return NodeConfig(
                server: Server(address: "127.0.0.1", port: 8081),
                wal: wal("./data/slave/wal"),
                master: Master(address: "127.0.0.1:8080", syncInterval: .milliseconds(100))
            )
        case .node:
            return NodeConfig(
                server: Server(address: "127.0.0.1", port: 8080),
                wal: wal("./data/node/wal"),
                ha: HA(
                    etcdEndpoints: ["127.0.0.1:2379"], cluster: "main", name: "127.0.0.1:8080",
                    advertise: "127.0.0.1:8080", leaseTTL: .seconds(2))
            )
        }
    }

    /// `defaults(for:)` written out as a config file, with comments; parsing it gives back
    /// `defaults(for: role)` (a test holds the two together). Useful as a starting file.
    public static func defaultYAML(for role: Role) -> String {
        let defaults = defaults(for: role)
        let masterSection: String
        if let master = defaults.master {
            masterSection = """

                # The master this slave replicates from (slaves only).
                master:
                  address: "\(master.address)"
                  sync_interval: 100ms

                """
        } else {
            masterSection = ""
        }
        let haSection: String
        if let ha = defaults.ha {
            haSection = """

                # Automatic failover: etcd decides which node is the master (erdtree node only).
                ha:
                  etcd:
                    endpoints: [\(ha.etcdEndpoints.map { "\"\($0)\"" }.joined(separator: ", "))]
                  cluster: "\(ha.cluster)"       # keys live under /erdtree/<cluster>/
                  name: "\(ha.name)"    # default: the advertise address
                  advertise: "\(ha.advertise)"  # where the other nodes reach this one
                  lease_ttl: 2s            # a master that cannot renew within this stops taking writes

                """
        } else {
            haSection = ""
        }
        return """
            # Erdtree \(role) configuration (docs/configuration.md lists every key).
            server:
              address: "\(defaults.server.address)"
              port: \(defaults.server.port)
              event_loops: \(defaults.server.eventLoops)   # threads; 0 = one per core
              idle_timeout: 30s        # an HTTP/1.1 client silent this long is disconnected

            wal:
              directory: "\(defaults.wal.directory)"
              sync_interval: 1s        # or "always"
              max_file_size: 100MB     # KB/MB/GB are powers of 1024
              retention: 1GB           # newest log kept as written for slaves; older is compacted

            storage:
              max_entries: 1000000
              eviction_policy: lru     # or noeviction
            \(masterSection)
            replication:
              min_acks: 0
              ack_timeout: 5s

            limits:
              max_key_bytes: 4KB
              max_value_bytes: 1MB
              max_message_bytes: 4MB
            \(haSection)
            log:
              level: \(defaults.log.level.rawValue)              # trace … critical; --log-level overrides it
              format: \(defaults.log.format.rawValue)             # or json: one object a line
            """
    }
}
