import Testing

@testable import ErdtreeNode

/// The `ha:` section of `erdtree node` (docs/configuration.md#ha): every key, its defaults, and
/// each refusal naming the key.
@Suite struct HAConfigTests {
    @Test func aFullSectionParses() throws {
        let yaml = """
            server: {address: "0.0.0.0", port: 7000}
            ha:
              etcd:
                endpoints: ["10.0.0.9:2379", "10.0.0.8:2379"]
              cluster: "prod"
              name: "node-a"
              advertise: "10.0.0.1:7000"
              lease_ttl: 3s
            """
        let config = try NodeConfig.parse(yaml: yaml, role: .node, source: "n.yaml")
        #expect(
            config.ha
                == .init(
                    etcdEndpoints: ["10.0.0.9:2379", "10.0.0.8:2379"], cluster: "prod", name: "node-a",
                    advertise: "10.0.0.1:7000", leaseTTL: .seconds(3)))
        #expect(config.master == nil)
    }

    @Test func everyKeyHasADefaultOnALoopbackNode() throws {
        let config = try NodeConfig.parse(yaml: "server: {port: 7001}", role: .node, source: "n.yaml")
        #expect(
            config.ha
                == .init(
                    etcdEndpoints: ["127.0.0.1:2379"], cluster: "main", name: "127.0.0.1:7001",
                    advertise: "127.0.0.1:7001", leaseTTL: .seconds(2)))
    }

    @Test(arguments: [Role.master, .slave])
    func aStaticRoleRefusesTheSection(role: Role) {
        let yaml = "master: {address: \"m:1\"}\nha: {cluster: x}\n"
        let error = #expect(throws: ConfigError.self) {
            try NodeConfig.parse(yaml: role == .slave ? yaml : "ha: {cluster: x}", role: role, source: "c.yaml")
        }
        #expect(error == .keyNotAllowed(key: "ha", role: role, file: "c.yaml"))
        #expect(error?.description.contains("run `erdtree node` for a role etcd decides") == true)
    }

    @Test func aNodeRefusesAMasterAddress() {
        let error = #expect(throws: ConfigError.self) {
            try NodeConfig.parse(yaml: "master: {address: \"m:1\"}", role: .node, source: "n.yaml")
        }
        #expect(error == .keyNotAllowed(key: "master.address", role: .node, file: "n.yaml"))
        #expect(error?.description.contains("whose master etcd decides") == true)
    }

    /// How a node dials whichever master etcd names: its token, its heartbeat.
    @Test func aNodeTakesHowToDialItsMaster() throws {
        let yaml = "master: {token_file: /run/secrets/repl, sync_interval: 250ms}"
        let config = try NodeConfig.parse(yaml: yaml, role: .node, source: "n.yaml")
        #expect(config.master == .init(address: "", syncInterval: .milliseconds(250), tokenFile: "/run/secrets/repl"))
    }

    @Test(arguments: [
        ("ha: {etcd: {endpoint: [a:1]}}", "unknown key 'ha.etcd.endpoint'"),
        ("ha: {lease: 2s}", "unknown key 'ha.lease'"),
        ("ha: {etcd: {endpoints: \"a:1\"}}", "'ha.etcd.endpoints' must be a list"),
        ("ha: {etcd: {endpoints: []}}", "must name at least one"),
        ("ha: {etcd: {endpoints: [\"nohost\"]}}", "invalid value 'nohost' for 'ha.etcd.endpoints'"),
        ("ha: {advertise: \"0.0.0.0:1\"}", "not a wildcard"),
        ("ha: {advertise: \"x\"}", "invalid value 'x' for 'ha.advertise'"),
        ("ha: {lease_ttl: 1500ms}", "must be whole seconds, at least 1s"),
        ("ha: {cluster: \"a/b\"}", "must not contain '/'"),
        ("server: {address: \"0.0.0.0\"}", "missing key 'ha.advertise'"),
    ])
    func badValuesAreNamed(yaml: String, words: String) {
        let error = #expect(throws: ConfigError.self) {
            try NodeConfig.parse(yaml: yaml, role: .node, source: "n.yaml")
        }
        #expect(error?.description.contains(words) == true, "\(String(describing: error))")
    }
}
