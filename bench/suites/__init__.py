"""The suites, one module each: the servers and loads of a load family, or the restarts of a
data family, and the section each adds to the report."""

from __future__ import annotations

from bench.loads import Load
from bench.servers import Instance
from bench.suites import (
    cluster, compacted, connect, durable, evicted, failover, grpc, memory, recovery, replication, switchover, tls,
)

# The modules that define server instances and loads.
LOAD_SUITES = (grpc, connect, durable, evicted, replication, failover)

# The order of a round: systems alternate, and each Erdtree load sits next to the anchors it
# is compared with.
ROUND_ORDER = (
    "get", "get_auth", "get_header", "connect_proto", "connect_json", "connect_json_h1", "ngpost", "range", "put", "set_always", "redis_always",
    "set", "set_ha_on", "redis_everysec", "get1", "ngpost1", "get_evicted", "get_resident", "get_evicted4", "get_resident4",
    "lag_erdtree", "lag_redis", "set_alone", "set_slaves", "redis_alone", "redis_replicas",
)

LOADS: dict[str, Load] = {load.id: load for suite in LOAD_SUITES for load in suite.LOADS}
INSTANCES: dict[str, Instance] = {i.name: i for suite in LOAD_SUITES for i in suite.INSTANCES}
assert sorted(LOADS) == sorted(ROUND_ORDER), "every load has its place in a round"

__all__ = ["cluster", "compacted", "durable", "evicted", "failover", "memory", "recovery", "replication", "switchover", "tls", "LOADS",
           "INSTANCES", "ROUND_ORDER"]
