import Foundation
import Testing

@testable import ErdtreeNode

/// Config files as an operator writes them: defaults, every key, units, and the error a bad file gets.
@Suite struct ConfigTests {
    // MARK: Defaults

    @Test func noFileGivesMasterDefaults() throws {
        let config = try NodeConfig.load(path: nil, role: .master)
        #expect(config.server == .init(address: "127.0.0.1", port: 8080))
        #expect(config.wal.directory == "./data/master/wal")
        #expect(config.wal.syncInterval == .interval(.seconds(1)))
        #expect(config.wal.maxFileSizeBytes == 100 * 1024 * 1024)
        #expect(config.wal.retentionBytes == 1024 * 1024 * 1024)
        #expect(config.storage == .init(maxEntries: 1_000_000, evictionPolicy: .lru))
        #expect(config.master == nil)
        #expect(config.replication == .init(minAcks: 0, ackTimeout: .seconds(5)))
        #expect(config.limits == .init(maxKeyBytes: 4096, maxValueBytes: 1 << 20, maxMessageBytes: 4 << 20))
    }

    @Test func noFileGivesSlaveDefaultsFollowingLocalMaster() throws {
        let config = try NodeConfig.load(path: nil, role: .slave)
        #expect(config.server == .init(address: "127.0.0.1", port: 8081))
        #expect(config.wal.directory == "./data/slave/wal")
        #expect(config.master == .init(address: "127.0.0.1:8080", syncInterval: .milliseconds(100)))
    }

    @Test(arguments: Role.allCases)
    func embeddedDefaultYAMLParsesToDefaults(role: Role) throws {
        let parsed = try NodeConfig.parse(yaml: NodeConfig.defaultYAML(for: role), role: role, source: "default")
        #expect(parsed == NodeConfig.defaults(for: role))
    }

