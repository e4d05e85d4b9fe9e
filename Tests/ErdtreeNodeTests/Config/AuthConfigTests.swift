import Testing

@testable import ErdtreeNode

/// The `auth:` section and `master.token_file` (docs/configuration.md#auth): what parses, and
/// each refusal naming the key.
@Suite struct AuthConfigTests {
    @Test func tokensParseWithTheirRoles() throws {
        let yaml = """
            auth:
              tokens:
                - {name: app, role: write, token_file: /run/secrets/app}
                - name: ops
                  role: ADMIN
                  token_file: /run/secrets/ops
            """
        let config = try NodeConfig.parse(yaml: yaml, role: .master, source: "m.yaml")
        #expect(
            config.auth
                == .init(tokens: [
                    .init(name: "app", role: .write, tokenFile: "/run/secrets/app"),
                    .init(name: "ops", role: .admin, tokenFile: "/run/secrets/ops"),
                ]))
    }

    @Test func metricsAreOpenUnlessAuthMetricsSaysToken() throws {
        let tokens = "tokens: [{name: a, role: read, token_file: f}]"
        let open = try NodeConfig.parse(yaml: "auth: {\(tokens)}", role: .master, source: "m.yaml")
        #expect(open.auth?.metrics == .open)
        let token = try NodeConfig.parse(yaml: "auth: {\(tokens), metrics: Token}", role: .master, source: "m.yaml")
        #expect(token.auth?.metrics == .token)
    }

    @Test func authIsOffByDefault() throws {
        #expect(try NodeConfig.parse(yaml: "", role: .master, source: "m.yaml").auth == nil)
    }

    @Test func aSlaveSendsItsTokenFile() throws {
        let yaml = "master: {address: \"m:1\", token_file: /run/secrets/repl}"
        let config = try NodeConfig.parse(yaml: yaml, role: .slave, source: "s.yaml")
        #expect(config.master?.tokenFile == "/run/secrets/repl")
    }

    @Test(arguments: [
        ("auth: {}", "missing key 'auth.tokens'"),
        ("auth: {tokens: []}", "must list at least one token"),
        ("auth: {tokens: x}", "'auth.tokens' must be a list"),
        ("auth: {tokens: [{name: a, role: read}]}", "missing key 'auth.tokens[0].token_file'"),
        ("auth: {tokens: [{role: read, token_file: f}]}", "missing key 'auth.tokens[0].name'"),
        (
            "auth: {tokens: [{name: a, role: superuser, token_file: f}]}",
            "invalid value 'superuser' for 'auth.tokens[0].role': must be one of read, write, admin, replication"
        ),
        (
            "auth: {tokens: [{name: a, role: read, token_file: f}, {name: a, role: write, token_file: g}]}",
            "'auth.tokens[1].name': another token already has this name"
        ),
        ("auth: {tokens: [{name: a, role: read, tokenfile: f}]}", "unknown key 'auth.tokens[0].tokenfile'"),
        (
            "auth: {tokens: [{name: a, role: read, token_file: f}], metrics: sometimes}",
            "invalid value 'sometimes' for 'auth.metrics': must be open or token"
        ),
        (
            "auth: {tokens: [{name: a, role: read, secret: f}]}",
            "known keys in 'auth.tokens[0]': name, role, token_file"
        ),
    ])
    func refusals(yaml: String, message: String) {
        let error = #expect(throws: ConfigError.self) {
            try NodeConfig.parse(yaml: yaml, role: .master, source: "m.yaml")
        }
        #expect(error?.description.contains(message) == true, "\(error?.description ?? "no error")")
    }
}
