import ErdtreeRPC
import ErdtreeWAL
internal import Foundation
import Logging
internal import Yams

extension NodeConfig {
    /// Reads and validates the config file at `path`, or returns `defaults(for: role)` when there is none.
    ///
    /// Called once at startup by `erdtree master|slave [--config FILE]`.
    ///
    /// - Parameters:
    ///   - path: The file given on the command line; `nil` when none was given. Errors name it as given.
    ///   - role: Decides the defaults and whether the `master:` section is required or refused.
    /// - Throws: `ConfigError.unreadableFile` if the file cannot be read, else what
    ///   `parse(yaml:role:source:)` throws.
    public static func load(path: String?, role: Role) throws(ConfigError) -> NodeConfig {
        guard let path else { return defaults(for: role) }
        return try parse(yaml: readFile(path), role: role, source: path)
    }

    /// Parses config YAML; missing keys take the role's defaults, everything present is validated.
    ///
    /// - Parameters:
    ///   - yaml: The file's text. An empty document means "all defaults" — except for a slave,
    ///     which must name its master.
    ///   - role: A slave needs a `master:` section with `address`; a master must not have one.
    ///   - source: The name errors use for this text, usually the file path.
    /// - Throws: `ConfigError` naming `source` and the dotted key: `malformedYAML` (with a line),
    ///   `unknownKey`, `wrongType`, `invalidValue`, `missingKey`, `keyNotAllowed`.
    public static func parse(yaml: String, role: Role, source: String) throws(ConfigError) -> NodeConfig {
        let document = try ConfigSection(document: compose(yaml, source: source), file: source)
        try document.rejectUnknownKeys()
        var config = defaults(for: role)

        if let server = try document.section("server") {
            if let address = try server.nonEmptyString("address") {
                config.server.address = try listenAddress(address, in: server)
            }
            // 0 is allowed: the OS picks a free port, which end-to-end tests rely on.
            config.server.port = try server.integer("port", in: 0...65535) ?? config.server.port
            config.server.eventLoops = try server.integer("event_loops", in: 0...1024) ?? config.server.eventLoops
            if let raw = try server.text("idle_timeout") {
                config.server.idleTimeout = try server.positiveDuration("idle_timeout", raw)
            }
            try parseServerLimits(server, into: &config.server)
            if let tls = try server.section("tls") {
                config.server.tls = try serverTLS(tls)
            }
        }

        if let wal = try document.section("wal") {
            config.wal.directory = try wal.nonEmptyString("directory") ?? config.wal.directory
            if let raw = try wal.text("sync_interval") {
                config.wal.syncInterval =
                    ConfigUnits.trimmed(raw).lowercased() == "always"
                    ? .always : .interval(try wal.positiveDuration("sync_interval", raw))
            }
            // Below 64KB a segment holds too few records to be worth its header and rotation; above
            // 1GB record offsets would not fit the index's 32 bits (WALConfiguration.maxFileSizeLimit).
            config.wal.maxFileSizeBytes =
                try wal.byteSize("max_file_size", in: (64 << 10)...WALConfiguration.maxFileSizeLimit)
                ?? config.wal.maxFileSizeBytes
            config.wal.retentionBytes = try wal.byteSize("retention", in: 1...Int64.max) ?? config.wal.retentionBytes
            if config.wal.retentionBytes < config.wal.maxFileSizeBytes {
                // Retention is counted in whole segments; less than one would keep nothing for slaves.
                throw try wal.invalidCombination(
                    "retention", bytes: config.wal.retentionBytes,
                    "must be at least wal.max_file_size (\(ConfigSection.formatSize(config.wal.maxFileSizeBytes)))")
            }
        }

        if let storage = try document.section("storage") {
            config.storage.maxEntries = try storage.integer("max_entries", in: 1...Int.max) ?? config.storage.maxEntries
            if let raw = try storage.text("eviction_policy") {
                guard let policy = EvictionPolicy(rawValue: ConfigUnits.trimmed(raw).lowercased()) else {
                    throw storage.invalid("eviction_policy", raw, "must be 'lru' or 'noeviction'")
                }
                config.storage.evictionPolicy = policy
            }
        }

        switch role {
        case .master:
            if document.contains("master") {
                throw .keyNotAllowed(key: "master", role: role, file: source)
            }
        case .node:
            config.master = try nodeMaster(document)
        case .slave:
            config.master = try slaveMaster(document, source: source)
        }
        if role == .node {
            config.ha = try ha(document, server: config.server, defaults: config.ha, source: source)
        } else if document.contains("ha") {
            throw .keyNotAllowed(key: "ha", role: role, file: source)
        }

        if let replication = try document.section("replication") {
            config.replication.minAcks =
                try replication.integer("min_acks", in: 0...Int.max) ?? config.replication.minAcks
            config.replication.ackTimeout =
                try replication.positiveDuration("ack_timeout") ?? config.replication.ackTimeout
        }

        if let limits = try document.section("limits") {
            config.limits = try parseLimits(limits, defaults: config.limits)
        }
        if let auth = try document.section("auth") {
            config.auth = try parseAuth(auth, source: source)
        }
        if let log = try document.section("log") {
            config.log.level = try log.oneOf("level", Logger.Level.self) ?? config.log.level
            config.log.format = try log.oneOf("format", LogFormat.self) ?? config.log.format
        }
        try checkBufferedBytes(config, server: try document.section("server"), source: source)
        return config
    }