    @Test func emptyFileMeansAllDefaultsForAMaster() throws {
        #expect(try NodeConfig.parse(yaml: "", role: .master, source: "empty.yaml") == .defaults(for: .master))
        #expect(
            try NodeConfig.parse(yaml: "# nothing\n", role: .master, source: "empty.yaml") == .defaults(for: .master))
    }

    @Test func eventLoopsDefaultsToOnePerCoreAndParses() throws {
        #expect(NodeConfig.defaults(for: .master).server.eventLoops == 0)
        let config = try NodeConfig.parse(yaml: "server:\n  event_loops: 1", role: .master, source: "c.yaml")
        #expect(config.server.eventLoops == 1)
    }

    @Test func idleTimeoutDefaultsToThirtySecondsAndParses() throws {
        #expect(NodeConfig.defaults(for: .master).server.idleTimeout == .seconds(30))
        let config = try NodeConfig.parse(yaml: "server:\n  idle_timeout: 250ms", role: .master, source: "c.yaml")
        #expect(config.server.idleTimeout == .milliseconds(250))
    }

    @Test func missingKeysKeepTheirDefaults() throws {
        let config = try NodeConfig.parse(yaml: "server:\n  port: 9000\nwal:\n", role: .master, source: "c.yaml")
        var expected = NodeConfig.defaults(for: .master)
        expected.server.port = 9000
        #expect(config == expected)
    }

    // MARK: Every key

    @Test func everyKeyIsRead() throws {
        let yaml = """
            server:
              address: 10.0.0.5
              port: 9090
            wal:
              directory: /srv/erdtree/wal
              sync_interval: 250ms
              max_file_size: 64MB
              retention: 2GB
            storage:
              max_entries: 5_000
              eviction_policy: noeviction
            master:
              address: "primary.internal:7000"
              sync_interval: 2s
            replication:
              min_acks: 2
              ack_timeout: 1500ms
            limits:
              max_key_bytes: 256
              max_value_bytes: 64KB
              max_message_bytes: 1MB
            """
        let config = try NodeConfig.parse(yaml: yaml, role: .slave, source: "full.yaml")
        let expected = NodeConfig(
            server: .init(address: "10.0.0.5", port: 9090),
            wal: .init(
                directory: "/srv/erdtree/wal",
                syncInterval: .interval(.milliseconds(250)),
                maxFileSizeBytes: 64 << 20,
                retentionBytes: 2 << 30
            ),
            storage: .init(maxEntries: 5000, evictionPolicy: .noeviction),
            master: .init(address: "primary.internal:7000", syncInterval: .seconds(2)),
            replication: .init(minAcks: 2, ackTimeout: .milliseconds(1500)),
            limits: .init(maxKeyBytes: 256, maxValueBytes: 64 << 10, maxMessageBytes: 1 << 20)
        )
        #expect(config == expected)
    }

    @Test func syncIntervalAlwaysFsyncsEachBatch() throws {
        let config = try NodeConfig.parse(yaml: "wal:\n  sync_interval: always", role: .master, source: "c.yaml")
        #expect(config.wal.syncInterval == .always)
    }

    @Test func portZeroAsksForAnEphemeralPort() throws {
        let config = try NodeConfig.parse(yaml: "server:\n  port: 0", role: .master, source: "c.yaml")
        #expect(config.server.port == 0)
    }

    @Test func bracketedIPv6ListenAddressIsUnwrapped() throws {
        let config = try NodeConfig.parse(yaml: "server:\n  address: \"[::1]\"", role: .master, source: "c.yaml")
        #expect(config.server.address == "::1")
    }

    // MARK: Units

    static let sizes: [(text: String, bytes: Int64)] = [
        ("65536", 65536),
        ("64KB", 64 << 10),
        ("64kb", 64 << 10),
        ("64 KiB", 64 << 10),
        ("100MB", 100 << 20),
        ("1GB", 1 << 30),
        ("2G", 2 << 30),
        ("1TB", 1 << 40),
        ("512B", 512),
        ("1_048_576", 1_048_576),
        ("0", 0),
    ]

    @Test(arguments: sizes)
    func sizesParse(text: String, bytes: Int64) {
        #expect(ConfigUnits.byteSize(text) == bytes)
    }

    @Test(arguments: ["", "MB", "-1KB", "1.5GB", "10XB", "1__0", "_1", "ten", "9000000000TB"])
    func badSizesAreRejected(text: String) {
        #expect(ConfigUnits.byteSize(text) == nil)
    }

    @Test(arguments: [
        ("500us", Duration.microseconds(500)),
        ("500µs", .microseconds(500)),
        ("250ns", .nanoseconds(250)),
        ("100ms", .milliseconds(100)),
        ("1s", .seconds(1)),
        ("2m", .seconds(120)),
        ("1h", .seconds(3600)),
        ("1m30s", .seconds(90)),
        ("1.5s", .milliseconds(1500)),
        ("0.1s", .milliseconds(100)),
        (" 10s ", .seconds(10)),
        ("0s", .zero),
    ])
    func durationsParse(text: String, duration: Duration) {
        #expect(ConfigUnits.duration(text) == duration)
    }

    @Test(arguments: ["", "5", "1d", "s", "-1s", "1s2", "fast", "1 s", ".s", "99999999999h"])
    func badDurationsAreRejected(text: String) {
        #expect(ConfigUnits.duration(text) == nil)
    }

    // MARK: Unknown keys

    @Test func unknownNestedKeyIsNamedWithASuggestion() {
        let error = #expect(throws: ConfigError.self) {
            try NodeConfig.parse(yaml: "server:\n  prot: 8080\n", role: .master, source: "config.yaml")
        }
        #expect(error == .unknownKey(path: "server.prot", file: "config.yaml"))
        #expect(error?.description == "config.yaml: unknown key 'server.prot' (did you mean 'server.port'?)")
    }

    @Test(arguments: [
        ("sever:\n  port: 1", "sever", "did you mean 'server'?"),
        ("wal:\n  syncInterval: 1s", "wal.syncInterval", "did you mean 'wal.sync_interval'?"),
        ("server:\n  directory: /tmp", "server.directory", "did you mean 'wal.directory'?"),
        ("port: 8080", "port", "did you mean 'server.port'?"),
        ("server:\n  banana: 1", "server.banana", "known keys in 'server': address, port"),
        ("banana: 1", "banana", "known sections: server, wal, storage, master, replication, limits"),
    ])
    func unknownKeysAreNamed(yaml: String, path: String, hint: String) {
        let error = #expect(throws: ConfigError.self) {
            try NodeConfig.parse(yaml: yaml, role: .master, source: "c.yaml")
        }
        #expect(error == .unknownKey(path: path, file: "c.yaml"))
        #expect(error?.description.contains(hint) == true, "\(String(describing: error))")
    }

    // MARK: Bad values

    @Test(arguments: [
        ("server:\n  port: 70000", "server.port", "70000", "between 0 and 65535"),
        ("server:\n  port: -1", "server.port", "-1", "between 0 and 65535"),
        ("server:\n  event_loops: 5000", "server.event_loops", "5000", "between 0 and 1024"),
        ("server:\n  idle_timeout: 0s", "server.idle_timeout", "0s", "greater than zero"),
        ("server:\n  idle_timeout: later", "server.idle_timeout", "later", "expected a duration"),
        ("server:\n  address: \"\"", "server.address", "", "must not be empty"),
        ("server:\n  address: 0.0.0.0:8080", "server.address", "0.0.0.0:8080", "server.port"),
        ("wal:\n  directory: \"  \"", "wal.directory", "  ", "must not be empty"),
        ("wal:\n  max_file_size: 10KB", "wal.max_file_size", "10KB", "at least 64KB"),
        ("wal:\n  max_file_size: huge", "wal.max_file_size", "huge", "expected a size"),
        ("wal:\n  sync_interval: 0s", "wal.sync_interval", "0s", "greater than zero"),
        ("wal:\n  sync_interval: soon", "wal.sync_interval", "soon", "expected a duration"),
        ("wal:\n  retention: 1MB", "wal.retention", "1MB", "at least wal.max_file_size (100MB)"),
        ("storage:\n  max_entries: 0", "storage.max_entries", "0", "at least 1"),
        ("storage:\n  eviction_policy: fifo", "storage.eviction_policy", "fifo", "'lru' or 'noeviction'"),
        ("replication:\n  min_acks: -1", "replication.min_acks", "-1", "at least 0"),
        ("replication:\n  ack_timeout: 0ms", "replication.ack_timeout", "0ms", "greater than zero"),
        ("limits:\n  max_key_bytes: 0", "limits.max_key_bytes", "0", "at least 1 byte"),
        ("limits:\n  max_message_bytes: 1MB", "limits.max_message_bytes", "1MB", "largest Set fits"),
        ("limits:\n  max_value_bytes: 8MB", "limits.max_message_bytes", "4MB", "4MB is its default, so set it"),
        ("wal:\n  max_file_size: 2GB", "wal.max_file_size", "2GB", "at most 1GB"),
        (
            "wal:\n  max_file_size: 1GB\n  retention: 512MB", "wal.retention", "512MB",
            "at least wal.max_file_size (1GB)"
        ),
    ])
    func badValuesAreNamed(yaml: String, key: String, value: String, reason: String) {
        let error = #expect(throws: ConfigError.self) {
            try NodeConfig.parse(yaml: yaml, role: .master, source: "c.yaml")
        }
        guard case .invalidValue(let errorKey, let errorValue, let errorReason, let file) = error else {
            Issue.record("expected invalidValue, got \(String(describing: error))")
            return
        }
        #expect(errorKey == key)
        #expect(errorValue == value)
        #expect(errorReason.contains(reason), "\(errorReason)")
        #expect(file == "c.yaml")
    }

    @Test func badValueReadsAsASentence() {
        let error = #expect(throws: ConfigError.self) {
            try NodeConfig.parse(yaml: "server:\n  port: 70000", role: .master, source: "config.yaml")
        }
        #expect(
            error?.description == "config.yaml: invalid value '70000' for 'server.port': must be between 0 and 65535")
    }

    @Test(arguments: [
        ("server:\n  port: abc", "server.port", "a whole number", "'abc'"),
        ("server:\n  port: [1, 2]", "server.port", "a single value", "a list"),
        ("server:\n  port:", "server.port", "a single value", "empty"),
        ("server: 8080", "server", "a mapping of keys", "'8080'"),
        ("wal:\n  - directory", "wal", "a mapping of keys", "a list"),
        ("- server", "", "a mapping of keys", "a list"),
    ])
    func wrongShapesAreNamed(yaml: String, key: String, expected: String, found: String) {
        let error = #expect(throws: ConfigError.self) {
            try NodeConfig.parse(yaml: yaml, role: .master, source: "c.yaml")
        }
        #expect(error == .wrongType(key: key, expected: expected, found: found, file: "c.yaml"))
    }

    // MARK: Roles

    @Test func slaveNeedsAMasterSection() {
        let error = #expect(throws: ConfigError.self) {
            try NodeConfig.parse(yaml: "server:\n  port: 8081", role: .slave, source: "slave.yaml")
        }
        guard case .missingKey(let key, _, let file) = error else {
            Issue.record("expected missingKey, got \(String(describing: error))")
            return
        }
        #expect(key == "master")
        #expect(file == "slave.yaml")
        #expect(error?.description.hasPrefix("slave.yaml: missing key 'master'") == true)
    }

    @Test func slaveMasterSectionNeedsAnAddress() {
        let error = #expect(throws: ConfigError.self) {
            try NodeConfig.parse(yaml: "master:\n  sync_interval: 1s", role: .slave, source: "slave.yaml")
        }
        guard case .missingKey(let key, _, _) = error else {
            Issue.record("expected missingKey, got \(String(describing: error))")
            return
        }
        #expect(key == "master.address")
    }

    @Test func slaveMasterSyncIntervalDefaults() throws {
        let config = try NodeConfig.parse(yaml: "master:\n  address: m:8080", role: .slave, source: "s.yaml")
        #expect(config.master == .init(address: "m:8080", syncInterval: .milliseconds(100)))
    }

    @Test(arguments: [
        ("localhost", "it has no port"),
        ("m:0", "not a number from 1 to 65535"),
        ("::1:8080", "must be in brackets"),
    ])
    func badMasterAddressIsNamed(address: String, reason: String) {
        let error = #expect(throws: ConfigError.self) {
            try NodeConfig.parse(yaml: "master:\n  address: \"\(address)\"", role: .slave, source: "s.yaml")
        }
        guard case .invalidValue(let key, let value, let errorReason, _) = error else {
            Issue.record("expected invalidValue, got \(String(describing: error))")
            return
        }
        #expect(key == "master.address")
        #expect(value == address)
        #expect(errorReason.contains(reason), "\(errorReason)")
    }

    @Test func masterRejectsAMasterSection() {
        let error = #expect(throws: ConfigError.self) {
            try NodeConfig.parse(yaml: "master:\n  address: m:8080", role: .master, source: "m.yaml")
        }
        #expect(error == .keyNotAllowed(key: "master", role: .master, file: "m.yaml"))
        #expect(error?.description.contains("key 'master' is not allowed for a master node") == true)
    }

    // MARK: Files

    @Test func deployedMasterConfigParses() throws {
        let config = try NodeConfig.load(path: Self.repoFile("deploy/master-config.yaml"), role: .master)
        #expect(config.server == .init(address: "0.0.0.0", port: 8080))
        #expect(config.wal.directory.hasPrefix("/var/lib/erdtree/"))
        #expect(config.master == nil)
    }

    @Test func deployedSlaveConfigParses() throws {
        let config = try NodeConfig.load(path: Self.repoFile("deploy/slave-config.yaml"), role: .slave)
        #expect(config.server.address == "0.0.0.0")
        #expect(config.wal.directory.hasPrefix("/var/lib/erdtree/"))
        #expect(config.master?.address == "master:8080")
    }

    @Test func deployedFilesAreRefusedForTheOtherRole() {
        #expect(throws: ConfigError.self) {
            try NodeConfig.load(path: Self.repoFile("deploy/master-config.yaml"), role: .slave)
        }
        #expect(throws: ConfigError.self) {
            try NodeConfig.load(path: Self.repoFile("deploy/slave-config.yaml"), role: .master)
        }
    }

    @Test func malformedYAMLNamesTheLine() {
        let yaml = "server:\n  port: 8080\n  address: [127.0.0.1\nwal:\n  directory: x\n"
        let error = #expect(throws: ConfigError.self) {
            try NodeConfig.parse(yaml: yaml, role: .master, source: "bad.yaml")
        }
        guard case .malformedYAML(let file, let line, let reason) = error else {
            Issue.record("expected malformedYAML, got \(String(describing: error))")
            return
        }
        #expect(file == "bad.yaml")
        #expect((3...5).contains(line))
        #expect(!reason.isEmpty)
        #expect(error?.description.hasPrefix("bad.yaml:\(line): not valid YAML: ") == true)
    }

    @Test func duplicateKeyIsMalformedAndNamed() {
        let error = #expect(throws: ConfigError.self) {
            try NodeConfig.parse(yaml: "server:\n  port: 1\n  port: 2\n", role: .master, source: "dup.yaml")
        }
        guard case .malformedYAML(_, let line, let reason) = error else {
            Issue.record("expected malformedYAML, got \(String(describing: error))")
            return
        }
        #expect(line == 2)
        #expect(reason.contains("'port'"))
    }

    /// Parses `yaml` twenty times: the config fuzz harness found duplicate-key errors whose names
    /// and line changed from one parse to the next, as Yams took them from dictionary order.
    private func expectEveryParseFails(_ yaml: String, line: Int, reason: String) {
        let errors = (0..<20).map { _ in
            Result { () throws(ConfigError) in try NodeConfig.parse(yaml: yaml, role: .master, source: "dup.yaml") }
        }
        let expected = Result<NodeConfig, ConfigError>.failure(
            .malformedYAML(file: "dup.yaml", line: line, reason: reason))
        #expect(errors.allSatisfy { $0 == expected }, "\(Set(errors.map { "\($0)" }))")
    }

    /// Tests/Fuzz/corpus/config/f363c369…: a key that is a mapping, twice, next to a scalar key,
    /// twice, got another error on every parse; such a key is now refused before Yams sees it.
    @Test func duplicateListOrMappingKeyGetsTheSameErrorEveryTime() {
        expectEveryParseFails(
            "wal:\n?  $iectorctoryh:\n/  mterini': 1G\n?  $iectorctoryh:\n/  mterini': 1GBB\n", line: 2,
            reason: "a key must be a name, not a mapping")
    }

    @Test(arguments: [
        ("? [a, b]\n: 1\n", 1, "a list"),
        ("server:\n  port: 1\n  ? {a: 1}\n  : 2\n", 3, "a mapping"),
        ("log: &k text\n*k : 1\n", 2, "an alias"),
        ("wal:\n  - ? - x\n    : 1\n", 2, "a list"),
    ])
    func aKeyThatIsNotANameIsRefusedAtItsLine(yaml: String, line: Int, kind: String) {
        expectEveryParseFails(yaml, line: line, reason: "a key must be a name, not \(kind)")
    }

    /// Tests/Fuzz/corpus/config/d0a36f09…, by its shape: duplicated keys that are lists nested
    /// `depth` deep, one ending in a name and one in a mapping. Yams sorted such keys by comparing
    /// them both ways at every level, 2^depth comparisons: the fuzz input (deeper) held a start
    /// for minutes. They are refused at the first one, before Yams sees them.
    @Test func deeplyNestedListKeysAreRefusedAtTheFirst() {
        let depth = 16
        let nested = { (tail: String) in String(repeating: "- ", count: depth) + tail }
        let yaml = [nested("a"), nested("{b: 1}"), nested("a"), nested("{b: 1}")]
            .map { "? \($0)\n: 1\n" }.joined()
        expectEveryParseFails(yaml, line: 1, reason: "a key must be a name, not a list")
    }

    /// Tests/Fuzz/corpus/config/db719b8e…: `/` and `!tag /` as keys, each twice in one mapping, got
    /// the error at line 2 on one parse and line 8 on the next.
    @Test func keysThatPrintAlikeGetTheSameErrorEveryTime() {
        expectEveryParseFails(
            "a:\n/ : 1\n? !x /\n: 2\n/ : 3\n? !x /\n: 4\n", line: 0,
            reason: "key '/' appears more than once in the same mapping")
    }

    @Test func duplicateScalarKeysAreNamedInOrder() {
        let error = #expect(throws: ConfigError.self) {
            try NodeConfig.parse(
                yaml: "server:\n  port: 1\n  address: a\n  port: 2\n  address: b\n", role: .master, source: "dup.yaml")
        }
        guard case .malformedYAML(_, _, let reason) = error else {
            Issue.record("expected malformedYAML, got \(String(describing: error))")
            return
        }
        #expect(reason == "key 'address', 'port' appears more than once in the same mapping")
    }

    @Test func missingFileIsNamed() {
        let path = "/nonexistent/erdtree-config.yaml"
        let error = #expect(throws: ConfigError.self) {
            try NodeConfig.load(path: path, role: .master)
        }
        guard case .unreadableFile(let errorPath, let reason) = error else {
            Issue.record("expected unreadableFile, got \(String(describing: error))")
            return
        }
        #expect(errorPath == path)
        #expect(reason.lowercased().contains("no such file"), "\(reason)")
        #expect(error?.description.hasPrefix("cannot read config file '\(path)': ") == true)
    }

    @Test func directoryIsNotAConfigFile() {
        let error = #expect(throws: ConfigError.self) {
            try NodeConfig.load(path: NSTemporaryDirectory(), role: .master)
        }
        guard case .unreadableFile = error else {
            Issue.record("expected unreadableFile, got \(String(describing: error))")
            return
        }
    }

    // MARK: host:port

    @Test(arguments: [
        ("127.0.0.1:8080", "127.0.0.1", 8080),
        ("master:8080", "master", 8080),
        ("[::1]:8080", "::1", 8080),
        (" localhost:1 ", "localhost", 1),
        ("example.com:65535", "example.com", 65535),
    ])
    func addressesParse(text: String, host: String, port: Int) throws {
        #expect(try SocketAddressSpec(parsing: text) == SocketAddressSpec(host: host, port: port))
    }

    @Test func addressDescriptionParsesBack() throws {
        for text in ["[::1]:8080", "127.0.0.1:80", "master:8080"] {
            #expect(try SocketAddressSpec(parsing: text).description == text)
        }
    }

    @Test(arguments: [
        "", "localhost", ":8080", "host:", "host:0", "host:65536", "host:80x", "::1:8080",
        "[::1]8080", "[::1", "[]:80", "http://host:80", "host :80",
    ])
    func badAddressesNameTheInput(text: String) {
        let error = #expect(throws: ConfigError.self) { try SocketAddressSpec(parsing: text) }
        guard case .invalidAddress(let input, _) = error else {
            Issue.record("expected invalidAddress, got \(String(describing: error))")
            return
        }
        #expect(input == text)
        #expect(error?.description.hasPrefix("'\(text)' is not a valid address: ") == true)
    }

    /// A file of this repository, found from this source file so the test does not depend on the
    /// working directory `swift test` was started in.
    private static func repoFile(_ relativePath: String) -> String {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()  // Config
            .deletingLastPathComponent()  // ErdtreeNodeTests
            .deletingLastPathComponent()  // Tests
            .deletingLastPathComponent()  // repository root
            .appendingPathComponent(relativePath)
            .path
    }
}
