/// Which part a node plays in replication; chosen on the command line, not in the config file.
///
/// A master takes every write and pushes it to its slaves; a slave follows `master.address` and
/// serves reads (docs/replication.md); a node's role is decided by a coordinator (etcd) through
/// its `ha:` section (docs/high-availability.md). The role decides the embedded defaults and which
/// of the `master:` and `ha:` sections are required or refused.
public enum Role: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case master
    case slave
    case node

    public var description: String { rawValue }
}
