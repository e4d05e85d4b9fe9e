/// Why a config file (or a `host:port` flag) was refused.
///
/// Every case names the file (or the input) and, for a key, its dotted path such as
/// `server.port`, so the description reads as a one-line sentence the operator can act on:
/// `config.yaml: unknown key 'server.prot' (did you mean 'server.port'?)`.
public enum ConfigError: Error, Equatable, CustomStringConvertible {
    /// The file could not be read at all (missing, a directory, no permission, not UTF-8).
    case unreadableFile(path: String, reason: String)
    /// The text is not YAML; `line` is 1-based, or 0 when the parser gave no position.
    case malformedYAML(file: String, line: Int, reason: String)
    /// A key that is not part of the format, with its dotted path (`wal.sync_intreval`).
    case unknownKey(path: String, file: String)
    /// A key this role needs is absent; `reason` says why it is needed.
    case missingKey(key: String, reason: String, file: String)
    /// A key that is valid in the format but not for this role (`master` on a master).
    case keyNotAllowed(key: String, role: Role, file: String)
    /// The YAML node has the wrong shape: `expected` and `found` are phrases such as
    /// "an integer" and "a list". `key` is empty for the document itself.
    case wrongType(key: String, expected: String, found: String, file: String)
    /// The value has the right shape but is out of range or not in a recognised format.
    case invalidValue(key: String, value: String, reason: String, file: String)
    /// A `host:port` string that does not parse; `input` is the text as given.
    case invalidAddress(input: String, reason: String)

    public var description: String {
        switch self {
        case .unreadableFile(let path, let reason):
            return "cannot read config file '\(path)': \(reason)"
        case .malformedYAML(let file, let line, let reason):
            let place = line > 0 ? "\(file):\(line)" : file
            return "\(place): not valid YAML: \(reason)"
        case .unknownKey(let path, let file):
            return "\(file): unknown key '\(path)'\(ConfigSchema.hint(forUnknownKey: path))"
        case .missingKey(let key, let reason, let file):
            return "\(file): missing key '\(key)': \(reason)"
        case .keyNotAllowed(let key, let role, let file):
            switch role {
            case .slave where key == "ha", .master where key == "ha":
                return "\(file): key 'ha' is not allowed for a \(role) node, whose role is fixed; "
                    + "run `erdtree node` for a role etcd decides"
            case .master:
                return "\(file): key '\(key)' is not allowed for a master node; only a slave follows a master"
            case .slave:
                return "\(file): key '\(key)' is not allowed for a slave node"
            case .node:
                return "\(file): key '\(key)' is not allowed for `erdtree node`, whose master etcd decides"
            }
        case .wrongType(let key, let expected, let found, let file):
            let subject = key.isEmpty ? "the document" : "'\(key)'"
            return "\(file): \(subject) must be \(expected), but it is \(found)"
        case .invalidValue(let key, let value, let reason, let file):
            return "\(file): invalid value '\(value)' for '\(key)': \(reason)"
        case .invalidAddress(let input, let reason):
            return "'\(input)' is not a valid address: \(reason)"
        }
    }
}
