"""What the interop tests, the cluster tests and the benchmark share about running `erdtree`.

`harness.node`: write a node's config, start `erdtree master|slave` with it and wait until it
says SERVING, stop it. `harness.pki`: the certificates of the TLS tests and benchmark, made by
openssl. Users put `tests/` on `sys.path` and import `harness` (nothing is
installed): tests/interop/conftest.py and support.py, tests/cluster/hosts.py, bench/.
"""
