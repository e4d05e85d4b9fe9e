/// Why the engine refused a request.
public enum StorageError: Error, Sendable, Equatable {
    /// A configured limit would be exceeded: `name` is the setting, as in the config file.
    case limitExceeded(name: String, limit: Int, actual: Int)
}

extension StorageError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .limitExceeded(let name, let limit, let actual):
            "\(name) reached: the store holds \(actual) keys (max: \(limit)) and eviction_policy noeviction "
                + "refuses new keys; overwrite or delete existing keys, or raise \(name)"
        }
    }
}
