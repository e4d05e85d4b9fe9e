import Testing

@testable import ErdtreeNode

/// The abuse limits of `server:` (DESIGN §11): defaults, parsing, and the errors a bad value gets.
@Suite struct ServerLimitsConfigTests {
    private func parse(_ yaml: String) throws -> NodeConfig {
        try NodeConfig.parse(yaml: yaml, role: .master, source: "config.yaml")
    }

    private func error(_ yaml: String) -> String? {
        #expect(throws: ConfigError.self) { try parse(yaml) }?.description
    }

    @Test func defaultsAreDocumented() {
        let server = NodeConfig.defaults(for: .master).server
        #expect(server.maxConnections == 10_000)
        #expect(server.maxConcurrentStreams == 100)
        #expect(server.maxHeaderListBytes == 64 << 10)
        #expect(server.maxBufferedBytesPerConnection == 32 << 20)
        #expect(server.maxBufferedBytes == 256 << 20)
        #expect(server.handshakeTimeout == .seconds(10))
    }

    @Test func everyKeyParses() throws {
        let server = try parse(
            """
            server:
              max_connections: 500
              max_concurrent_streams: 16
              max_header_list_bytes: 16KB
              max_buffered_bytes_per_connection: 8MB
              max_buffered_bytes: 64MB
              handshake_timeout: 2s
            """
        ).server
        #expect(server.maxConnections == 500)
        #expect(server.maxConcurrentStreams == 16)
        #expect(server.maxHeaderListBytes == 16 << 10)
        #expect(server.maxBufferedBytesPerConnection == 8 << 20)
        #expect(server.maxBufferedBytes == 64 << 20)
        #expect(server.handshakeTimeout == .seconds(2))
    }

    @Test func zeroConnectionsIsRefused() {
        #expect(
            error("server:\n  max_connections: 0")
                == "config.yaml: invalid value '0' for 'server.max_connections': must be between 1 and 1000000")
    }

    @Test func aZeroHandshakeTimeoutIsRefused() {
        #expect(error("server:\n  handshake_timeout: 0s")?.contains("must be greater than zero") == true)
    }

    @Test func aHeaderListTooSmallForAnyRequestIsRefused() {
        #expect(
            error("server:\n  max_header_list_bytes: 100")
                == "config.yaml: invalid value '100' for 'server.max_header_list_bytes': must be at least 1KB")
    }

    @Test func aConnectionCapBelowTheLargestMessageIsRefused() {
        let message = error("server:\n  max_buffered_bytes_per_connection: 1MB")
        #expect(
            message
                == "config.yaml: invalid value '1MB' for 'server.max_buffered_bytes_per_connection': must be at least limits.max_message_bytes + 1KB (4097KB), so the largest request fits"
        )
    }

    @Test func aLargerMessageLimitBlamesTheDefaultConnectionCap() {
        let message = error("limits:\n  max_message_bytes: 64MB")
        #expect(message?.contains("'server.max_buffered_bytes_per_connection'") == true, "\(message ?? "")")
        #expect(message?.contains("32MB is its default, so set it explicitly") == true, "\(message ?? "")")
    }

    @Test func aProcessCapBelowOneConnectionsIsRefused() {
        let message = error("server:\n  max_buffered_bytes: 16MB")
        #expect(
            message
                == "config.yaml: invalid value '16MB' for 'server.max_buffered_bytes': must be at least server.max_buffered_bytes_per_connection (32MB)"
        )
    }

    @Test func aMisspelledLimitGetsAHint() {
        #expect(error("server:\n  max_conections: 5")?.contains("did you mean 'server.max_connections'?") == true)
    }
}