    /// `auth:` turns authentication on, so it must say who may do what: an empty token list
    /// would lock everyone out, and is refused rather than guessed at.
    private static func parseAuth(_ auth: ConfigSection, source: String) throws(ConfigError) -> Auth {
        guard let items = try auth.sectionList("tokens") else {
            throw .missingKey(
                key: "auth.tokens", reason: "auth needs at least one token (name, role, token_file)", file: source)
        }
        guard !items.isEmpty else { throw auth.invalid("tokens", "[]", "must list at least one token") }
        var tokens: [Auth.Token] = []
        for item in items {
            func required(_ key: String) throws(ConfigError) -> String {
                guard let value = try item.nonEmptyString(key) else {
                    throw .missingKey(
                        key: item.dotted(key), reason: "every token needs name, role and token_file", file: source)
                }
                return value
            }
            let name = try required("name")
            if tokens.contains(where: { $0.name == name }) {
                throw item.invalid("name", name, "another token already has this name")
            }
            let roleText = try required("role")
            guard let role = AccessRole(rawValue: roleText.lowercased()) else {
                let roles = AccessRole.allCases.map(\.rawValue).joined(separator: ", ")
                throw item.invalid("role", roleText, "must be one of \(roles)")
            }
            tokens.append(Auth.Token(name: name, role: role, tokenFile: try required("token_file")))
        }
        var metrics = Auth.MetricsAccess.open
        if let text = try auth.nonEmptyString("metrics") {
            guard let access = Auth.MetricsAccess(rawValue: text.lowercased()) else {
                throw auth.invalid("metrics", text, "must be open or token")
            }
            metrics = access
        }
        return Auth(tokens: tokens, metrics: metrics)
    }

    /// `master:` of `erdtree node`: how to dial whichever node etcd makes the master (its token
    /// and TLS), never an address, which is etcd's to give.
    private static func nodeMaster(_ document: ConfigSection) throws(ConfigError) -> Master? {
        guard let section = try document.section("master") else { return nil }
        if section.contains("address") {
            throw .keyNotAllowed(key: "master.address", role: .node, file: section.file)
        }
        let fallback = defaults(for: .slave).master?.syncInterval ?? .milliseconds(100)
        return Master(
            address: "", syncInterval: try section.positiveDuration("sync_interval") ?? fallback,
            tokenFile: try section.nonEmptyString("token_file"),
            tls: try section.section("tls").map { section throws(ConfigError) in try clientTLS(section) })
    }

