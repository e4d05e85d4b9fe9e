/// Every key of the config format, in one place, so the reader's unknown-key check and the
/// error's did-you-mean hint cannot drift apart. docs/configuration.md documents the same list.
enum ConfigSchema {
    /// Section names in file order, each with its keys.
    static let sections: [(name: String, keys: [String])] = [
        (
            "server",
            [
                "address", "port", "event_loops", "idle_timeout", "max_connections", "max_concurrent_streams",
                "max_header_list_bytes", "max_buffered_bytes_per_connection", "max_buffered_bytes",
                "handshake_timeout", "tls",
            ]
        ),
        ("server.tls", ["cert_file", "key_file", "client_ca_file"]),
        ("wal", ["directory", "sync_interval", "max_file_size", "retention"]),
        ("storage", ["max_entries", "eviction_policy"]),
        ("master", ["address", "sync_interval", "token_file", "tls"]),
        ("master.tls", clientTLSKeys),
        ("replication", ["min_acks", "ack_timeout"]),
        ("limits", ["max_key_bytes", "max_value_bytes", "max_message_bytes"]),
        ("ha", ["etcd", "cluster", "name", "advertise", "lease_ttl"]),
        ("ha.etcd", ["endpoints", "tls"]),
        ("ha.etcd.tls", clientTLSKeys),
        ("auth", ["tokens", "metrics"]),
        // One item of a list of mappings; `keys(in:)` reads `auth.tokens[2]` as this.
        ("auth.tokens[]", ["name", "role", "token_file"]),
    ]

    /// Every section through which this node dials out over TLS takes the same keys.
    static let clientTLSKeys = ["ca_file", "server_name", "cert_file", "key_file"]

    /// The keys allowed directly under `sectionPath` ("" is the document: the section names).
    static func keys(in sectionPath: String) -> [String] {
        if sectionPath.isEmpty { return sections.map(\.name).filter { !$0.contains(".") } }
        let schemaPath = sectionPath.replacing(/\[[0-9]+\]/, with: "[]")
        return sections.first { $0.name == schemaPath }?.keys ?? []
    }

    /// A parenthesised hint to append to "unknown key 'path'": the likely intended key if one is
    /// close (a typo, camelCase, or a key put in the wrong section), else the keys that are allowed.
    static func hint(forUnknownKey path: String) -> String {
        if let suggestion = suggestion(forUnknownKey: path) {
            return " (did you mean '\(suggestion)'?)"
        }
        let parent = path.split(separator: ".").dropLast().joined(separator: ".")
        let allowed = keys(in: parent)
        guard !allowed.isEmpty else { return "" }
        let what = parent.isEmpty ? "known sections" : "known keys in '\(parent)'"
        return " (\(what): \(allowed.joined(separator: ", ")))"
    }

    static func suggestion(forUnknownKey path: String) -> String? {
        let parts = path.split(separator: ".").map(String.init)
        guard let leaf = parts.last, parts.count <= 2 else { return nil }
        let parent = parts.count == 2 ? parts[0] : ""
        let siblings = keys(in: parent).map { parent.isEmpty ? $0 : "\(parent).\($0)" }
        let wanted = normalized(leaf)

        // Same word, different spelling convention: `syncInterval`, `sync-interval`, `PORT`.
        if let match = siblings.first(where: { normalized(lastComponent($0)) == wanted }) { return match }

        // A typo: the closest sibling, if it is close enough to be what was meant.
        let limit = wanted.count >= 5 ? 2 : 1
        let ranked = siblings.map { ($0, editDistance(wanted, normalized(lastComponent($0)))) }
            .filter { $0.1 <= limit }
            .min { $0.1 < $1.1 }
        if let (match, _) = ranked { return match }

        // The right key in the wrong place: `port` at the top level, `server.directory`. Only
        // suggest when exactly one section has it, so the hint never guesses between two.
        let homes = sections.filter { $0.name != parent && $0.keys.contains { normalized($0) == wanted } }
        if homes.count == 1, let home = homes.first, let key = home.keys.first(where: { normalized($0) == wanted }) {
            return "\(home.name).\(key)"
        }
        return nil
    }

    private static func lastComponent(_ path: String) -> String {
        path.split(separator: ".").last.map(String.init) ?? path
    }

    private static func normalized(_ key: String) -> [Character] {
        Array(key.lowercased().filter { $0 != "_" && $0 != "-" })
    }

    /// Optimal-string-alignment distance: Levenshtein plus adjacent transposition, so `prot` is
    /// one edit from `port`, as a reader would count it.
    private static func editDistance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous2 = [Int](repeating: 0, count: b.count + 1)
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    current[j] = min(current[j], previous2[j - 2] + 1)
                }
            }
            (previous2, previous, current) = (previous, current, previous2)
        }
        return previous[b.count]
    }
}
