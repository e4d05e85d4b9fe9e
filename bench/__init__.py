"""Erdtree's benchmark: Erdtree next to what users would run instead, in one run on this machine.

    .venv/bin/python -m bench        (from the repository root; `make bench` builds first)

etcd 3.4 (a gRPC key-value store), Redis 7 with its append-only file (the durable-write,
recovery, memory, replication and switchover anchors) and nghttpd (the HTTP/2 ceiling of the box); Gets of
evicted values are compared with Erdtree's own resident Gets. All servers listen on loopback
from a temp dir; the real clients drive each load in turn (h2load, redis-benchmark, repl_probe),
alternating systems round by round, and the report quotes medians and per-round ratios, never
a lone absolute figure (the machine is shared). docs/benchmarks.md explains every row and
every knob (bench/settings.py reads them).

Layout, after etcd's tools/benchmark (one file per load, shared flags and report beside them):

    settings.py       the BENCH_* knobs, checked once
    run.py            one run, step by step: servers, warm-up, rounds, data suites, report
    suites/           one module per family: its servers, loads and report section
                      (grpc, connect, durable, evicted, replication; recovery, memory,
                      compacted, cluster, switchover)
    loads.py          a load and how one run of it is measured
    servers.py        starting Erdtree (through tests/harness, as the tests do), Redis, etcd, nghttpd
    h2load.py, redis_tools.py, probe.py (repl_probe.c), checks.py   the clients
    bodies.py         request bodies; datasets.py, erdtree_wal.py (crc32c.c)   data sets
    records.py        what was measured; report.py   the tables
    processes.py      every process started, stopped whatever happens; profile.py   callgrind
"""