    /// The abuse limits of `server:` (DESIGN §11): how many connections and streams, how large a
    /// header list, how many request bytes held, how long a handshake may take.
    private static func parseServerLimits(_ section: ConfigSection, into server: inout Server) throws(ConfigError) {
        server.maxConnections = try section.integer("max_connections", in: 1...1_000_000) ?? server.maxConnections
        server.maxConcurrentStreams =
            try section.integer("max_concurrent_streams", in: 1...100_000) ?? server.maxConcurrentStreams
        // Below 1KB even a gRPC request's own fields do not fit; above 16MB nghttp2's
        // CONTINUATION limit refuses the block before our check could.
        if let bytes = try section.byteSize("max_header_list_bytes", in: (1 << 10)...(16 << 20)) {
            server.maxHeaderListBytes = Int(bytes)
        }
        // The connection window is twice the per-connection cap and must fit HTTP/2's 31 bits.
        if let bytes = try section.byteSize("max_buffered_bytes_per_connection", in: (64 << 10)...(1 << 30)) {
            server.maxBufferedBytesPerConnection = Int(bytes)
        }
        if let bytes = try section.byteSize("max_buffered_bytes", in: (64 << 10)...Int64(Int.max)) {
            server.maxBufferedBytes = Int(bytes)
        }
        server.handshakeTimeout = try section.positiveDuration("handshake_timeout") ?? server.handshakeTimeout
    }

    /// One whole message of `limits.max_message_bytes` must fit under each buffered-bytes cap, or
    /// the largest request could never arrive; and the process cap cannot be below one connection's.
    private static func checkBufferedBytes(_ config: NodeConfig, server: ConfigSection?, source: String)
        throws(ConfigError)
    {
        let needed = Int64(config.limits.maxMessageBytes) + 1024
        let perConnection = Int64(config.server.maxBufferedBytesPerConnection)
        if perConnection < needed {
            throw try conflict(
                "max_buffered_bytes_per_connection", in: server, bytes: perConnection, source: source,
                "must be at least limits.max_message_bytes + 1KB (\(ConfigSection.formatSize(needed))), so the largest request fits"
            )
        }
        let total = Int64(config.server.maxBufferedBytes)
        if total < perConnection {
            throw try conflict(
                "max_buffered_bytes", in: server, bytes: total, source: source,
                "must be at least server.max_buffered_bytes_per_connection (\(ConfigSection.formatSize(perConnection)))"
            )
        }
    }

    private static func conflict(
        _ key: String, in server: ConfigSection?, bytes: Int64, source: String, _ reason: String
    ) throws(ConfigError) -> ConfigError {
        if let server { return try server.invalidCombination(key, bytes: bytes, reason) }
        let shown = ConfigSection.formatSize(bytes)
        return .invalidValue(
            key: "server.\(key)", value: shown, reason: "\(reason); \(shown) is its default, so set it explicitly",
            file: source)
    }

    /// The `master:` section of a slave: required, and so is its address, because defaulting to
    /// localhost would make a deployed slave quietly follow nothing.
    private static func slaveMaster(_ document: ConfigSection, source: String) throws(ConfigError) -> Master {
        guard let section = try document.section("master") else {
            throw .missingKey(
                key: "master", reason: "a slave needs master.address to know whom to replicate from", file: source)
        }
        guard let address = try section.nonEmptyString("address") else {
            throw .missingKey(key: "master.address", reason: "a slave needs the master's host:port", file: source)
        }
        do {
            _ = try SocketAddressSpec(parsing: address)
        } catch {
            throw section.invalid("address", address, addressReason(error))
        }
        let fallback = defaults(for: .slave).master?.syncInterval ?? .milliseconds(100)
        return Master(
            address: address, syncInterval: try section.positiveDuration("sync_interval") ?? fallback,
            tokenFile: try section.nonEmptyString("token_file"),
            tls: try section.section("tls").map { section throws(ConfigError) in try clientTLS(section) })
    }

    /// `server.tls`: a certificate without its key (or the reverse) cannot serve, and a client
    /// CA alone would promise mutual TLS on a port that has no TLS at all.
    private static func serverTLS(_ section: ConfigSection) throws(ConfigError) -> ServerTLS {
        let certFile = try section.nonEmptyString("cert_file")
        let keyFile = try section.nonEmptyString("key_file")
        let clientCAFile = try section.nonEmptyString("client_ca_file")
        guard let certFile, let keyFile else {
            let missing = certFile == nil ? "cert_file" : "key_file"
            let reason =
                clientCAFile != nil && certFile == nil && keyFile == nil
                ? "client_ca_file turns on mutual TLS, which needs the server's own cert_file and key_file"
                : "server.tls needs both cert_file and key_file"
            throw .missingKey(key: section.dotted(missing), reason: reason, file: section.file)
        }
        return ServerTLS(certFile: certFile, keyFile: keyFile, clientCAFile: clientCAFile)
    }

