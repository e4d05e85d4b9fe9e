import ErdtreeRPC
import Testing

@testable import ErdtreeNode

/// `server.tls`, `master.tls` and `ha.etcd.tls` (docs/configuration.md#tls): what parses, and
/// the refusals that name the key. The files themselves are read when the node starts
/// (tests/interop/test_tls.py checks those errors on real files).
@Suite struct TLSConfigTests {
    @Test func serverTLSParsesWithAndWithoutAClientCA() throws {
        let plain = try NodeConfig.parse(
            yaml: "server:\n  tls: {cert_file: s.pem, key_file: s.key}", role: .master, source: "c.yaml")
        #expect(plain.server.tls == ServerTLS(certFile: "s.pem", keyFile: "s.key"))
        let mutual = try NodeConfig.parse(
            yaml: "server:\n  tls: {cert_file: s.pem, key_file: s.key, client_ca_file: ca.pem}", role: .master,
            source: "c.yaml")
        #expect(mutual.server.tls == ServerTLS(certFile: "s.pem", keyFile: "s.key", clientCAFile: "ca.pem"))
    }

    @Test(arguments: Role.allCases)
    func noTLSByDefault(role: Role) {
        let defaults = NodeConfig.defaults(for: role)
        #expect(defaults.server.tls == nil)
        #expect(defaults.master?.tls == nil)
        #expect(defaults.ha?.etcdTLS == nil)
    }

    @Test func masterTLSParsesEveryKey() throws {
        let yaml = """
            master:
              address: "m:7000"
              tls: {ca_file: ca.pem, server_name: m.example, cert_file: c.pem, key_file: c.key}
            """
        let config = try NodeConfig.parse(yaml: yaml, role: .slave, source: "s.yaml")
        #expect(
            config.master?.tls
                == ClientTLS(caFile: "ca.pem", serverName: "m.example", certFile: "c.pem", keyFile: "c.key"))
    }

    @Test func anEmptyClientTLSSectionMeansTLSWithTheSystemRoots() throws {
        let config = try NodeConfig.parse(yaml: "master: {address: \"m:1\", tls: {}}", role: .slave, source: "s.yaml")
        #expect(config.master?.tls == ClientTLS())
    }

    @Test func etcdTLSParsesUnderHAEtcd() throws {
        let yaml = "ha:\n  etcd:\n    endpoints: [\"e:2379\"]\n    tls: {ca_file: etcd-ca.pem}"
        let config = try NodeConfig.parse(yaml: yaml, role: .node, source: "n.yaml")
        #expect(config.ha?.etcdTLS == ClientTLS(caFile: "etcd-ca.pem"))
        #expect(config.ha?.etcdEndpoints == ["e:2379"])
    }

    @Test(arguments: [
        ("server: {tls: {cert_file: s.pem}}", "missing key 'server.tls.key_file': server.tls needs both"),
        ("server: {tls: {key_file: s.key}}", "missing key 'server.tls.cert_file'"),
        ("server: {tls: {client_ca_file: ca.pem}}", "client_ca_file turns on mutual TLS"),
        ("server: {tls: {cert_file: s.pem, key_file: s.key, ca_file: ca.pem}}", "unknown key 'server.tls.ca_file'"),
        ("server: {tls: {cert_file: \"\", key_file: s.key}}", "invalid value '' for 'server.tls.cert_file'"),
        ("server: {tls: s.pem}", "'server.tls' must be a mapping of keys"),
    ])
    func badServerTLSIsNamed(yaml: String, words: String) {
        let error = #expect(throws: ConfigError.self) {
            try NodeConfig.parse(yaml: yaml, role: .master, source: "c.yaml")
        }
        #expect(error?.description.contains(words) == true, "\(String(describing: error))")
    }

    @Test(
        arguments: [
            (
                "master: {address: \"m:1\", tls: {cert_file: c.pem}}", .slave,
                "missing key 'master.tls.key_file': master.tls.cert_file is set"
            ),
            ("master: {address: \"m:1\", tls: {key_file: c.key}}", .slave, "missing key 'master.tls.cert_file'"),
            ("master: {address: \"m:1\", tls: {client_ca_file: x}}", .slave, "unknown key 'master.tls.client_ca_file'"),
            ("ha: {etcd: {tls: {cert_file: c.pem}}}", .node, "missing key 'ha.etcd.tls.key_file'"),
            ("ha: {etcd: {tls: {sni: x}}}", .node, "unknown key 'ha.etcd.tls.sni'"),
        ] as [(String, Role, String)])
    func badClientTLSIsNamed(yaml: String, role: Role, words: String) {
        let error = #expect(throws: ConfigError.self) {
            try NodeConfig.parse(yaml: yaml, role: role, source: "c.yaml")
        }
        #expect(error?.description.contains(words) == true, "\(String(describing: error))")
    }
}
