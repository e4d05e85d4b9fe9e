import Testing

@testable import ErdtreeNode

/// The `log:` section (docs/configuration.md#log): defaults, every value, and refusals naming the key.
@Suite struct LogConfigTests {
    private func parse(_ yaml: String) throws -> NodeConfig {
        try NodeConfig.parse(yaml: yaml, role: .master, source: "config.yaml")
    }

    private func error(_ yaml: String) -> String? {
        #expect(throws: ConfigError.self) { try parse(yaml) }?.description
    }

    @Test(arguments: [Role.master, .slave, .node])
    func defaultsAreInfoAndText(role: Role) {
        #expect(NodeConfig.defaults(for: role).log == .init(level: .info, format: .text))
    }

    @Test func everyLevelParses() throws {
        for level in ["trace", "debug", "info", "notice", "warning", "error", "critical"] {
            #expect(try parse("log:\n  level: \(level)").log.level.rawValue == level)
        }
    }

    @Test func levelAndFormatIgnoreCase() throws {
        let log = try parse("log:\n  level: Debug\n  format: JSON").log
        #expect(log == .init(level: .debug, format: .json))
    }

    @Test func aMissingKeyKeepsItsDefault() throws {
        #expect(try parse("log:\n  format: json").log == .init(level: .info, format: .json))
        #expect(try parse("log:\n  level: error").log == .init(level: .error, format: .text))
    }

    @Test func anUnknownLevelIsRefusedNamingTheKeyAndTheLevels() {
        #expect(
            error("log:\n  level: verbose")
                == "config.yaml: invalid value 'verbose' for 'log.level': "
                + "must be one of trace, debug, info, notice, warning, error, critical")
    }

    @Test func anUnknownFormatIsRefusedNamingTheKey() {
        #expect(
            error("log:\n  format: logfmt")
                == "config.yaml: invalid value 'logfmt' for 'log.format': must be one of text, json")
    }

    @Test func aListIsNotALevel() {
        #expect(error("log:\n  level: [info]") == "config.yaml: 'log.level' must be a single value, but it is a list")
    }

    @Test func aMisspeltKeyGetsTheHint() {
        #expect(error("log:\n  formt: json") == "config.yaml: unknown key 'log.formt' (did you mean 'log.format'?)")
        #expect(error("level: debug") == "config.yaml: unknown key 'level' (did you mean 'log.level'?)")
    }
}
