/// A key and its value as etcd holds them (`mvccpb.KeyValue`), with the revisions that say
/// when it was created and last changed.
public struct EtcdKeyValue: Sendable, Equatable {
    public var key: [UInt8]
    public var value: [UInt8]
    /// The store revision that created the key (0 never appears: a key that exists was created).
    public var createRevision: Int64
    /// The store revision of the key's last change.
    public var modRevision: Int64
    /// Changes since the key was created, 1 for a new key; a delete resets it to 0.
    public var version: Int64
    /// The lease the key is attached to, 0 for none.
    public var lease: Int64

    public init(
        key: [UInt8], value: [UInt8], createRevision: Int64, modRevision: Int64, version: Int64, lease: Int64
    ) {
        self.key = key
        self.value = value
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.lease = lease
    }
}

/// One change a watch saw (`mvccpb.Event`): a put carries the key's new value; a delete (or the
/// expiry of the key's lease) carries the key with `modRevision` the revision of the delete.
public struct EtcdEvent: Sendable, Equatable {
    public enum Kind: Sendable {
        case put
        case delete
    }

    public var kind: Kind
    public var kv: EtcdKeyValue

    public init(kind: Kind, kv: EtcdKeyValue) {
        self.kind = kind
        self.kv = kv
    }
}
