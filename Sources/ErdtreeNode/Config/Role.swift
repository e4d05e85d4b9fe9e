/// Which part a node plays in replication; chosen on the command line, not in the config file.
///
/// A master takes every write and pushes it to its slaves; a slave follows `master.address` and
/// serves reads (docs/replication.md). The role decides the embedded defaults and whether a `master:` section
/// is required (slave) or refused (master).
public enum Role: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case master
    case slave

    public var description: String { rawValue }
}
