"""grpc: Erdtree Get and Set over gRPC against nghttpd (the HTTP/2 ceiling of this machine)
and etcd (a gRPC key-value store), h2load on both sides.

Get and Set also serve the connect and durable suites (and the replication suite's Set
without slaves), etcd Put the durable one.
"""

from bench import servers
from bench.loads import Load
from bench.servers import Instance

INSTANCES = [
    # The main Erdtree (wal.sync_interval "1s", the default: fsync at most once a second).
    Instance("erdtree", "erdtree", servers.erdtree("1s"), servers.erdtree_recheck),
    Instance("nghttpd", "nghttpd", servers.nghttpd, servers.nghttpd_recheck),
    Instance("etcd", "etcd", servers.etcd, servers.etcd_recheck),
    # The main Erdtree's config with auth.tokens: the same Get, sending a read token.
    Instance("erdtree_auth", "erdtree", servers.erdtree_auth, servers.erdtree_auth_recheck),
]

GET = "/erdtree.v1.KVStore/Get"
SET = "/erdtree.v1.KVStore/Set"

LOADS = [
    Load("get", "erdtree", "Erdtree Get (c4 m32)", frozenset({"grpc", "connect"}), GET, "get"),
    Load("ngpost", "nghttpd", "nghttpd POST 100 B (c4 m32)", frozenset({"grpc"}), "/file20", "post",
         protocol="plain"),
    Load("range", "etcd", "etcd Range serializable (c4 m32)", frozenset({"grpc"}), "/etcdserverpb.KV/Range", "range"),
    Load("put", "etcd", "etcd Put 100 B (c4 m32)", frozenset({"grpc", "durable"}), "/etcdserverpb.KV/Put", "put"),
    # Also the failover suite's Set with ha off (`erdtree master`), against its set_ha_on.
    Load("set", "erdtree", "Erdtree Set 100 B, wal 1s (c4 m32)", frozenset({"grpc", "durable", "failover"}), SET,
         "set"),
    Load("get_auth", "erdtree_auth", "Erdtree Get, read token (c4 m32)", frozenset({"grpc"}), GET, "get",
         protocol="grpc-read-token"),
    # The same bytes on the wire to the main Erdtree, auth off (it ignores the header): what the
    # token check itself costs, apart from carrying and decoding the header.
    Load("get_header", "erdtree", "Erdtree Get, same header, auth off (c4 m32)", frozenset({"grpc"}), GET, "get",
         protocol="grpc-read-token"),
    Load("get1", "erdtree", "Erdtree Get (c1 m1)", frozenset({"grpc"}), GET, "get", clients=1, streams=1),
    Load("ngpost1", "nghttpd", "nghttpd POST 100 B (c1 m1)", frozenset({"grpc"}), "/file20", "post", clients=1,
         streams=1, protocol="plain"),
]