    /// `master.tls` and `ha.etcd.tls`: every key is optional (no `ca_file` trusts the system's
    /// roots), but a client certificate comes with its key.
    private static func clientTLS(_ section: ConfigSection) throws(ConfigError) -> ClientTLS {
        let tls = ClientTLS(
            caFile: try section.nonEmptyString("ca_file"), serverName: try section.nonEmptyString("server_name"),
            certFile: try section.nonEmptyString("cert_file"), keyFile: try section.nonEmptyString("key_file"))
        if (tls.certFile == nil) != (tls.keyFile == nil) {
            let (given, missing) = tls.certFile == nil ? ("key_file", "cert_file") : ("cert_file", "key_file")
            throw .missingKey(
                key: section.dotted(missing),
                reason: "\(section.dotted(given)) is set; a client certificate needs both",
                file: section.file)
        }
        return tls
    }

    /// The `ha:` section of `erdtree node`. Every key has a default except where the default
    /// would be wrong in a deployment: `advertise` must be an address others can dial, so a node
    /// listening on every interface must name one.
    private static func ha(_ document: ConfigSection, server: Server, defaults: HA?, source: String)
        throws(ConfigError) -> HA
    {
        let section = try document.section("ha")
        let etcd = try section?.section("etcd")
        let endpoints = try etcd?.stringList("endpoints") ?? defaults?.etcdEndpoints ?? ["127.0.0.1:2379"]
        for endpoint in endpoints {
            do {
                _ = try SocketAddressSpec(parsing: endpoint)
            } catch {
                throw (etcd ?? document).invalid("endpoints", endpoint, addressReason(error))
            }
        }
        let listensEverywhere = ["0.0.0.0", "::"].contains(server.address)
        let advertise: String
        if let section, let given = try section.nonEmptyString("advertise") {
            let spec: SocketAddressSpec
            do {
                spec = try SocketAddressSpec(parsing: given)
            } catch {
                throw section.invalid("advertise", given, addressReason(error))
            }
            if ["0.0.0.0", "::"].contains(spec.host) {
                throw section.invalid("advertise", given, "must be an address other nodes can dial, not a wildcard")
            }
            advertise = given
        } else if listensEverywhere {
            throw .missingKey(
                key: "ha.advertise",
                reason: "server.address \(server.address) listens on every interface; say where others reach this node",
                file: source)
        } else {
            advertise = "\(server.address):\(server.port)"
        }
        let cluster = try section?.nonEmptyString("cluster") ?? defaults?.cluster ?? "main"
        if let section, cluster.contains("/") { throw section.invalid("cluster", cluster, "must not contain '/'") }
        let name = try section?.nonEmptyString("name") ?? advertise
        if let section, name.contains("/") { throw section.invalid("name", name, "must not contain '/'") }
        let ttl = try section?.positiveDuration("lease_ttl") ?? defaults?.leaseTTL ?? .seconds(2)
        if let section, ttl < .seconds(1) || ttl.components.attoseconds != 0 {
            throw section.invalid(
                "lease_ttl", "\(ttl)", "must be whole seconds, at least 1s (etcd counts leases in seconds)")
        }
        let etcdTLS = try etcd?.section("tls").map { section throws(ConfigError) in try clientTLS(section) }
        return HA(
            etcdEndpoints: endpoints, cluster: cluster, name: name, advertise: advertise, leaseTTL: ttl,
            etcdTLS: etcdTLS ?? defaults?.etcdTLS)
    }

