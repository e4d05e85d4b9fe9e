/// What a bounded store does when another value would exceed its bound (docs/configuration.md `storage`).
public enum EvictionPolicy: Sendable, Equatable {
    /// Drop values from memory, least recently used first (approximated by CLOCK);
    /// the keys stay indexed and their values stay in the WAL.
    case lru
    /// Keep every value in memory and refuse new keys once the bound is reached.
    case noeviction
}