    private static func parseLimits(_ limits: ConfigSection, defaults: Limits) throws(ConfigError) -> Limits {
        // The gRPC length prefix is 32 bits, so no message can be larger than this.
        let maxMessage = Int64(UInt32.max)
        var result = defaults
        if let bytes = try limits.byteSize("max_key_bytes", in: 1...maxMessage) { result.maxKeyBytes = Int(bytes) }
        if let bytes = try limits.byteSize("max_value_bytes", in: 1...maxMessage) { result.maxValueBytes = Int(bytes) }
        if let bytes = try limits.byteSize("max_message_bytes", in: 1...maxMessage) {
            result.maxMessageBytes = Int(bytes)
        }
        // A Set of the largest key and value must fit in one message; 1KB covers its framing.
        let needed = result.maxKeyBytes + result.maxValueBytes + 1024
        if result.maxMessageBytes < needed {
            throw try limits.invalidCombination(
                "max_message_bytes", bytes: Int64(result.maxMessageBytes),
                "must be at least max_key_bytes + max_value_bytes + 1KB (\(needed) bytes) so the largest Set fits in one message"
            )
        }
        return result
    }

    /// `server.address` is a host to bind, not `host:port`; brackets around an IPv6 literal are
    /// dropped because the socket layer wants the bare address.
    private static func listenAddress(_ address: String, in server: ConfigSection) throws(ConfigError) -> String {
        if address.hasPrefix("["), address.hasSuffix("]"), address.count > 2 {
            return String(address.dropFirst().dropLast())
        }
        if address.contains(where: { $0 == " " || $0 == "\t" || $0 == "/" }) {
            throw server.invalid("address", address, "must be a host name or IP address, without spaces or '/'")
        }
        if address.filter({ $0 == ":" }).count == 1 {
            throw server.invalid("address", address, "must be a host without a port; put the port in server.port")
        }
        return address
    }

    private static func addressReason(_ error: ConfigError) -> String {
        if case .invalidAddress(_, let reason) = error { return reason }
        return error.description
    }

    private static func compose(_ yaml: String, source: String) throws(ConfigError) -> Node? {
        if let key = YAMLKeyScan.firstOddKey(in: yaml) {
            throw .malformedYAML(file: source, line: key.line, reason: "a key must be a name, not \(key.kind)")
        }
        do {
            return try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw malformed(error, yaml: yaml, source: source)
        } catch {
            throw .malformedYAML(file: source, line: 0, reason: "\(error)")
        }
    }

    /// Keeps libyaml's problem text and line, dropping Yams' snippet (the error is one log line).
    private static func malformed(_ error: YamlError, yaml: String, source: String) -> ConfigError {
        func reason(_ context: YamlError.Context?, _ problem: String) -> String {
            guard let context, !context.text.isEmpty else { return problem }
            return "\(context.text): \(problem)"
        }
        switch error {
        case .scanner(let context, let problem, let mark, _),
            .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            return .malformedYAML(file: source, line: mark.line, reason: reason(context, problem))
        case .reader(let problem, let offset, _, _):
            let line = offset.map { yaml.utf8.prefix($0).filter { $0 == UInt8(ascii: "\n") }.count + 1 } ?? 0
            return .malformedYAML(file: source, line: line, reason: problem)
        case .duplicatedKeysInMapping(let duplicates, let context):
            // Every key is a scalar here (YAMLKeyScan refused the rest). Two keys that print alike
            // but that Yams tells apart (`/` and `!tag /`) are two groups: it takes the line from
            // whichever its dictionary yields first, which is not the same from one parse to the
            // next (found by the config fuzz harness). Their line is not known.
            let distinct = Set(duplicates)
            let names = distinct.sorted().map { "'\($0)'" }.joined(separator: ", ")
            return .malformedYAML(
                file: source, line: distinct.count == duplicates.count ? context.mark.line : 0,
                reason: "key \(names) appears more than once in the same mapping")
        default:
            return .malformedYAML(file: source, line: 0, reason: "\(error)")
        }
    }

    private static func readFile(_ path: String) throws(ConfigError) -> String {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            // Foundation's own text ("The file doesn't exist.") hides errno; the POSIX error under it says it plainly.
            let nsError = error as NSError
            let reason: String
            if let posix = nsError.userInfo[NSUnderlyingErrorKey] as? POSIXError {
                reason = String(cString: strerror(posix.code.rawValue))
            } else {
                reason = nsError.localizedDescription
            }
            throw .unreadableFile(path: path, reason: reason.prefix(1).lowercased() + reason.dropFirst())
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw .unreadableFile(path: path, reason: "it is not UTF-8 text")
        }
        return text
    }
}
