#!/usr/bin/env bash
# Compares Erdtree with what users would run instead, in one run on this
# machine: etcd 3.4 (a gRPC key-value store), Redis 7 with its append-only
# file (the durable-write, recovery and memory anchors) and nghttpd (the HTTP/2
# ceiling of the box); Gets of evicted values are compared with Erdtree's own
# resident Gets. All servers listen on loopback from a temp dir; h2load
# (redis-benchmark for Redis) drives each load in turn, alternating systems
# round by round, and the summary quotes medians and per-round ratios, never a
# lone absolute figure (the machine is shared). docs/benchmarks.md explains
# every row.
#
#   scripts/bench.sh        (`make bench` runs `scripts/install-deps.sh bench` first)
#
# Environment:
#   ERDTREE_BIN=PATH        bench this binary instead of building .build-bench
#   BENCH_ROUNDS=3          rounds; a round runs every load once (and one restart
#                           of each system in the recovery suite)
#   BENCH_REQUESTS=N        requests per run, every load; unset: sized per load
#                           from a warm-up so one run takes ~BENCH_SECONDS
#   BENCH_SECONDS=6         target length of one run
#   BENCH_SYSTEMS="erdtree nghttpd etcd redis"   subset to bench (rows lacking a side print —)
#   BENCH_SUITES="grpc connect durable recovery memory evicted compacted replication cluster"   subset of the suites:
#                           grpc: Get/Set against nghttpd and etcd;
#                           connect: Connect Get (binary and JSON over h2c, JSON
#                           over HTTP/1.1) against gRPC Get on the same server;
#                           durable: Set with wal.sync_interval "always" and "1s"
#                           against etcd Put and Redis appendfsync always/everysec;
#                           recovery: restart on 1,000,000 logged writes, Erdtree
#                           replaying its WAL, Redis its AOF;
#                           memory: RSS per key with those 1,000,000 keys loaded
#                           (by the same replay), Erdtree vs Redis;
#                           evicted: Get of keys whose values were evicted
#                           (storage.max_entries 1, read back from the WAL) vs
#                           Get of resident keys, Erdtree vs Erdtree;
#                           compacted: startup with 1,000,000 keys after the
#                           server compacted a log where each was written twice;
#                           replication: a master with 2 slaves vs Redis with 2
#                           replicas: lag under a fixed write rate (probes),
#                           catch-up of an empty slave 1,000,000 entries behind,
#                           master Set throughput with 2 slaves vs without;
#                           cluster: the same master and 2 slaves on three hosts
#                           (network namespaces, 1 ms added each way on the
#                           replication links): Set throughput and lag (root only)
#   BENCH_RECOVERY_RECORDS=1000000   writes in the recovery and memory data sets,
#                           keys in the compacted one (and the entries an empty
#                           slave catches up on)
#   BENCH_REPL_RATE=20000   writes/s of the background load while lag is probed
#   BENCH_REPL_SAMPLES=300  lag probes per system over all rounds
#   BENCH_EVENT_LOOPS=1     Erdtree server.event_loops; 1 matches nghttpd's single
#                           worker and leaves the other core to h2load (0 = per core)
#   BENCH_OUT=FILE          also write the report (markdown) to FILE
#   BENCH_KEEP=1            keep the temp dir (server logs, configs, h2load output)
#   BENCH_PROFILE=1         then run a small Get load on Erdtree under callgrind
#                           and print its top functions
#   BENCH_PROFILE_REQUESTS=20000
#   BENCH_PROFILE_LOAD=get  the load profiled: get (gRPC), connect_proto or
#                           connect_json (Connect unary over h2c)
set -euo pipefail

# ERDTREE_BIN may be relative to where the script was started; the servers
# run from a temp dir, so pin it down before moving.
if [ -n "${ERDTREE_BIN:-}" ]; then ERDTREE_BIN=$(realpath -m -- "$ERDTREE_BIN"); fi
cd "$(dirname "$0")/.."
repo=$PWD
helpers=$repo/scripts/bench

rounds=${BENCH_ROUNDS:-3}
seconds=${BENCH_SECONDS:-6}
fixed_requests=${BENCH_REQUESTS:-}
systems=" ${BENCH_SYSTEMS:-erdtree nghttpd etcd redis} "
suites=" ${BENCH_SUITES:-grpc connect durable recovery memory evicted compacted replication cluster} "
recovery_records=${BENCH_RECOVERY_RECORDS:-1000000}
repl_rate=${BENCH_REPL_RATE:-20000}
repl_samples=${BENCH_REPL_SAMPLES:-300}
event_loops=${BENCH_EVENT_LOOPS:-1}
profile=${BENCH_PROFILE:-0}
profile_requests=${BENCH_PROFILE_REQUESTS:-20000}
profile_load=${BENCH_PROFILE_LOAD:-get}

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }
has() { [[ $systems == *" $1 "* ]]; }
suite() { [[ $suites == *" $1 "* ]]; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found (package $2): run scripts/install-deps.sh bench"; }

[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive integer, got '$rounds'"
[[ $seconds =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECONDS must be a positive integer, got '$seconds'"
[[ -z $fixed_requests || $fixed_requests =~ ^[1-9][0-9]*$ ]] \
  || die "BENCH_REQUESTS must be a positive integer, got '$fixed_requests'"
case $profile_load in
  get | connect_proto | connect_json) ;;
  *) die "BENCH_PROFILE_LOAD: unknown load '$profile_load' (get, connect_proto, connect_json)" ;;
esac
[[ $recovery_records =~ ^[1-9][0-9]*$ ]] \
  || die "BENCH_RECOVERY_RECORDS must be a positive integer, got '$recovery_records'"
[[ $repl_rate =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPL_RATE must be a positive integer, got '$repl_rate'"
[[ $repl_samples =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPL_SAMPLES must be a positive integer, got '$repl_samples'"
for s in $systems; do
  case $s in erdtree | nghttpd | etcd | redis) ;; *) die "BENCH_SYSTEMS: unknown system '$s' (erdtree, nghttpd, etcd, redis)" ;; esac
done
for s in $suites; do
  case $s in
    grpc | connect | durable | recovery | memory | evicted | compacted | replication | cluster) ;;
    *) die "BENCH_SUITES: unknown suite '$s' (grpc, connect, durable, recovery, memory, evicted, compacted, replication, cluster)" ;;
  esac
done
# The durable suite runs Erdtree with both settings side by side, so one
# setting for the whole run no longer means anything.
if [ -n "${BENCH_WAL_SYNC:-}" ]; then
  die "BENCH_WAL_SYNC is gone: the durable suite benches wal.sync_interval \"always\" and \"1s\" in the same run"
fi
need h2load nghttp2-client
need curl curl
need python3 python3
if has nghttpd; then need nghttpd nghttp2-server; fi
if has etcd; then need etcd etcd-server; fi
if has redis; then
  need redis-server redis-server
  need redis-cli redis-tools
  need redis-benchmark redis-tools
fi
if has erdtree; then need protoc protobuf-compiler; fi
# The replication probes are compiled here (scripts/bench/repl_probe.c) against
# libnghttp2, which the build dependencies install.
if { suite replication || suite cluster; } && { has erdtree || has redis; }; then
  cc=${CC:-cc}
  command -v "$cc" > /dev/null 2>&1 || cc=gcc
  need "$cc" gcc
fi
if has erdtree && [ "$profile" = 1 ]; then
  need valgrind valgrind
  need callgrind_control valgrind
  need objcopy binutils
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/erdtree-bench.XXXXXX")
pids=()
# Slaves and replicas (also in pids), stopped before the other servers, so
# that no master stops with followers attached (they would redial it).
follower_pids=()
# The replication suite's servers, for CPU accounting: instance -> pid, and
# instance -> its followers' pids (space-separated).
declare -A instance_pid=() followers_of=()

# Servers get SIGTERM (Erdtree drains and exits; callgrind writes its file),
# then SIGKILL if they are still there after 5 s.
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
client_pid=
client_pids=()
cleanup() {
  local pid
  if [ -n "$client_pid" ]; then kill -KILL "$client_pid" 2>/dev/null || true; fi
  for pid in "${client_pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${follower_pids[@]}" "${pids[@]}"; do stop_pid "$pid"; done
  if [ -n "${cluster_tag:-}" ]; then "$repo/.venv/bin/python" "$repo/tests/cluster/hosts.py" down "$cluster_tag"; fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then note "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Ports the kernel just handed out; a race with another tenant is possible but
# shows up as a server that fails to start, which wait_port reports.
read -r port_erdtree port_erdtree_always port_nghttpd port_etcd port_etcd_peer \
  port_redis_always port_redis_everysec port_recovery_erdtree port_recovery_redis port_profile \
  port_erdtree_evicted port_erdtree_resident port_compacted port_erdtree_repl port_erdtree_slave1 port_erdtree_slave2 \
  port_redis_repl port_redis_replica1 port_redis_replica2 port_catchup_slave port_catchup_replica < <(
  python3 -c 'import socket
socks = [socket.socket() for _ in range(21)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))'
)

wait_port() { # port pid name log [seconds]
  local port=$1 pid=$2 name=$3 log=$4 limit=${5:-30} i
  for ((i = 0; i < limit * 10; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$log" >&2
      die "$name exited before listening on 127.0.0.1:$port (log above: $log)"
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  tail -n 20 "$log" >&2
  die "$name did not listen on 127.0.0.1:$port within ${limit}s (log above: $log)"
}

now_us() { local t=${EPOCHREALTIME/[.,]/}; echo "$t"; }

# Polls `ready ARGS...` every 10 ms until it succeeds; dies with the server's
# log tail if the server exits first, or after 300 s.
wait_recovered() { # pid dir what ready-command args...
  local pid=$1 dir=$2 what=$3 i
  shift 3
  for ((i = 0; ; i++)); do
    if "$@"; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$dir/server.log" >&2
      die "$what: the server exited (log above: $dir/server.log)"
    fi
    [ $i -lt 30000 ] || die "$what: not ready within 300 s (log: $dir/server.log)"
    sleep 0.01
  done
}

# --- request bodies -------------------------------------------------------

# Reads hit bench-key; the write loads go to another key, so the read key
# keeps one version (etcd keeps every revision of a key until compaction).
key=bench-key
write_key=bench-write-key
value=$(python3 -c 'print(("erdtree-bench-value-" + "v" * 100)[:100], end="")')
printf '%s' "$value" > "$tmp/value.bin"
printf '%s' "$value" > "$tmp/post.bin"
mkdir -p "$tmp/www"
printf '%s' "01234567890123456789" > "$tmp/www/file20"

if has erdtree; then
  proto=api/erdtree/v1/kvstore.proto
  [ -f "$proto" ] || die "$proto not found: Erdtree's request bodies are encoded from it"
  encode() { # message-type text-format out
    printf '%s\n' "$2" | protoc --encode="erdtree.v1.$1" -Iapi erdtree/v1/kvstore.proto > "$tmp/$1.pb" \
      || die "protoc could not encode erdtree.v1.$1 from $proto"
    python3 "$helpers/grpc_body.py" frame < "$tmp/$1.pb" > "$3"
  }
  encode GetRequest "key: \"$key\"" "$tmp/get.bin"
  # Connect bodies: the bare message, and its JSON.
  printf 'key: "%s"\n' "$key" | protoc --encode=erdtree.v1.GetRequest -Iapi erdtree/v1/kvstore.proto > "$tmp/get.pb"
  printf '{"key":"%s"}' "$key" > "$tmp/get.json"
  encode SetRequest "key: \"$key\" value: \"$value\"" "$tmp/preload-set.bin"
  encode SetRequest "key: \"$write_key\" value: \"$value\"" "$tmp/set.bin"
  # The evicted suite: evicted_keys keys with a value each that names its key,
  # so a read-back of the wrong record shows. Process i of a load Gets key i.
  evicted_keys=16
  evicted_values=()
  if suite evicted; then
    for ((i = 0; i < evicted_keys; i++)); do
      evicted_values[i]=$(python3 -c 'import sys; print(("erdtree-evicted-value-%s-" % sys.argv[1] + "v" * 100)[:100], end="")' "$i")
      encode GetRequest "key: \"evicted-key-$i\"" "$tmp/evicted-get.$i.bin"
      encode SetRequest "key: \"evicted-key-$i\" value: \"${evicted_values[i]}\"" "$tmp/evicted-set.$i.bin"
    done
  fi
fi
if has etcd; then
  python3 "$helpers/grpc_body.py" etcd-range "$key" > "$tmp/range.bin"
  python3 "$helpers/grpc_body.py" etcd-put "$key" "$tmp/value.bin" > "$tmp/preload-put.bin"
  python3 "$helpers/grpc_body.py" etcd-put "$write_key" "$tmp/value.bin" > "$tmp/put.bin"
fi

# --- loads ----------------------------------------------------------------
# id: system (server instance), path, body, clients, streams per client, gRPC
# headers?, label, suites it belongs to. Redis loads are driven by
# redis-benchmark (kind redis): 128 connections with one request each, the
# same 128 requests in flight as h2load's c4 m32. A load with load_procs set
# (kind multi) runs that many h2load processes at once, process i sending
# BODY.i.bin for body BODY: h2load repeats one body, and the evicted suite
# needs one key per client.

declare -A load_system load_path load_body load_clients load_streams load_grpc load_label load_suites load_procs load_lag
define_load() {
  load_system[$1]=$2 load_path[$1]=$3 load_body[$1]=$4
  load_clients[$1]=$5 load_streams[$1]=$6 load_grpc[$1]=$7 load_label[$1]=$8 load_suites[$1]=" $9 "
}
define_load get erdtree /erdtree.v1.KVStore/Get "$tmp/get.bin" 4 32 1 "Erdtree Get (c4 m32)" "grpc connect"
# The connect suite: the same Get as Connect unary, the headers picked by the
# gRPC column (proto, json, json-h1: HTTP/1.1, where 128 connections with one
# request each keep the 128 in flight of c4 m32).
define_load connect_proto erdtree /erdtree.v1.KVStore/Get "$tmp/get.pb" 4 32 proto \
  "Erdtree Connect Get, binary, h2c (c4 m32)" connect
define_load connect_json erdtree /erdtree.v1.KVStore/Get "$tmp/get.json" 4 32 json \
  "Erdtree Connect Get, JSON, h2c (c4 m32)" connect
define_load connect_json_h1 erdtree /erdtree.v1.KVStore/Get "$tmp/get.json" 128 1 json-h1 \
  "Erdtree Connect Get, JSON, HTTP/1.1 (c128)" connect
define_load ngpost nghttpd /file20 "$tmp/post.bin" 4 32 0 "nghttpd POST 100 B (c4 m32)" grpc
define_load range etcd /etcdserverpb.KV/Range "$tmp/range.bin" 4 32 1 "etcd Range serializable (c4 m32)" grpc
define_load put etcd /etcdserverpb.KV/Put "$tmp/put.bin" 4 32 1 "etcd Put 100 B (c4 m32)" "grpc durable"
define_load set_always erdtree_always /erdtree.v1.KVStore/Set "$tmp/set.bin" 4 32 1 \
  "Erdtree Set 100 B, wal always (c4 m32)" durable
define_load redis_always redis_always - - 128 1 0 "Redis SET 100 B, appendfsync always (c128)" durable
define_load set erdtree /erdtree.v1.KVStore/Set "$tmp/set.bin" 4 32 1 "Erdtree Set 100 B, wal 1s (c4 m32)" "grpc durable"
define_load redis_everysec redis_everysec - - 128 1 0 "Redis SET 100 B, appendfsync everysec (c128)" durable
define_load get1 erdtree /erdtree.v1.KVStore/Get "$tmp/get.bin" 1 1 1 "Erdtree Get (c1 m1)" grpc
define_load ngpost1 nghttpd /file20 "$tmp/post.bin" 1 1 0 "nghttpd POST 100 B (c1 m1)" grpc
# The evicted suite: the same loads against storage.max_entries 1 (the keys
# evict one another: a Get whose value another key's read-back evicted reads
# it back from the WAL) and against a bound that keeps every key resident.
# 16 processes x c1 m2 (32 in flight): each connection has at most 2 Gets of
# its key outstanding, so nearly every Get finds its value evicted. 4 x c1 m32
# has the 128 in flight of c4 m32, but the server reads a connection's Gets in
# bursts, and after the first read-back the rest of a burst finds the value
# resident: from a tenth to three quarters of its Gets go to disk, so that row
# is shown without a goal.
define_load get_evicted erdtree_evicted /erdtree.v1.KVStore/Get "$tmp/evicted-get" 1 2 1 \
  "Erdtree Get, 16 keys, max_entries 1 (16 × c1 m2)" evicted
define_load get_resident erdtree_resident /erdtree.v1.KVStore/Get "$tmp/evicted-get" 1 2 1 \
  "Erdtree Get, 16 keys, all resident (16 × c1 m2)" evicted
define_load get_evicted4 erdtree_evicted /erdtree.v1.KVStore/Get "$tmp/evicted-get" 1 32 1 \
  "Erdtree Get, 4 keys, max_entries 1 (4 × c1 m32)" evicted
define_load get_resident4 erdtree_resident /erdtree.v1.KVStore/Get "$tmp/evicted-get" 1 32 1 \
  "Erdtree Get, 4 keys, all resident (4 × c1 m32)" evicted
load_procs[get_evicted]=16 load_procs[get_resident]=16 load_procs[get_evicted4]=4 load_procs[get_resident4]=4
# The replication suite (see "replication" below). The lag loads (kind lag) are
# a background write load at BENCH_REPL_RATE on a master with 2 slaves while
# repl_probe writes its own keys there and reads each back from a slave until
# it shows: h2load --rps for Erdtree (4 clients × m32, the grpc suite's shape),
# repl_probe redis-load for Redis (4 connections, at most 32 SETs in flight
# each: redis-benchmark has no rate option). The other four are the master's
# Set throughput with its 2 slaves attached and without (the grpc suite's and
# the durable suite's everysec shapes), each master with wal 1s / everysec.
define_load lag_erdtree erdtree_repl /erdtree.v1.KVStore/Set "$tmp/set.bin" 4 32 1 \
  "Erdtree lag, 2 slaves" replication
define_load lag_redis redis_repl - - 4 32 0 "Redis lag, 2 replicas" replication
define_load set_alone erdtree /erdtree.v1.KVStore/Set "$tmp/set.bin" 4 32 1 \
  "Erdtree Set 100 B, wal 1s, no slaves (c4 m32)" replication
define_load set_slaves erdtree_repl /erdtree.v1.KVStore/Set "$tmp/set.bin" 4 32 1 \
  "Erdtree Set 100 B, wal 1s, 2 slaves (c4 m32)" replication
define_load redis_alone redis_everysec - - 128 1 0 "Redis SET 100 B, everysec, no replicas (c128)" replication
define_load redis_replicas redis_repl - - 128 1 0 "Redis SET 100 B, everysec, 2 replicas (c128)" replication
load_lag[lag_erdtree]=1 load_lag[lag_redis]=1
# Timed (h2load -D BENCH_SECONDS) rather than sized from the warm-up: the
# suite stays about as long when another tenant slows the machine down.
declare -A load_timed=([set_alone]=1 [set_slaves]=1)
declare -A load_cpu=([set_alone]=1 [set_slaves]=1 [redis_alone]=1 [redis_replicas]=1)

# Server instances and the system each belongs to: Erdtree runs twice (the
# main instance with wal.sync_interval "1s", another with "always"), Redis
# twice (appendfsync always, everysec).
declare -A instance_system=([erdtree]=erdtree [erdtree_always]=erdtree [nghttpd]=nghttpd [etcd]=etcd
  [redis_always]=redis [redis_everysec]=redis [erdtree_evicted]=erdtree [erdtree_resident]=erdtree
  [erdtree_repl]=erdtree [redis_repl]=redis)
declare -A instance_port=([erdtree]=$port_erdtree [erdtree_always]=$port_erdtree_always
  [nghttpd]=$port_nghttpd [etcd]=$port_etcd [redis_always]=$port_redis_always
  [redis_everysec]=$port_redis_everysec [erdtree_evicted]=$port_erdtree_evicted
  [erdtree_resident]=$port_erdtree_resident [erdtree_repl]=$port_erdtree_repl [redis_repl]=$port_redis_repl)
load_kind() {
  if [ -n "${load_lag[$1]:-}" ]; then
    echo lag
  elif [ "${instance_system[${load_system[$1]}]}" = redis ]; then
    echo redis
  elif [ -n "${load_procs[$1]:-}" ]; then
    echo multi
  else
    echo h2load
  fi
}

# The order of a round: systems alternate, and each Erdtree load sits next to
# the anchors it is compared with.
# suite_loads: what the selected suites hold, whatever BENCH_SYSTEMS says (the
# report shows the rows of these, with — for a system left out).
loads=()
suite_loads=()
declare -A instance_used
for id in get connect_proto connect_json connect_json_h1 ngpost range put set_always redis_always set redis_everysec \
  get1 ngpost1 get_evicted get_resident \
  get_evicted4 get_resident4 lag_erdtree lag_redis set_alone set_slaves redis_alone redis_replicas; do
  selected=0
  for s in $suites; do
    if [[ ${load_suites[$id]} == *" $s "* ]]; then selected=1; fi
  done
  if [ $selected = 1 ]; then suite_loads+=("$id"); fi
  if [ $selected = 1 ] && has "${instance_system[${load_system[$id]}]}"; then
    loads+=("$id")
    instance_used[${load_system[$id]}]=1
  fi
done
uses() { [ -n "${instance_used[$1]:-}" ]; }
[ ${#loads[@]} -gt 0 ] || { { suite recovery || suite memory; } && { has erdtree || has redis; }; } \
  || { { suite compacted || suite cluster; } && has erdtree; } \
  || die "BENCH_SYSTEMS and BENCH_SUITES select nothing to run"

load_url() { echo "http://127.0.0.1:${instance_port[${load_system[$1]}]}${load_path[$1]}"; }

# h2load's arguments for the protocol of a load (its gRPC column).
load_headers() { # load-id -> appends to args
  case "${load_grpc[$1]}" in
    1) args+=(-H 'content-type: application/grpc' -H 'te: trailers') ;;
    proto) args+=(-H 'content-type: application/proto') ;;
    json) args+=(-H 'content-type: application/json') ;;
    json-h1) args+=(--h1 -H 'content-type: application/json') ;;
  esac
}

h2load_run() { # load-id out-file h2load-args...
  local id=$1 out=$2
  shift 2
  local args=(-c "${load_clients[$id]}" -m "${load_streams[$id]}" -t 1 -d "${load_body[$id]}")
  load_headers "$id"
  # In the background so that a signal to this script acts at once (bash
  # defers traps until a foreground child exits).
  h2load "${args[@]}" "$@" "$(load_url "$id")" > "$out" 2>&1 &
  client_pid=$!
  if ! wait "$client_pid"; then
    client_pid=
    cat "$out" >&2
    die "h2load failed on ${load_label[$id]}"
  fi
  client_pid=
}

# A multi load: load_procs[id] h2load processes at once, process i with body
# BODY.i.bin, output OUT.i and, given a log prefix, --log-file LOG.i; the
# same other h2load arguments for all.
h2load_multi_run() { # load-id out-prefix log-prefix-or-empty h2load-args...
  local id=$1 out=$2 log=$3 i pid failed=
  shift 3
  local args=(-c "${load_clients[$id]}" -m "${load_streams[$id]}" -t 1) log_args=()
  load_headers "$id"
  client_pids=()
  for ((i = 0; i < load_procs[$id]; i++)); do
    if [ -n "$log" ]; then log_args=(--log-file "$log.$i"); fi
    h2load "${args[@]}" "${log_args[@]}" -d "${load_body[$id]}.$i.bin" "$@" "$(load_url "$id")" > "$out.$i" 2>&1 &
    client_pids+=($!)
  done
  for i in "${!client_pids[@]}"; do
    pid=${client_pids[$i]}
    if ! wait "$pid"; then failed+=" $i"; fi
  done
  client_pids=()
  for i in $failed; do
    cat "$out.$i" >&2
    die "h2load process $i failed on ${load_label[$id]}"
  done
}
# -> "succeeded seconds" over the processes of a multi load: every request
# that succeeded, and the time until the last process finished.
h2load_multi_total() { # load-id out-prefix
  local i
  for ((i = 0; i < load_procs[$1]; i++)); do
    # h2load prints the duration as 1.23s, 456.78ms or 901us.
    awk '/^requests:/ {n = $8}
      /^finished in/ {
        t = $3; sub(/,$/, "", t)
        scale = t ~ /ms$/ ? 1e-3 : t ~ /us$/ ? 1e-6 : 1
        sub(/[mu]?s$/, "", t); t *= scale
      }
      END {print n, t}' "$2.$i"
  done | awk '{n += $1; if ($2 > t) t = $2} END {print n, t}'
}

# h2load counts a response as succeeded from :status alone, so anything but
# every request answered 2xx is a broken run, not a slow one. A timing-based
# (-D) run may count one more 2xx than "succeeded": a response that arrived as
# the clock stopped. (gRPC errors ride in trailers under :status 200:
# grpc_check samples those.)
h2load_check() { # load-id out-file expected-requests (empty: timing-based)
  local id=$1 out=$2 want=$3 done ok failed errored timeout twoxx
  read -r done ok failed errored timeout < <(awk '/^requests:/ {print $6, $8, $10, $12, $14}' "$out")
  twoxx=$(awk '/^status codes:/ {print $3}' "$out")
  if [ -z "$done" ] || [ "$failed" != 0 ] || [ "$errored" != 0 ] || [ "$timeout" != 0 ] \
    || [ "$ok" = 0 ] || { [ -n "$want" ] && { [ "$ok" != "$want" ] || [ "$ok" != "$twoxx" ]; }; } \
    || { [ -z "$want" ] && [ "$twoxx" -lt "$ok" ]; }; then
    cat "$out" >&2
    die "${load_label[$id]}: ${ok:-?} of ${want:-$done} requests succeeded with 2xx (h2load output above)"
  fi
}

h2load_rps() { awk '/^finished in/ {print $4}' "$1"; }

# redis-benchmark has no duration option and prints its own percentiles: one
# run gives req/s, p50 and p99 (its latency histogram costs it little, unlike
# h2load's per-request log). It reports errors only on stderr and carries on,
# so redis_run checks the server's own count of SET calls instead.
redis_set_calls() { # port -> "calls failed+rejected"
  redis-cli -h 127.0.0.1 -p "$1" info commandstats | tr -d '\r' | awk -F'[:,=]' '
    $1 == "cmdstat_set" {
      for (i = 2; i < NF; i += 2) v[$i] = $(i + 1)
      print v["calls"] + 0, v["failed_calls"] + v["rejected_calls"]
    }
    END { if (!NR) print 0, 0 }' | tail -n 1
}
redis_run() { # load-id out-file requests
  local id=$1 out=$2 n=$3 port=${instance_port[${load_system[$1]}]} calls0 bad0 calls1 bad1
  read -r calls0 bad0 < <(redis_set_calls "$port")
  redis-benchmark -h 127.0.0.1 -p "$port" -t set -d 100 -c "${load_clients[$id]}" -P 1 -n "$n" --csv \
    > "$out" 2>&1 &
  client_pid=$!
  if ! wait "$client_pid"; then
    client_pid=
    cat "$out" >&2
    die "redis-benchmark failed on ${load_label[$id]}"
  fi
  client_pid=
  read -r calls1 bad1 < <(redis_set_calls "$port")
  if [ $((calls1 - calls0)) != "$n" ] || [ "$bad1" != "$bad0" ] || ! grep -q '^"SET",' "$out"; then
    cat "$out" >&2
    die "${load_label[$id]}: Redis counted $((calls1 - calls0)) SETs ($((bad1 - bad0)) failed or rejected) for $n sent (redis-benchmark output above)"
  fi
}
# -> "req/s p50_us p99_us" from the SET line of redis-benchmark --csv
redis_figures() {
  awk -F'","|"' '$2 == "SET" {printf "%s %.0f %.0f\n", $3, $6 * 1000, $8 * 1000}' "$1"
}

# --- correctness samples ----------------------------------------------------

grpc_check() { # url body-file what [text the response must contain]
  local url=$1 body=$2 what=$3 expect=${4:-} status
  if ! curl --http2-prior-knowledge -sS --max-time 10 -D "$tmp/check.headers" -o "$tmp/check.body" \
    --data-binary @"$body" -H 'content-type: application/grpc' -H 'te: trailers' "$url"; then
    die "$what: curl could not reach $url"
  fi
  # Trailers follow the headers in curl's -D output; the last grpc-status wins.
  status=$(tr -d '\r' < "$tmp/check.headers" | awk 'tolower($1) == "grpc-status:" {s = $2} END {print s}')
  if [ "$status" != 0 ]; then
    cat "$tmp/check.headers" >&2
    die "$what: $url answered grpc-status '${status:-<none>}', want 0 (headers and trailers above)"
  fi
  if [ -n "$expect" ] && ! grep -aqF -- "$expect" "$tmp/check.body"; then
    od -c "$tmp/check.body" | head -n 20 >&2
    die "$what: the answer from $url does not hold the preloaded value (body above)"
  fi
}

nghttpd_check() {
  local url code
  url=$(load_url ngpost)
  code=$(curl --http2-prior-knowledge -sS --max-time 10 -o "$tmp/check.body" -w '%{http_code}' \
    --data-binary @"$tmp/post.bin" "$url") || die "nghttpd: curl could not reach $url"
  [ "$code" = 200 ] && [ "$(cat "$tmp/check.body")" = 01234567890123456789 ] \
    || die "nghttpd: POST $url answered $code with $(wc -c < "$tmp/check.body") bytes, want 200 with the 20-byte file"
}

# Writes the key the Get/Range loads read and samples each body once.
preload_erdtree() { # port what
  local base="http://127.0.0.1:$1/erdtree.v1.KVStore"
  grpc_check "$base/Set" "$tmp/preload-set.bin" "$2 Set"
  grpc_check "$base/Set" "$tmp/set.bin" "$2 Set"
  read_check_erdtree "$1" "$2"
}
read_check_erdtree() { # port what
  grpc_check "http://127.0.0.1:$1/erdtree.v1.KVStore/Get" "$tmp/get.bin" "$2 Get" "$value"
}
# The evicted suite's keys: Set in order, so that under max_entries 1 only the
# last stays resident, then each read back with its own value.
preload_evicted() { # port what
  local i
  for ((i = 0; i < evicted_keys; i++)); do
    grpc_check "http://127.0.0.1:$1/erdtree.v1.KVStore/Set" "$tmp/evicted-set.$i.bin" "$2 Set evicted-key-$i"
  done
  read_check_evicted "$@"
}
read_check_evicted() { # port what
  local i
  for ((i = 0; i < evicted_keys; i++)); do
    grpc_check "http://127.0.0.1:$1/erdtree.v1.KVStore/Get" "$tmp/evicted-get.$i.bin" \
      "$2 Get evicted-key-$i" "${evicted_values[i]}"
  done
}
# Admin/Status through the CLI: "disk reads: N" counts the Gets answered by
# reading an evicted value back from the WAL; "resident values: N".
erdtree_status_field() { # port field-name
  local out
  out=$("$erdtree_bin" status --server "127.0.0.1:$1") || die "erdtree status --server 127.0.0.1:$1 failed"
  awk -v f="$2:" 'index($0, f) == 1 {sub(/^[^:]*:[ \t]*/, ""); print $1}' <<< "$out"
}
erdtree_disk_reads() { # port
  local n
  n=$(erdtree_status_field "$1" "disk reads")
  [[ $n =~ ^[0-9]+$ ]] || die "erdtree status on 127.0.0.1:$1 has no 'disk reads:' count"
  echo "$n"
}
preload_etcd() {
  local base="http://127.0.0.1:$port_etcd/etcdserverpb.KV"
  grpc_check "$base/Put" "$tmp/preload-put.bin" "etcd Put"
  grpc_check "$base/Put" "$tmp/put.bin" "etcd Put"
  read_check_etcd
}
read_check_etcd() {
  grpc_check "http://127.0.0.1:$port_etcd/etcdserverpb.KV/Range" "$tmp/range.bin" "etcd Range" "$value"
}
preload_redis() { # port what
  local reply
  reply=$(redis-cli -h 127.0.0.1 -p "$1" set "$key" "$value" 2>&1) || true
  [ "$reply" = OK ] || die "$2: SET $key answered '$reply', want OK"
  read_check_redis "$@"
}
read_check_redis() { # port what
  local reply
  reply=$(redis-cli -h 127.0.0.1 -p "$1" get "$key" 2>&1) || true
  [ "$reply" = "$value" ] || die "$2: GET $key answered '$reply', want the preloaded value"
}

# Health/Check with an empty request; SERVING is HealthCheckResponse{status: 1},
# i.e. the message bytes 08 01 behind the 5-byte gRPC frame header.
printf '\0\0\0\0\0' > "$tmp/health.bin"
erdtree_serving() { # port
  local status
  curl --http2-prior-knowledge -sS --max-time 10 -D "$tmp/health.headers" -o "$tmp/health.body" \
    --data-binary @"$tmp/health.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$1/grpc.health.v1.Health/Check" 2>/dev/null || return 1
  status=$(tr -d '\r' < "$tmp/health.headers" | awk 'tolower($1) == "grpc-status:" {s = $2} END {print s}')
  [ "$status" = 0 ] && [ "$(od -An -tx1 "$tmp/health.body" | tr -d ' \n')" = 00000000020801 ]
}

# --- servers ----------------------------------------------------------------

# With a wal.max_file_size (e.g. 64MB), wal.retention gets the same size, the
# least the server accepts: only the newest sealed segments within it are kept
# as written, everything older may be compacted.
erdtree_config() { # dir port sync-interval [storage.max_entries] [wal.max_file_size]
  mkdir -p "$1"
  {
    echo "server:"
    echo "  address: 127.0.0.1"
    echo "  port: $2"
    echo "  event_loops: $event_loops"
    echo "wal:"
    echo "  directory: $1/wal"
    echo "  sync_interval: \"$3\""
    if [ -n "${5:-}" ]; then
      echo "  max_file_size: $5"
      echo "  retention: $5"
    fi
    if [ -n "${4:-}" ]; then
      echo "storage:"
      echo "  max_entries: $4"
    fi
  } > "$1/erdtree.yaml"
}

# A slave's config: erdtree_config's, plus the master it follows.
erdtree_slave_config() { # dir port master-port [storage.max_entries]
  erdtree_config "$1" "$2" 1s "${4:-}"
  printf 'master:\n  address: 127.0.0.1:%s\n' "$3" >> "$1/erdtree.yaml"
}

# Starts a server in the background with its dir as cwd (so nothing it writes
# by default lands in the repo); its pid ends up in started_pid and pids.
started_pid=
erdtree_start() { # dir [master|slave]
  (cd "$1" && exec "$erdtree_bin" "${2:-master}" --config "$1/erdtree.yaml") > "$1/server.log" 2>&1 &
  started_pid=$!
  pids+=("$started_pid")
}
redis_start() { # dir port appendfsync [more redis-server arguments]
  mkdir -p "$1"
  (cd "$1" && exec redis-server --bind 127.0.0.1 --port "$2" --dir "$1" --save '' \
    --appendonly yes --appendfsync "$3" "${@:4}") > "$1/server.log" 2>&1 &
  started_pid=$!
  pids+=("$started_pid")
}
redis_linked() { # port: a replica whose link to its master is up and not syncing
  local info
  info=$(redis-cli -h 127.0.0.1 -p "$1" info replication 2>/dev/null | tr -d '\r') || return 1
  grep -q '^master_link_status:up$' <<< "$info" && grep -q '^master_sync_in_progress:0$' <<< "$info"
}
forget_pid() { # pid: stopped already, so cleanup must not signal a reused pid
  local kept=() p
  for p in "${pids[@]}"; do if [ "$p" != "$1" ]; then kept+=("$p"); fi; done
  pids=("${kept[@]}")
}

if has erdtree; then
  if [ -n "${ERDTREE_BIN:-}" ]; then
    erdtree_bin=$ERDTREE_BIN
    [ -x "$erdtree_bin" ] || die "ERDTREE_BIN=$erdtree_bin is not an executable"
    erdtree_label="erdtree $erdtree_bin"
  else
    need swift "the Swift toolchain"
    note "building erdtree (release, .build-bench)"
    # nice: the build shares the cores with whatever else runs here; the
    # benchmark itself is not niced.
    nice -n 10 swift build -c release -Xswiftc -enforce-exclusivity=unchecked --product erdtree --scratch-path .build-bench >&2 \
      || die "release build of erdtree failed"
    erdtree_bin="$(swift build -c release -Xswiftc -enforce-exclusivity=unchecked --scratch-path .build-bench --show-bin-path)/erdtree"
    # The build takes the work tree as it is, so say when it differs from HEAD.
    erdtree_label="erdtree $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    if [ -n "$(git status --porcelain -- Sources Package.swift 2>/dev/null)" ]; then
      erdtree_label+=" + uncommitted changes"
    fi
  fi
fi

# The main Erdtree (Get, and Set with the default "1s") and the "always" one.
for instance in erdtree erdtree_always; do
  if uses $instance; then
    sync=1s
    if [ $instance = erdtree_always ]; then sync=always; fi
    erdtree_config "$tmp/$instance" "${instance_port[$instance]}" "$sync"
    erdtree_start "$tmp/$instance"
    instance_pid[$instance]=$started_pid
    wait_port "${instance_port[$instance]}" "$started_pid" "$instance" "$tmp/$instance/server.log"
    preload_erdtree "${instance_port[$instance]}" "$instance (wal.sync_interval $sync)"
  fi
done

# The evicted suite's pair: storage.max_entries 1 (one shard holding one
# value: the keys evict one another) and a bound that holds them all.
for instance in erdtree_evicted erdtree_resident; do
  if uses $instance; then
    max=1000000
    if [ $instance = erdtree_evicted ]; then max=1; fi
    erdtree_config "$tmp/$instance" "${instance_port[$instance]}" 1s $max
    erdtree_start "$tmp/$instance"
    wait_port "${instance_port[$instance]}" "$started_pid" "$instance" "$tmp/$instance/server.log"
    preload_evicted "${instance_port[$instance]}" "$instance (storage.max_entries $max)"
    resident=$(erdtree_status_field "${instance_port[$instance]}" "resident values")
    reads=$(erdtree_disk_reads "${instance_port[$instance]}")
    # The read-back of all keys above must have gone to disk on the bounded
    # one and never on the other, or the comparison measures something else.
    if [ $instance = erdtree_evicted ] && { [ "$resident" != 1 ] || [ "$reads" -lt 1 ]; }; then
      die "$instance: $resident resident values and $reads disk reads after Setting and Getting $evicted_keys keys, want 1 and at least 1"
    fi
    if [ $instance = erdtree_resident ] && { [ "$resident" != "$evicted_keys" ] || [ "$reads" != 0 ]; }; then
      die "$instance: $resident resident values and $reads disk reads after Setting and Getting $evicted_keys keys, want $evicted_keys and 0"
    fi
  fi
done

# The replication suite's pairs: Erdtree erdtree_repl (wal 1s) with two
# `erdtree slave`s, Redis redis_repl (appendfsync everysec) with two
# `--replicaof` replicas; each follower persists as its master does (slaves:
# wal 1s; replicas: AOF everysec). repl-diskless-sync-delay 0: Redis 7 would
# otherwise wait 5 s for more replicas before a full sync. A slave is ready
# once Health says SERVING (its first sync done), a replica once its link is up.
if { suite replication && { uses erdtree_repl || uses redis_repl; }; } || { suite cluster && has erdtree; }; then
  "$cc" -O2 -o "$tmp/repl_probe" "$helpers/repl_probe.c" -lnghttp2 \
    || die "could not compile $helpers/repl_probe.c with $cc (it needs libnghttp2-dev: scripts/install-deps.sh)"
fi
declare -A repl_followers=([erdtree_repl]="$port_erdtree_slave1,$port_erdtree_slave2"
  [redis_repl]="$port_redis_replica1,$port_redis_replica2")

if uses erdtree_repl; then
  erdtree_config "$tmp/erdtree_repl" "$port_erdtree_repl" 1s
  erdtree_start "$tmp/erdtree_repl"
  instance_pid[erdtree_repl]=$started_pid
  wait_port "$port_erdtree_repl" "$started_pid" erdtree_repl "$tmp/erdtree_repl/server.log"
  preload_erdtree "$port_erdtree_repl" "erdtree_repl (master, wal.sync_interval 1s)"
  for i in 1 2; do
    port_var=port_erdtree_slave$i
    erdtree_slave_config "$tmp/erdtree_slave$i" "${!port_var}" "$port_erdtree_repl"
    erdtree_start "$tmp/erdtree_slave$i" slave
    follower_pids+=("$started_pid")
    followers_of[erdtree_repl]+=" $started_pid"
    wait_port "${!port_var}" "$started_pid" "erdtree_slave$i" "$tmp/erdtree_slave$i/server.log"
    wait_recovered "$started_pid" "$tmp/erdtree_slave$i" "erdtree_slave$i: first sync" erdtree_serving "${!port_var}"
    read_check_erdtree "${!port_var}" "erdtree_slave$i (slave of erdtree_repl)"
  done
fi
if uses redis_repl; then
  redis_start "$tmp/redis_repl" "$port_redis_repl" everysec --repl-diskless-sync-delay 0
  instance_pid[redis_repl]=$started_pid
  wait_port "$port_redis_repl" "$started_pid" redis_repl "$tmp/redis_repl/server.log"
  preload_redis "$port_redis_repl" "redis_repl (master, appendfsync everysec)"
  for i in 1 2; do
    port_var=port_redis_replica$i
    redis_start "$tmp/redis_replica$i" "${!port_var}" everysec --replicaof 127.0.0.1 "$port_redis_repl"
    follower_pids+=("$started_pid")
    followers_of[redis_repl]+=" $started_pid"
    wait_port "${!port_var}" "$started_pid" "redis_replica$i" "$tmp/redis_replica$i/server.log"
    wait_recovered "$started_pid" "$tmp/redis_replica$i" "redis_replica$i: sync" redis_linked "${!port_var}"
    read_check_redis "${!port_var}" "redis_replica$i (replica of redis_repl)"
  done
fi

if uses nghttpd; then
  nghttpd --no-tls -a 127.0.0.1 -d "$tmp/www" "$port_nghttpd" > "$tmp/nghttpd.log" 2>&1 &
  pids+=($!)
  wait_port "$port_nghttpd" $! nghttpd "$tmp/nghttpd.log"
  nghttpd_check
fi

if uses etcd; then
  etcd --name bench --data-dir "$tmp/etcd" \
    --listen-client-urls "http://127.0.0.1:$port_etcd" \
    --advertise-client-urls "http://127.0.0.1:$port_etcd" \
    --listen-peer-urls "http://127.0.0.1:$port_etcd_peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$port_etcd_peer" \
    --initial-cluster "bench=http://127.0.0.1:$port_etcd_peer" \
    > "$tmp/etcd.log" 2>&1 &
  pids+=($!)
  wait_port "$port_etcd" $! etcd "$tmp/etcd.log"
  # The client port opens before the single-member cluster has elected
  # itself; a Put before that fails, so retry the preload for a while.
  for i in $(seq 50); do
    (preload_etcd) 2>/dev/null && break
    sleep 0.2
  done
  preload_etcd
fi

for instance in redis_always redis_everysec; do
  if uses $instance; then
    redis_start "$tmp/$instance" "${instance_port[$instance]}" "${instance#redis_}"
    instance_pid[$instance]=$started_pid
    wait_port "${instance_port[$instance]}" "$started_pid" "$instance" "$tmp/$instance/server.log"
    preload_redis "${instance_port[$instance]}" "$instance (appendfsync ${instance#redis_})"
  fi
done

# What one durable append costs on this disk, next to the durable rows: both
# Erdtree "always" and Redis "always" wait for an fsync per batch.
fsync_figure=
if suite durable; then
  read -r fsync_p50 fsync_p99 < <(python3 "$helpers/fsync_latency.py" "$tmp" 200)
  fsync_figure="write+fsync of 100 bytes in the bench temp dir ($(df --output=source "$tmp" | tail -n 1)),
200 times: median ${fsync_p50} µs, p99 ${fsync_p99} µs"
  note "fsync: median ${fsync_p50} µs, p99 ${fsync_p99} µs"
fi

# --- warm-up and sizing -------------------------------------------------------

# One run of a load, into m_rps, m_p50, m_p99 (µs); not in a subshell, so
# that cleanup on a signal sees client_pid. h2load loads do two runs:
# throughput and latency come from separate runs, because h2load's per-request
# log costs it enough CPU that, on 2 cores, a logged run measures h2load rather
# than the server (both Erdtree and nghttpd then top out near the same figure).
# CPU time (utime + stime, in clock ticks) the processes have used so far.
cpu_ticks() { # pid...
  local total=0 pid
  for pid in "$@"; do total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
  echo "$total"
}

measure() { # load-id requests round
  local id=$1 n=$2 round=$3 latency_requests instance=${load_system[$1]} master0='' followers0=''
  m_rps= m_p50= m_p99=
  # The replication suite's throughput loads also count the CPU its master and followers
  # spend per write (the throughput run only): what the ratio would be if each had cores
  # of its own, which these 2 shared ones are not.
  if [ -n "${load_cpu[$id]:-}" ]; then
    # shellcheck disable=SC2086 # the follower pids are a list
    master0=$(cpu_ticks "${instance_pid[$instance]}") followers0=$(cpu_ticks ${followers_of[$instance]:-})
  fi
  if [ "$(load_kind "$id")" = redis ]; then
    redis_run "$id" "$tmp/load.out" "$n"
    read -r m_rps m_p50 m_p99 < <(redis_figures "$tmp/load.out")
    cpu_account "$id" "$round" "$master0" "$followers0" "$n"
  elif [ "$(load_kind "$id")" = multi ]; then
    measure_multi "$id" "$round"
  elif [ "$n" = timed ]; then
    h2load_run "$id" "$tmp/load.out" -D "$seconds"
    h2load_check "$id" "$tmp/load.out" ""
    m_rps=$(h2load_rps "$tmp/load.out")
    cpu_account "$id" "$round" "$master0" "$followers0" \
      "$(awk '/^requests:/ {print $8}' "$tmp/load.out")"
    h2load_run "$id" "$tmp/load.latency.out" -D "$((seconds * 250))ms" --log-file "$tmp/requests.log"
    h2load_check "$id" "$tmp/load.latency.out" ""
    read -r m_p50 m_p99 < <(python3 "$helpers/report.py" percentiles "$tmp/requests.log")
    rm -f "$tmp/requests.log"
  else
    h2load_run "$id" "$tmp/load.out" -n "$n"
    h2load_check "$id" "$tmp/load.out" "$n"
    m_rps=$(h2load_rps "$tmp/load.out")
    latency_requests=$(( n / 4 < 200 ? 200 : n / 4 ))
    h2load_run "$id" "$tmp/load.latency.out" -n "$latency_requests" --log-file "$tmp/requests.log"
    h2load_check "$id" "$tmp/load.latency.out" "$latency_requests"
    read -r m_p50 m_p99 < <(python3 "$helpers/report.py" percentiles "$tmp/requests.log")
    rm -f "$tmp/requests.log"
  fi
  # (measure_multi keeps its own outputs, one per process.)
  if [ "${BENCH_KEEP:-0}" = 1 ] && [ "$(load_kind "$id")" != multi ]; then
    cp "$tmp/load.out" "$tmp/load.$round.$id.out"
  fi
  [ -n "$m_p99" ] || die "${load_label[$id]}: no figures in $tmp/load.out (round $round)"
}

# Appends a load's CPU figures to $repl_cpu: round, load id, master ticks,
# followers' ticks, writes, ticks per second.
cpu_account() { # load-id round master-ticks-before followers-ticks-before writes
  [ -n "$3" ] || return 0
  local instance=${load_system[$1]}
  # shellcheck disable=SC2086
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$2" "$1" "$(($(cpu_ticks "${instance_pid[$instance]}") - $3))" \
    "$(($(cpu_ticks ${followers_of[$instance]:-}) - $4))" "$5" "$(getconf CLK_TCK)" >> "$repl_cpu"
}

# A multi load runs its processes for BENCH_SECONDS each (-D), so that all of
# them run the whole time and req/s is every Get that succeeded over the
# time until the last process finished (with BENCH_REQUESTS, N/processes
# each). Its Erdtree's Admin/Status disk_reads before and after the run give
# how many of those Gets were read back from disk (m_gets, m_reads). Latency
# comes from a second, quarter-length run with a request log per process.
measure_multi() { # load-id round
  local id=$1 round=$2 procs=${load_procs[$1]} port=${instance_port[${load_system[$1]}]}
  local want='' latency_want='' run=(-D "$seconds") latency=(-D "$((seconds * 250))ms") reads0 reads1 secs i
  if [ -n "$fixed_requests" ]; then
    want=$((fixed_requests / procs < 1 ? 1 : fixed_requests / procs))
    latency_want=$((want / 4 < 50 ? 50 : want / 4))
    run=(-n "$want")
    latency=(-n "$latency_want")
  fi
  reads0=$(erdtree_disk_reads "$port")
  h2load_multi_run "$id" "$tmp/load.out" "" "${run[@]}"
  for ((i = 0; i < procs; i++)); do h2load_check "$id" "$tmp/load.out.$i" "$want"; done
  reads1=$(erdtree_disk_reads "$port")
  read -r m_gets secs < <(h2load_multi_total "$id" "$tmp/load.out")
  m_reads=$((reads1 - reads0))
  m_rps=$(awk -v n="$m_gets" -v t="$secs" 'BEGIN {if (t > 0) printf "%.2f\n", n / t}')
  [ -n "$m_rps" ] || die "${load_label[$id]}: no duration in $tmp/load.out.* (round $round)"
  h2load_multi_run "$id" "$tmp/load.latency.out" "$tmp/requests.log" "${latency[@]}"
  for ((i = 0; i < procs; i++)); do h2load_check "$id" "$tmp/load.latency.out.$i" "$latency_want"; done
  cat "$tmp/requests.log".* > "$tmp/requests.log"
  read -r m_p50 m_p99 < <(python3 "$helpers/report.py" percentiles "$tmp/requests.log")
  rm -f "$tmp/requests.log" "$tmp/requests.log".*
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    for ((i = 0; i < procs; i++)); do cp "$tmp/load.out.$i" "$tmp/load.$round.$id.$i.out"; done
  fi
}

# --- replication: lag probes ---------------------------------------------------
# A lag run: wait until the followers hold everything (repl_barrier), start the
# background load at BENCH_REPL_RATE writes/s on the master, let it run 0.5 s,
# then repl_probe writes repl_per_round keys on the master, each read back from
# one of the followers (alternately) until it shows; the load runs on past the
# last probe. Every probe's lag goes to repl_lag, the load's achieved rate to
# repl_load (with 1 if the probes outlasted the load).

repl_lag=$tmp/repl_lag.tsv       # round, system, lag µs, reads, Set µs, last read µs
repl_load=$tmp/repl_load.tsv     # round, system, target writes/s, achieved writes/s, probes outlasted the load
repl_drain=$tmp/repl_drain.tsv   # round, load id, ms until both followers showed a write made after the run
repl_cpu=$tmp/repl_cpu.tsv       # see cpu_account
: > "$repl_lag"
: > "$repl_load"
: > "$repl_drain"
: > "$repl_cpu"
repl_per_round=$(((repl_samples + rounds - 1) / rounds))
repl_gap_ms=20
# h2load's --rps is per client: 4 clients.
repl_rate_per_client=$(((repl_rate + 3) / 4))
repl_rate_target=$((repl_rate_per_client * 4))

# Runs repl_probe ARGS... in the background (so a signal acts at once) with
# its output in OUT; dies with its error if it fails.
probe_run() { # out args...
  local out=$1
  shift
  "$tmp/repl_probe" "$@" > "$out" 2> "$out.err" &
  client_pid=$!
  if ! wait "$client_pid"; then
    client_pid=
    die "repl_probe $1: $(tail -n 1 "$out.err")"
  fi
  client_pid=
}

# Writes one key per follower on the master and waits until each follower
# returns it: entries apply in order, so then the followers hold everything the
# master had before. barrier_ms: how long that took.
barrier_ms=
repl_barrier() { # instance tag
  local t0 system=${instance_system[$1]}
  t0=$(now_us)
  probe_run "$tmp/barrier.out" "$system-lag" "${instance_port[$1]}" "${repl_followers[$1]}" 2 0 "$2" 120
  barrier_ms=$((($(now_us) - t0) / 1000))
}

measure_lag() { # load-id round
  local id=$1 round=$2 instance=${load_system[$1]} system=${instance_system[${load_system[$1]}]}
  local port=${instance_port[${load_system[$1]}]} out=$tmp/lag.$2.$1 load_ms load_pid outlasted=0
  local sent answered secs achieved
  repl_barrier "$instance" "barrier-$round-$id"
  # The probes take about per_round × (gap + a few ms); the load runs half as
  # long again, and 1.5 s more.
  load_ms=$((500 + repl_per_round * (repl_gap_ms + 2) * 3 / 2 + 1000))
  if [ "$system" = erdtree ]; then
    h2load -c 4 -m 32 -t 1 --rps "$repl_rate_per_client" -D "${load_ms}ms" -d "$tmp/set.bin" \
      -H 'content-type: application/grpc' -H 'te: trailers' "$(load_url "$id")" > "$out.load" 2>&1 &
  else
    "$tmp/repl_probe" redis-load "$port" "$repl_rate_target" "$(awk -v ms="$load_ms" 'BEGIN {print ms / 1000}')" 4 \
      "$write_key" > "$out.load" 2>&1 &
  fi
  load_pid=$!
  client_pids=("$load_pid")
  sleep 0.5
  probe_run "$out" "$system-lag" "$port" "${repl_followers[$instance]}" "$repl_per_round" "$repl_gap_ms" \
    "lag-$round" 10
  kill -0 "$load_pid" 2>/dev/null || outlasted=1
  if ! wait "$load_pid"; then
    client_pids=()
    cat "$out.load" >&2
    die "${load_label[$id]}: the background load failed (output above)"
  fi
  client_pids=()
  if [ "$system" = erdtree ]; then
    h2load_check "$id" "$out.load" ""
    achieved=$(h2load_rps "$out.load")
  else
    read -r sent answered secs < "$out.load"
    [ -n "$secs" ] && [ "$sent" = "$answered" ] || { cat "$out.load" >&2; die "${load_label[$id]}: the background load did not finish cleanly"; }
    achieved=$(awk -v n="$answered" -v t="$secs" 'BEGIN {printf "%.2f\n", n / t}')
  fi
  awk -v r="$round" -v s="$system" '{printf "%s\t%s\t%s\t%s\t%s\t%s\n", r, s, $3, $4, $5, $6}' "$out" >> "$repl_lag"
  printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$system" "$repl_rate_target" "$achieved" "$outlasted" >> "$repl_load"
  read -r m_p50 m_p99 < <(python3 "$helpers/report.py" probe-percentiles "$out")
  m_rps=$achieved
}

declare -A requests
if [ ${#loads[@]} -gt 0 ]; then
  if [ -n "$fixed_requests" ]; then
    note "warming up each load for ~2 s; $fixed_requests requests per run"
  else
    note "warming up each load for ~2 s, sizing runs to ~${seconds}s"
  fi
fi
for id in "${loads[@]}"; do
  if [ "$(load_kind "$id")" = lag ]; then
    requests[$id]=$repl_per_round
    note "  ${load_label[$id]}: no warm-up; $repl_per_round probes per round under $repl_rate_target writes/s"
    continue
  elif [ "$(load_kind "$id")" = redis ]; then
    # No duration option: 200,000 SETs is ~2 s at what Redis does here.
    redis_run "$id" "$tmp/load.out" 200000
    read -r rps _ < <(redis_figures "$tmp/load.out")
  elif [ "$(load_kind "$id")" = multi ]; then
    h2load_multi_run "$id" "$tmp/load.out" "" -D 2
    for ((i = 0; i < load_procs[$id]; i++)); do h2load_check "$id" "$tmp/load.out.$i" ""; done
    read -r done_total secs < <(h2load_multi_total "$id" "$tmp/load.out")
    rps=$(awk -v n="$done_total" -v t="$secs" 'BEGIN {print (t > 0 ? n / t : 0)}')
  else
    h2load_run "$id" "$tmp/load.out" -D 2
    h2load_check "$id" "$tmp/load.out" ""
    rps=$(h2load_rps "$tmp/load.out")
  fi
  if [ -n "$fixed_requests" ]; then
    requests[$id]=$fixed_requests
  elif [ "$(load_kind "$id")" = multi ] || [ -n "${load_timed[$id]:-}" ]; then
    requests[$id]=timed # see measure_multi, measure
  else
    requests[$id]=$(awk -v r="$rps" -v s="$seconds" 'BEGIN {n = int(r * s / 100) * 100; print (n < 200 ? 200 : n)}')
  fi
  if [ "${requests[$id]}" = timed ] && [ -n "${load_timed[$id]:-}" ]; then
    note "  ${load_label[$id]}: $(printf '%.0f' "$rps") req/s warm-up -> runs of ${seconds}s"
  elif [ "${requests[$id]}" = timed ]; then
    note "  ${load_label[$id]}: $(printf '%.0f' "$rps") req/s warm-up -> runs of ${seconds}s, ${load_procs[$id]} h2load processes"
  else
    note "  ${load_label[$id]}: $(printf '%.0f' "$rps") req/s warm-up -> ${requests[$id]} requests per run"
  fi
done

# --- rounds -------------------------------------------------------------------

results=$tmp/results.tsv
: > "$results"
# Multi loads: round, load id, Gets that succeeded, disk reads among them.
disk_reads=$tmp/disk_reads.tsv
: > "$disk_reads"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for ((round = 1; round <= rounds; round++)); do
  for id in "${loads[@]}"; do
    if [ "$(load_kind "$id")" = lag ]; then
      measure_lag "$id" "$round"
      note "round $round/$rounds  ${load_label[$id]}: lag p50 ${m_p50} µs, p99 ${m_p99} µs over $repl_per_round probes, background $(printf '%.0f' "$m_rps") writes/s"
      continue
    fi
    measure "$id" "${requests[$id]}" "$round"
    # How far the followers fell behind: the time until both show a write
    # made once the load (and measure's latency run) ended.
    if [ "$id" = set_slaves ] || [ "$id" = redis_replicas ]; then
      repl_barrier "${load_system[$id]}" "drain-$round-$id"
      printf '%s\t%s\t%s\n' "$round" "$id" "$barrier_ms" >> "$repl_drain"
    fi
    if [ "$(load_kind "$id")" = multi ]; then
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$id" "$m_gets" "$m_rps" "$m_p50" "$m_p99" >> "$results"
      printf '%s\t%s\t%s\t%s\n' "$round" "$id" "$m_gets" "$m_reads" >> "$disk_reads"
      note "round $round/$rounds  ${load_label[$id]}: $(printf '%.0f' "$m_rps") req/s, p50 ${m_p50} µs, p99 ${m_p99} µs, $m_reads disk reads in $m_gets Gets"
    else
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$id" "${requests[$id]}" "$m_rps" "$m_p50" "$m_p99" >> "$results"
      note "round $round/$rounds  ${load_label[$id]}: $(printf '%.0f' "$m_rps") req/s, p50 ${m_p50} µs, p99 ${m_p99} µs"
    fi
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# The sampled answers must still be right after the load (a server that
# broke mid-run would otherwise only show up as a fast number).
for instance in erdtree erdtree_always; do
  if uses $instance; then read_check_erdtree "${instance_port[$instance]}" "$instance"; fi
done
for instance in erdtree_evicted erdtree_resident; do
  if uses $instance; then read_check_evicted "${instance_port[$instance]}" "$instance"; fi
done
if uses nghttpd; then nghttpd_check; fi
if uses etcd; then read_check_etcd; fi
for instance in redis_always redis_everysec; do
  if uses $instance; then read_check_redis "${instance_port[$instance]}" "$instance"; fi
done
if uses erdtree_repl; then
  for port in "$port_erdtree_repl" "$port_erdtree_slave1" "$port_erdtree_slave2"; do
    read_check_erdtree "$port" "erdtree_repl and its slaves (127.0.0.1:$port)"
  done
fi
if uses redis_repl; then
  for port in "$port_redis_repl" "$port_redis_replica1" "$port_redis_replica2"; do
    read_check_redis "$port" "redis_repl and its replicas (127.0.0.1:$port)"
  done
fi

# An Erdtree that wrote nothing under wal.directory had no WAL: its Set rows
# then measure memory-only writes. Checked before the servers stop.
no_wal=()
for instance in erdtree erdtree_always erdtree_repl; do
  if uses $instance && [ -z "$(ls -A "$tmp/$instance/wal" 2>/dev/null)" ]; then no_wal+=("$instance"); fi
done

# --- recovery -------------------------------------------------------------------
# Each system restarts BENCH_ROUNDS times, alternating, on the same
# BENCH_RECOVERY_RECORDS logged writes: Erdtree replays WAL segments written by
# erdtree_wal.py after docs/wal-format.md, Redis an AOF of SET commands. The
# clock runs from the exec of the server to its first answer that says it is
# ready (Erdtree: Health/Check SERVING; Redis: INFO loading:0), polled every
# 10 ms; the server's own log line is kept next to it.

recovery_results=$tmp/recovery.tsv
: > "$recovery_results"
data_notes=()

redis_loaded() { # port
  redis-cli -h 127.0.0.1 -p "$1" info persistence 2>/dev/null | grep -q '^loading:0'
}

recover_erdtree() { # round
  local dir=$tmp/recovery/erdtree port=$port_recovery_erdtree t0 t1 pid i log_s
  t0=$(now_us)
  erdtree_start "$dir"
  pid=$started_pid
  wait_recovered "$pid" "$dir" "erdtree recovering $recovery_records records" erdtree_serving "$port"
  t1=$(now_us)
  # The first and the last record must be there, with their values.
  for i in 0 $((recovery_records - 1)); do
    printf 'key: "%s"\n' "$(recovery_key "$i")" \
      | protoc --encode=erdtree.v1.GetRequest -Iapi erdtree/v1/kvstore.proto > "$tmp/recovery-get.pb"
    python3 "$helpers/grpc_body.py" frame < "$tmp/recovery-get.pb" > "$tmp/recovery-get.bin"
    grpc_check "http://127.0.0.1:$port/erdtree.v1.KVStore/Get" "$tmp/recovery-get.bin" \
      "erdtree after recovery, Get $(recovery_key "$i")" "$(recovery_value "$i")"
  done
  log_s=$(python3 "$helpers/report.py" recovery-log erdtree "$dir/server.log")
  stop_pid "$pid"
  forget_pid "$pid"
  cp "$dir/server.log" "$dir/server.$1.log"
  printf '%s\terdtree\t%s\t%s\t%s\n' "$1" "$recovery_records" "$(((t1 - t0) / 1000))" "$log_s" >> "$recovery_results"
  note "recovery round $1/$rounds  erdtree: $(((t1 - t0) / 1000)) ms to SERVING (log: ${log_s} s)"
}

recover_redis() { # round
  local dir=$tmp/recovery/redis port=$port_recovery_redis t0 t1 pid i log_s reply
  t0=$(now_us)
  redis_start "$dir" "$port" everysec
  pid=$started_pid
  wait_recovered "$pid" "$dir" "redis-server loading its AOF" redis_loaded "$port"
  t1=$(now_us)
  reply=$(redis-cli -h 127.0.0.1 -p "$port" dbsize)
  [ "$reply" = "$recovery_records" ] || die "redis after loading its AOF holds $reply keys, want $recovery_records"
  reply=$(redis-cli -h 127.0.0.1 -p "$port" get "$(recovery_key $((recovery_records - 1)))")
  [ "$reply" = "$(recovery_value $((recovery_records - 1)))" ] || die "redis after loading its AOF: wrong value for the last key"
  log_s=$(python3 "$helpers/report.py" recovery-log redis "$dir/server.log")
  stop_pid "$pid"
  forget_pid "$pid"
  cp "$dir/server.log" "$dir/server.$1.log"
  printf '%s\tredis\t%s\t%s\t%s\n' "$1" "$recovery_records" "$(((t1 - t0) / 1000))" "$log_s" >> "$recovery_results"
  note "recovery round $1/$rounds  redis: $(((t1 - t0) / 1000)) ms to loading:0 (log: ${log_s} s)"
}
recovery_key() { python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import recovery_data as d; sys.stdout.write(d.key(int(sys.argv[2])).decode())' "$helpers" "$1"; }
recovery_value() { python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import recovery_data as d; sys.stdout.write(d.value(int(sys.argv[2])).decode())' "$helpers" "$1"; }

# --- memory -------------------------------------------------------------------
# RSS per key: each round starts each system twice, alternating, with the
# recovery suite's config: on an empty data dir (removed first, so every start
# is fresh), then on the recovery data set, where it loads every key by
# replaying its log (Erdtree applies WAL records through the same set as live
# writes; Redis replays its AOF). VmRSS (RssAnon and RssFile too) is read from
# /proc/PID/status once the server is ready, then the key count is checked
# (and Erdtree's Status memory_bytes, Redis's INFO used_memory, are kept).

memory_results=$tmp/memory.tsv
: > "$memory_results"
rss_kb() { # pid -> "VmRSS RssAnon RssFile", kB
  awk '$1 == "VmRSS:" {r = $2} $1 == "RssAnon:" {a = $2} $1 == "RssFile:" {f = $2} END {print r, a, f}' "/proc/$1/status"
}

memory_erdtree() { # round empty|loaded
  local dir=$tmp/recovery/erdtree port=$port_recovery_erdtree pid rss anon file keys data want=$recovery_records
  if [ "$2" = empty ]; then
    dir=$tmp/memory/erdtree-empty want=0
    rm -rf "$dir"
    erdtree_config "$dir" "$port" 1s $((recovery_records * 2))
  fi
  erdtree_start "$dir"
  pid=$started_pid
  wait_recovered "$pid" "$dir" "erdtree ($2) for the memory suite" erdtree_serving "$port"
  read -r rss anon file < <(rss_kb "$pid")
  keys=$(erdtree_status_field "$port" keys)
  data=$(erdtree_status_field "$port" "memory (data)")
  stop_pid "$pid"
  forget_pid "$pid"
  [ "$keys" = "$want" ] || die "erdtree ($2) for the memory suite holds $keys keys, want $want (log: $dir/server.log)"
  printf '%s\terdtree\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$keys" "$rss" "$anon" "$file" "$data" >> "$memory_results"
  note "memory round $1/$rounds  erdtree $2: $keys keys, VmRSS $rss kB, Status memory_bytes $data"
}

memory_redis() { # round empty|loaded
  local dir=$tmp/recovery/redis port=$port_recovery_redis pid rss anon file keys used want=$recovery_records
  if [ "$2" = empty ]; then
    dir=$tmp/memory/redis-empty want=0
    rm -rf "$dir"
  fi
  redis_start "$dir" "$port" everysec
  pid=$started_pid
  wait_recovered "$pid" "$dir" "redis-server ($2) for the memory suite" redis_loaded "$port"
  read -r rss anon file < <(rss_kb "$pid")
  keys=$(redis-cli -h 127.0.0.1 -p "$port" dbsize)
  used=$(redis-cli -h 127.0.0.1 -p "$port" info memory | tr -d '\r' | awk -F: '$1 == "used_memory" {print $2}')
  stop_pid "$pid"
  forget_pid "$pid"
  [ "$keys" = "$want" ] || die "redis ($2) for the memory suite holds $keys keys, want $want (log: $dir/server.log)"
  printf '%s\tredis\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$keys" "$rss" "$anon" "$file" "$used" >> "$memory_results"
  note "memory round $1/$rounds  redis $2: $keys keys, VmRSS $rss kB, used_memory $used"
}

# --- compacted ------------------------------------------------------------------
# Startup after compaction, reached the way a store reaches it: the data set
# holds each of BENCH_RECOVERY_RECORDS keys written twice (an old value, then
# the final one), so half the log is dead; an Erdtree with wal.max_file_size
# and wal.retention at 64MB starts on a copy of it and compacts it itself (its
# compactor looks every second and rewrites the sealed segments outside the
# retention once half their bytes are dead). Once Admin/Status says it has
# compacted and the WAL holds next to no dead bytes, it is stopped with
# SIGTERM and must exit 0. Then it restarts BENCH_ROUNDS times on that
# directory, timed like the recovery suite (exec -> Health SERVING).

compacted_results=$tmp/compacted.tsv
: > "$compacted_results"
compacted_notes=()
# 64MB with 1,000,000 keys (a log of ~300 MiB as written, 4 sealed segments
# and the active one), the same shape with other counts: 64 MiB per million
# keys, at least the 64KB the server accepts. KB and MB are powers of 1024.
compacted_file_kb=$((recovery_records * 65536 / 1000000))
if [ $compacted_file_kb -lt 64 ]; then compacted_file_kb=64; fi
if [ $((compacted_file_kb % 1024)) = 0 ]; then
  compacted_file_size=$((compacted_file_kb / 1024))MB
else
  compacted_file_size=${compacted_file_kb}KB
fi
compacted_file_bytes=$((compacted_file_kb << 10))
# Dead bytes left after the compaction, as a share of the WAL's bytes, under
# which the log counts as compacted (the data set leaves none: every old
# value lies in the compactable segments).
compacted_dead_percent=1
compacted_wait_s=180

commas() { python3 -c 'import sys; print(f"{int(sys.argv[1]):,}")' "$1"; }
mib() { python3 -c 'import sys; print(f"{int(sys.argv[1]) / 2**20:,.1f} MiB")' "$1"; }

# Admin/Status once, through the CLI, into the file $2.
erdtree_status_to() { # port file
  "$erdtree_bin" status --server "127.0.0.1:$1" > "$2" 2> "$2.err" || return 1
}
status_field() { # file field-name
  awk -v f="$2:" 'index($0, f) == 1 {sub(/^[^:]*:[ \t]*/, ""); print $1}' "$1"
}
# A key of the data set must read back with its final value, not the old one.
compacted_check_key() { # port index what
  printf 'key: "%s"\n' "$(recovery_key "$2")" \
    | protoc --encode=erdtree.v1.GetRequest -Iapi erdtree/v1/kvstore.proto > "$tmp/compacted-get.pb"
  python3 "$helpers/grpc_body.py" frame < "$tmp/compacted-get.pb" > "$tmp/compacted-get.bin"
  grpc_check "http://127.0.0.1:$1/erdtree.v1.KVStore/Get" "$tmp/compacted-get.bin" \
    "$3, Get $(recovery_key "$2")" "$(recovery_value "$2")"
}
compacted_check_keys() { # port what
  local i
  for i in 0 $((recovery_records / 2)) $((recovery_records - 1)); do compacted_check_key "$1" "$i" "$2"; done
}

# Writes the data set, lets the server compact it, stops the server; sets
# compacted_ok=1 when the directory is ready for the restarts.
compacted_ok=0
compacted_prepare() {
  local written=$tmp/compacted/written dir=$tmp/compacted/erdtree port=$port_compacted
  local t0 t_serving t_done pid i dead bytes segs compactions keys rc files
  t0=$(now_us)
  python3 "$helpers/recovery_data.py" erdtree-wal-overwritten "$written/wal" "$recovery_records" \
    "$compacted_file_bytes" || die "could not write the Erdtree WAL for the compacted suite"
  read -r files bytes _ _ < <(python3 "$helpers/erdtree_wal.py" segments "$written/wal") \
    || die "erdtree_wal.py segments $written/wal failed"
  compacted_written="$files segments, $(mib "$bytes")"
  note "compacted: wrote $((recovery_records * 2)) WAL records, $compacted_written, in $((($(now_us) - t0) / 1000)) ms"
  erdtree_config "$dir" "$port" 1s $((recovery_records * 2)) "$compacted_file_size"
  cp -r "$written/wal" "$dir/wal"
  if [ "${BENCH_KEEP:-0}" != 1 ]; then rm -rf "$written"; fi

  t0=$(now_us)
  erdtree_start "$dir"
  pid=$started_pid
  wait_recovered "$pid" "$dir" "erdtree starting on the overwritten log" erdtree_serving "$port"
  t_serving=$(now_us)
  # Every poll is one Admin/Status, whose dead-bytes figure is a pass over
  # the index: once a second is enough.
  for ((i = 0; ; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$dir/server.log" >&2
      die "compacted: the server exited while compacting (log above: $dir/server.log)"
    fi
    if erdtree_status_to "$port" "$tmp/compacted-status.txt"; then
      compactions=$(status_field "$tmp/compacted-status.txt" compactions)
      dead=$(status_field "$tmp/compacted-status.txt" "wal dead bytes")
      bytes=$(status_field "$tmp/compacted-status.txt" "wal bytes")
      segs=$(status_field "$tmp/compacted-status.txt" "wal segments")
      if [[ $compactions =~ ^[0-9]+$ && $dead =~ ^[0-9]+$ && $bytes =~ ^[0-9]+$ ]] \
        && [ "$compactions" -ge 1 ] && [ $((dead * 100)) -le $((bytes * compacted_dead_percent)) ]; then
        break
      fi
    fi
    [ $i -lt $compacted_wait_s ] || {
      cat "$tmp/compacted-status.txt" >&2
      die "compacted: no compaction down to ${compacted_dead_percent}% dead bytes within ${compacted_wait_s} s (status above, log: $dir/server.log)"
    }
    sleep 1
  done
  t_done=$(now_us)
  keys=$(status_field "$tmp/compacted-status.txt" keys)
  [ "$keys" = "$recovery_records" ] \
    || die "compacted: the server holds $keys keys after compacting, want $recovery_records (log: $dir/server.log)"
  compacted_check_keys "$port" "erdtree after compacting"
  compacted_status="$segs segments, $(mib "$bytes"), $dead dead bytes, $compactions compaction(s)"
  compacted_timing="SERVING $(((t_serving - t0) / 1000)) ms after exec, compacted $(((t_done - t_serving) / 1000)) ms later (status polled every second)"
  # Graceful stop: SIGTERM, and the server must exit 0 by itself within 60 s.
  kill -TERM "$pid"
  for ((i = 0; i < 600; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && die "compacted: the server did not exit within 60 s of SIGTERM (log: $dir/server.log)"
  rc=0
  wait "$pid" || rc=$?
  forget_pid "$pid"
  [ "$rc" = 0 ] || { tail -n 20 "$dir/server.log" >&2; die "compacted: the server exited $rc on SIGTERM, want 0 (log above)"; }
  cp "$dir/server.log" "$dir/server.compacting.log"
  compacted_log=$(python3 "$helpers/report.py" compaction-log "$dir/server.log")
  read -r files bytes segs i < <(python3 "$helpers/erdtree_wal.py" segments "$dir/wal") \
    || die "erdtree_wal.py segments $dir/wal failed"
  [ "$i" = 0 ] || die "compacted: $i files other than segments left in $dir/wal after a graceful stop: $(ls "$dir/wal")"
  [ "$segs" -ge 1 ] || die "compacted: no segment in $dir/wal has the compacted (version 2) header"
  compacted_after="$files segments ($segs compacted, version 2), $(mib "$bytes")"
  note "compacted: $compacted_timing; status: $compacted_status; on disk after SIGTERM: $compacted_after"
  compacted_ok=1
}

restart_compacted() { # round
  local dir=$tmp/compacted/erdtree port=$port_compacted t0 t1 pid log_s
  t0=$(now_us)
  erdtree_start "$dir"
  pid=$started_pid
  wait_recovered "$pid" "$dir" "erdtree restarting on its compacted log" erdtree_serving "$port"
  t1=$(now_us)
  compacted_check_keys "$port" "erdtree restarted after compaction"
  log_s=$(python3 "$helpers/report.py" recovery-log erdtree "$dir/server.log")
  stop_pid "$pid"
  forget_pid "$pid"
  cp "$dir/server.log" "$dir/server.$1.log"
  printf '%s\terdtree\t%s\t%s\t%s\n' "$1" "$recovery_records" "$(((t1 - t0) / 1000))" "$log_s" >> "$compacted_results"
  note "compacted round $1/$rounds  erdtree: $(((t1 - t0) / 1000)) ms to SERVING (log: ${log_s} s)"
}

# --- replication: catch-up ------------------------------------------------------
# A master on the recovery data set (Erdtree: its WAL of
# BENCH_RECOVERY_RECORDS entries, complete from LSN 1; Redis: its AOF, loaded),
# started once; each round starts a follower on an empty dir and times it from
# the exec to the moment it returns the last key written (repl_probe
# *-catchup reads it every 5 ms; entries apply in order, so everything is
# there by then). Erdtree's slave streams every entry from LSN 1
# (incrementally, the master's log being complete); a Redis replica has only
# a full sync: the master forks and streams an RDB snapshot (diskless), which
# the replica writes to disk and loads. Afterwards Erdtree's Admin/Status must
# say lag 0, the master's last LSN and every key; Redis's DBSIZE every key.
# Status is not what the clock polls: on a million keys each call takes about
# 0.2 s (its dead-bytes figure walks every key), and polling it every few ms
# slowed the slave's catch-up about threefold when this was written.

repl_catchup=$tmp/repl_catchup.tsv   # round, system, entries, ms from exec to the last key readable
: > "$repl_catchup"
catchup_master_lsn=

catchup_master_erdtree() {
  local dir=$tmp/recovery/erdtree port=$port_recovery_erdtree
  erdtree_start "$dir"
  catchup_master_pid=$started_pid
  wait_recovered "$started_pid" "$dir" "erdtree master for the catch-up" erdtree_serving "$port"
  catchup_master_lsn=$(erdtree_status_field "$port" "last lsn")
  [ "$catchup_master_lsn" = "$recovery_records" ] \
    || die "erdtree master for the catch-up: last lsn $catchup_master_lsn, want $recovery_records"
}
catchup_master_redis() {
  redis_start "$tmp/recovery/redis" "$port_recovery_redis" everysec --repl-diskless-sync-delay 0
  catchup_master_pid=$started_pid
  wait_recovered "$started_pid" "$tmp/recovery/redis" "redis master for the catch-up" redis_loaded "$port_recovery_redis"
}

catchup_erdtree() { # round
  local dir=$tmp/catchup/erdtree-slave port=$port_catchup_slave t0 t1 pid last lag keys
  local k v
  k=$(recovery_key $((recovery_records - 1)))
  v=$(recovery_value $((recovery_records - 1)))
  rm -rf "$dir"
  erdtree_slave_config "$dir" "$port" "$port_recovery_erdtree" $((recovery_records * 2))
  t0=$(now_us)
  erdtree_start "$dir" slave
  pid=$started_pid
  probe_run "$tmp/catchup.out" erdtree-catchup "$port" "$k" "$v" 300
  read -r t1 < "$tmp/catchup.out"
  last=$(erdtree_status_field "$port" "last lsn")
  lag=$(erdtree_status_field "$port" "lag")
  keys=$(erdtree_status_field "$port" keys)
  stop_pid "$pid"
  forget_pid "$pid"
  cp "$dir/server.log" "$tmp/catchup/erdtree-slave.$1.log"
  [ "$last" = "$catchup_master_lsn" ] && [ "$lag" = 0 ] && [ "$keys" = "$recovery_records" ] \
    || die "erdtree slave after catching up: last lsn $last (master: $catchup_master_lsn), lag $lag, $keys keys (want $recovery_records)"
  printf '%s\terdtree\t%s\t%s\n' "$1" "$recovery_records" "$(((t1 - t0) / 1000))" >> "$repl_catchup"
  note "catch-up round $1/$rounds  erdtree slave: $(((t1 - t0) / 1000)) ms to the last of $recovery_records entries"
}

catchup_redis() { # round
  local dir=$tmp/catchup/redis-replica port=$port_catchup_replica t0 t1 pid keys k v
  k=$(recovery_key $((recovery_records - 1)))
  v=$(recovery_value $((recovery_records - 1)))
  rm -rf "$dir"
  t0=$(now_us)
  redis_start "$dir" "$port" everysec --replicaof 127.0.0.1 "$port_recovery_redis"
  pid=$started_pid
  probe_run "$tmp/catchup.out" redis-catchup "$port" "$k" "$v" 300
  read -r t1 < "$tmp/catchup.out"
  keys=$(redis-cli -h 127.0.0.1 -p "$port" dbsize)
  redis_linked "$port" || die "redis replica after catching up: its link to the master is not up (log: $dir/server.log)"
  stop_pid "$pid"
  forget_pid "$pid"
  mkdir -p "$tmp/catchup"
  cp "$dir/server.log" "$tmp/catchup/redis-replica.$1.log"
  [ "$keys" = "$recovery_records" ] || die "redis replica after catching up holds $keys keys, want $recovery_records"
  printf '%s\tredis\t%s\t%s\n' "$1" "$recovery_records" "$(((t1 - t0) / 1000))" >> "$repl_catchup"
  note "catch-up round $1/$rounds  redis replica: $(((t1 - t0) / 1000)) ms to the last of $recovery_records keys"
}

# --- data sets, then the restarts -------------------------------------------------
# The recovery and memory suites, and the replication suite's catch-up, start
# from the same files, written once; the compacted suite from its own.

data_systems=()
erdtree_wal_ok=0
if suite recovery || suite memory || suite compacted || suite replication; then
  # The load servers are done: stop them so the restarts have the machine.
  for pid in "${follower_pids[@]}" "${pids[@]}"; do stop_pid "$pid"; done
  pids=() follower_pids=()
  if has erdtree; then
    if python3 "$helpers/erdtree_wal.py" selftest 2> "$tmp/erdtree_wal.err"; then erdtree_wal_ok=1; fi
  fi
fi
if suite recovery || suite memory || suite replication; then
  if has erdtree; then
    if [ $erdtree_wal_ok = 1 ]; then
      t0=$(now_us)
      erdtree_config "$tmp/recovery/erdtree" "$port_recovery_erdtree" 1s $((recovery_records * 2))
      python3 "$helpers/recovery_data.py" erdtree-wal "$tmp/recovery/erdtree/wal" "$recovery_records" \
        || die "could not write the Erdtree WAL for the recovery and memory suites"
      note "data set: wrote $recovery_records WAL records ($(du -sh "$tmp/recovery/erdtree/wal" | cut -f1)) in $((($(now_us) - t0) / 1000)) ms"
      data_systems+=(erdtree)
    else
      data_notes+=("Erdtree not measured (recovery, memory, replication catch-up): $(tail -n 1 "$tmp/erdtree_wal.err")")
      note "${data_notes[-1]}"
    fi
  fi
  if has redis; then
    t0=$(now_us)
    python3 "$helpers/recovery_data.py" redis-aof "$tmp/recovery/redis" "$recovery_records" \
      || die "could not write the Redis AOF for the recovery and memory suites"
    note "data set: wrote $recovery_records SETs to an AOF ($(du -sh "$tmp/recovery/redis" | cut -f1)) in $((($(now_us) - t0) / 1000)) ms"
    data_systems+=(redis)
  fi
  if suite recovery; then
    for ((round = 1; round <= rounds; round++)); do
      for system in "${data_systems[@]}"; do "recover_$system" "$round"; done
    done
  fi
  if suite memory; then
    for ((round = 1; round <= rounds; round++)); do
      for system in "${data_systems[@]}"; do
        "memory_$system" "$round" empty
        "memory_$system" "$round" loaded
      done
    done
  fi
  if suite replication && [ ${#data_systems[@]} -gt 0 ]; then
    mkdir -p "$tmp/catchup"
    declare -A catchup_masters
    for system in "${data_systems[@]}"; do
      "catchup_master_$system"
      catchup_masters[$system]=$catchup_master_pid
    done
    for ((round = 1; round <= rounds; round++)); do
      for system in "${data_systems[@]}"; do "catchup_$system" "$round"; done
    done
    for system in "${data_systems[@]}"; do
      stop_pid "${catchup_masters[$system]}"
      forget_pid "${catchup_masters[$system]}"
    done
  fi
fi
if suite compacted && has erdtree; then
  if [ $erdtree_wal_ok = 1 ]; then
    compacted_prepare
    for ((round = 1; round <= rounds; round++)); do restart_compacted "$round"; done
  else
    compacted_notes+=("Erdtree not measured (compacted): $(tail -n 1 "$tmp/erdtree_wal.err")")
    note "${compacted_notes[-1]}"
  fi
elif suite compacted; then
  compacted_notes+=("Not measured: the compacted suite runs Erdtree only, and BENCH_SYSTEMS leaves it out.")
fi

# --- cluster: replication across hosts ----------------------------------------------
# tests/cluster's topology (tests/cluster/hosts.py): the master and two slaves in network
# namespaces of their own, each with its address, behind a bridge this script is on as a
# client host. The slaves dial the master through tests/cluster/delay_relay.py, which adds
# 1 ms each way (the kernel has no tc netem); clients reach the master directly. Per round:
# master Set throughput with both slaves attached (h2load c4 m32 over the bridge), then lag
# probes as in the replication suite (repl_probe, the same background write rate).
cluster_tsv=$tmp/cluster.tsv   # round, Set req/s, lag p50 µs, lag p99 µs
: > "$cluster_tsv"
cluster_tag=
cluster_skipped=
if suite cluster && has erdtree; then
  if [ "$(id -u)" != 0 ]; then
    cluster_skipped="network namespaces need root"
  elif ! cluster_hosts=$("$repo/.venv/bin/python" "$repo/tests/cluster/hosts.py" up master slave1 slave2 2> "$tmp/cluster-hosts.err"); then
    cluster_skipped="could not build the hosts: $(tail -n 1 "$tmp/cluster-hosts.err")"
  fi
fi
if suite cluster && has erdtree && [ -z "$cluster_skipped" ]; then
  declare -A cluster_ns=() cluster_ip=()
  while read -r name ns address; do
    case $name in
      tag) cluster_tag=$ns ;;
      client) ;;
      *) cluster_ns[$name]=$ns cluster_ip[$name]=$address ;;
    esac
  done <<< "$cluster_hosts"
  master_ip=${cluster_ip[master]}
  cluster_node() { # name port role [master-address]
    local dir=$tmp/cluster/$1
    if [ "$3" = slave ]; then erdtree_slave_config "$dir" "$2" 0; else erdtree_config "$dir" "$2" 1s; fi
    sed -i -e 's/^  address: 127.0.0.1$/  address: 0.0.0.0/' -e "s/^  address: 127.0.0.1:0$/  address: ${4:-}/" "$dir/erdtree.yaml"
    (cd "$dir" && exec ip netns exec "${cluster_ns[$1]}" "$erdtree_bin" "$3" --config "$dir/erdtree.yaml") \
      > "$dir/server.log" 2>&1 &
    pids+=("$!")
    cluster_pids+=("$!")
  }
  cluster_serving() { "$erdtree_bin" health --server "$1" --timeout 1s > /dev/null 2>&1; }
  cluster_pids=()
  cluster_node master 8080 master
  echo 0.001 > "$tmp/cluster/delay"
  ip netns exec "${cluster_ns[master]}" "$repo/.venv/bin/python" "$repo/tests/cluster/delay_relay.py" \
    "$master_ip:8090" 127.0.0.1:8080 "$tmp/cluster/delay" > "$tmp/cluster/relay.log" 2>&1 &
  pids+=("$!")
  cluster_pids+=("$!")
  wait_recovered "${cluster_pids[0]}" "$tmp/cluster/master" "the cluster's master" cluster_serving "$master_ip:8080"
  cluster_node slave1 8081 slave "$master_ip:8090"
  cluster_node slave2 8082 slave "$master_ip:8090"
  wait_recovered "${cluster_pids[2]}" "$tmp/cluster/slave1" "the cluster's slave1" cluster_serving "${cluster_ip[slave1]}:8081"
  wait_recovered "${cluster_pids[3]}" "$tmp/cluster/slave2" "the cluster's slave2" cluster_serving "${cluster_ip[slave2]}:8082"
  cluster_set_args=(-c 4 -m 32 -t 1 -d "$tmp/set.bin" -H 'content-type: application/grpc' -H 'te: trailers')
  for ((round = 1; round <= rounds; round++)); do
    out=$tmp/cluster/set.$round.out
    h2load "${cluster_set_args[@]}" -D "${seconds}s" "http://$master_ip:8080/erdtree.v1.KVStore/Set" > "$out" 2>&1 \
      || { cat "$out" >&2; die "h2load failed on the cluster's master"; }
    rps=$(h2load_rps "$out")
    out=$tmp/cluster/lag.$round.out
    load_ms=$((500 + repl_per_round * (repl_gap_ms + 2) * 3 / 2 + 1000))
    h2load "${cluster_set_args[@]}" --rps "$repl_rate_per_client" -D "${load_ms}ms" \
      "http://$master_ip:8080/erdtree.v1.KVStore/Set" > "$out.load" 2>&1 &
    background=$!
    sleep 0.5
    "$tmp/repl_probe" erdtree-lag "$master_ip:8080" "${cluster_ip[slave1]}:8081,${cluster_ip[slave2]}:8082" \
      "$repl_per_round" "$repl_gap_ms" "cluster-$round" 10 > "$out" 2> "$out.err" \
      || die "repl_probe on the cluster: $(tail -n 1 "$out.err")"
    wait "$background" || { cat "$out.load" >&2; die "the cluster's background load failed"; }
    read -r p50 p99 < <(python3 "$helpers/report.py" probe-percentiles "$out")
    printf '%s\t%s\t%s\t%s\n' "$round" "$rps" "$p50" "$p99" >> "$cluster_tsv"
    note "round $round/$rounds  cluster (3 hosts, +1 ms each way): Set with 2 slaves $(printf '%.0f' "$rps") req/s; lag p50 $p50 µs, p99 $p99 µs"
  done
  for pid in "${cluster_pids[@]}"; do stop_pid "$pid"; forget_pid "$pid"; done
  "$repo/.venv/bin/python" "$repo/tests/cluster/hosts.py" down "$cluster_tag"
  cluster_tag=
fi

# --- report -------------------------------------------------------------------

versions=()
if has erdtree; then versions+=("$erdtree_label"); fi
if uses etcd; then versions+=("etcd $(etcd --version | awk '/^etcd Version/ {print $3}')"); fi
if uses redis_always || uses redis_everysec || uses redis_repl || [[ " ${data_systems[*]} " == *" redis "* ]]; then
  versions+=("redis $(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2)")
fi
if uses nghttpd; then versions+=("$(nghttpd --version | awk '{print $NF}' | tr '/' ' ')"); fi
report() {
  echo "## Erdtree benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "Suites: $(echo $suites). Medians of $rounds alternated rounds on loopback; ratios are medians of per-round ratios."
  echo "$(nproc) cores shared by every server and the load generator (one thread), nothing pinned;"
  echo "load average ${load_before} before, ${load_after} after. $(IFS=,; echo "${versions[*]}" | sed 's/,/, /g')."
  if [ ${#no_wal[@]} -gt 0 ]; then
    echo
    echo "**Erdtree wrote no file under its wal.directory (${no_wal[*]}): its Set figures are"
    echo "memory-only writes, not comparable with etcd's or Redis's fsynced writes.**"
  fi
  if [ ${#loads[@]} -gt 0 ] && [ -n "$(python3 "$helpers/report.py" summary "$results" "${suite_loads[*]}" "$disk_reads")" ]; then
    echo
    python3 "$helpers/report.py" summary "$results" "${suite_loads[*]}" "$disk_reads"
    if [ -n "$fsync_figure" ]; then
      echo
      echo "Durable rows: fsync on this virtual disk is fast, far faster than on a physical disk,"
      echo "which flatters every \"always\" figure: $fsync_figure."
    fi
    if [ -s "$disk_reads" ]; then
      echo
      echo "Evicted rows: $evicted_keys keys Set once; N h2load processes at once (N × c1 mM), process i"
      echo "Getting key i, against Erdtree with storage.max_entries 1 (one shard holding one value) and"
      echo "with 1000000 (every key resident). req/s: every Get that succeeded over the time until"
      echo "the last process ended. Disk reads: Admin/Status disk_reads, after the run minus before."
      echo "The WAL holds a few records just written, so the read-backs hit the page cache. A goal is"
      echo "judged only when most Gets (over half) were disk reads."
      python3 "$helpers/report.py" disk-reads "$disk_reads"
    fi
  fi
  if suite recovery; then
    echo
    echo "### Recovery: restart on $(python3 -c 'import sys; print(f"{int(sys.argv[1]):,}")' "$recovery_records") logged writes (100-byte values, distinct keys)"
    echo
    python3 "$helpers/report.py" recovery "$recovery_results"
    for n in "${data_notes[@]}"; do echo; echo "$n"; done
  fi
  if suite memory; then
    echo
    echo "### Memory: $(python3 -c 'import sys; print(f"{int(sys.argv[1]):,}")' "$recovery_records") distinct keys with 100-byte values, loaded by replay"
    echo
    echo "Each server started on the recovery data set and loaded every key by replaying its log"
    echo "(Erdtree its WAL, through the same set as live writes; Redis its AOF), storage.max_entries"
    echo "$((recovery_records * 2)) so every value stays resident. RSS per key = (VmRSS once ready − VmRSS of a"
    echo "fresh start on an empty dir, same config) ÷ keys, per round."
    echo
    python3 "$helpers/report.py" memory "$memory_results"
    if ! suite recovery; then for n in "${data_notes[@]}"; do echo; echo "$n"; done; fi
  fi
  if suite compacted; then
    echo
    echo "### Startup after compaction: $(python3 -c 'import sys; print(f"{int(sys.argv[1]):,}")' "$recovery_records") keys, each written twice, compacted by the server"
    if [ "$compacted_ok" = 1 ]; then
      echo
      echo "Log as written: $(commas $((recovery_records * 2))) set records (every key with an old 100-byte value,"
      echo "then every key again with its final one), $compacted_written, segments sealed at $compacted_file_size."
      echo "Erdtree (\`wal.max_file_size\` and \`wal.retention\` $compacted_file_size, \`storage.max_entries\`"
      echo "$((recovery_records * 2)), \`server.event_loops\` $event_loops) started on a copy and compacted it by itself:"
      echo "$compacted_timing."
      echo "Its \"WAL compacted\" log line: $compacted_log."
      echo "Admin/Status then: $compacted_status."
      echo "Stopped with SIGTERM (exit 0); on disk: $compacted_after."
      echo "Restarted $rounds time$([ "$rounds" = 1 ] || echo s) on that directory; keys 0, $((recovery_records / 2)) and $((recovery_records - 1)) read back"
      echo "with their final values each time."
      echo
      python3 "$helpers/report.py" compacted "$compacted_results"
    fi
    for n in "${compacted_notes[@]}"; do echo; echo "$n"; done
  fi
  if suite replication; then
    echo
    echo "### Replication: a master with 2 followers, Erdtree vs Redis"
    echo
    echo "Erdtree: a master (wal 1s) and two \`erdtree slave\`s (wal 1s); Redis: a master and two"
    echo "\`--replicaof\` replicas (AOF, appendfsync everysec). All on this machine's $(nproc) cores, with"
    echo "the load generator and the probe: followers here take CPU from their master, which they would"
    echo "not on their own machines. Lag: $repl_per_round probes per round and system (a key written on the"
    echo "master, then read back from one follower, alternately, until it shows; probes $repl_gap_ms ms ± 50 % apart),"
    echo "under a background write load of $repl_rate_target writes/s on the master (Erdtree: h2load c4 m32"
    echo "--rps $repl_rate_per_client per client; Redis: repl_probe redis-load, 4 connections, ≤ 32 in flight each)."
    echo
    python3 "$helpers/report.py" replication "$repl_lag" "$repl_load" "$repl_catchup" "$results" "$repl_drain" "$repl_cpu"
    if ! suite recovery && ! suite memory; then for n in "${data_notes[@]}"; do echo; echo "$n"; done; fi
  fi
  if suite cluster && has erdtree; then
    echo
    echo "### Replication across hosts: a master and 2 slaves in network namespaces"
    echo
    if [ -n "$cluster_skipped" ]; then
      echo "Skipped: $cluster_skipped."
    else
      echo "Three hosts (network namespaces, each with its address) behind a bridge, the load generator and"
      echo "the probe on a fourth; the slaves reach the master through a relay adding 1 ms each way (this"
      echo "kernel has no tc netem), clients reach it directly. Same configs, background rate ($repl_rate_target"
      echo "writes/s) and probes ($repl_per_round per round) as the replication suite; still one machine's $(nproc) cores."
      echo
      python3 "$helpers/report.py" cluster "$cluster_tsv" "$repl_lag" "$results"
    fi
  fi
  if [ ${#loads[@]} -gt 0 ] || [ -s "$recovery_results" ] || [ -s "$memory_results" ] || [ -s "$compacted_results" ] \
    || [ -s "$repl_catchup" ]; then
    echo
    echo "<details><summary>every run</summary>"
    if [ ${#loads[@]} -gt 0 ]; then
      echo
      python3 "$helpers/report.py" rounds "$results"
    fi
    if [ -s "$recovery_results" ]; then
      echo
      python3 "$helpers/report.py" recovery-rounds "$recovery_results"
    fi
    if [ -s "$memory_results" ]; then
      echo
      python3 "$helpers/report.py" memory-rounds "$memory_results"
    fi
    if [ -s "$compacted_results" ]; then
      echo
      python3 "$helpers/report.py" compacted-rounds "$compacted_results"
    fi
    if [ -s "$repl_lag" ] || [ -s "$repl_catchup" ]; then
      echo
      python3 "$helpers/report.py" replication-rounds "$repl_lag" "$repl_load" "$repl_catchup"
    fi
    echo
    echo "</details>"
  fi
}
report_file=$tmp/report.md
report > "$report_file"
cat "$report_file"
if [ -n "${BENCH_OUT:-}" ]; then cp "$report_file" "$BENCH_OUT"; fi

# --- optional profile -----------------------------------------------------------

if [ "$profile" = 1 ] && has erdtree; then
  note "profiling: ${load_label[$profile_load]}, $profile_requests requests, under callgrind"
  dir=$tmp/profile
  erdtree_config "$dir" "$port_profile" 1s
  # Valgrind 3.19 cannot read the DWARF Swift 6 emits ("possibly corrupted
  # debuginfo"), so it profiles a copy without it; the symbol table stays.
  objcopy --strip-debug "$erdtree_bin" "$dir/erdtree" || die "objcopy could not strip a copy of $erdtree_bin"
  # See sigsuspend_copy.c: without it valgrind crashes in dispatchMain().
  cc=${CC:-cc}
  command -v "$cc" > /dev/null 2>&1 || cc=clang
  "$cc" -shared -fPIC -O2 -o "$dir/sigsuspend_copy.so" "$helpers/sigsuspend_copy.c" -ldl \
    || die "could not compile $helpers/sigsuspend_copy.c with $cc"
  (cd "$dir" && LD_PRELOAD="$dir/sigsuspend_copy.so" exec valgrind --tool=callgrind \
    --callgrind-out-file="$dir/callgrind.out" "$dir/erdtree" master --config "$dir/erdtree.yaml") \
    > "$dir/server.log" 2>&1 &
  profile_pid=$!
  pids+=("$profile_pid")
  wait_port "$port_profile" "$profile_pid" "erdtree under callgrind" "$dir/server.log" 120
  preload_erdtree "$port_profile" "erdtree (callgrind)"
  # Count only the load: zero the counters now, dump them right after.
  callgrind_control -z "$profile_pid" > /dev/null
  instance_port[erdtree]=$port_profile
  h2load_run "$profile_load" "$dir/h2load.out" -n "$profile_requests"
  h2load_check "$profile_load" "$dir/h2load.out" "$profile_requests"
  callgrind_control -d "$profile_pid" > /dev/null
  stop_pid "$profile_pid"
  dump=$dir/callgrind.out.1
  [ -f "$dump" ] || die "callgrind wrote no dump $dump (server log: $dir/server.log)"
  demangle=(cat)
  if command -v swift > /dev/null 2>&1; then demangle=(swift demangle --simplified); fi
  # top_functions yes|no LIMIT: the function lines of callgrind_annotate,
  # biggest first, with the temp path shortened. Frames that were on a stack
  # when the counters were zeroed (thread entry points, the event loop) get
  # their whole inclusive cost booked as self; no real function here comes
  # near 90 % self, so the self table drops lines above that.
  top_functions() {
    callgrind_annotate --auto=no --threshold=100 --inclusive="$1" "$dump" > "$dir/annotate.txt"
    awk -v self="$([ "$1" = no ] && echo 1 || echo 0)" -v limit="$2" '
      /PROGRAM TOTALS/ { print; print ""; next }
      /file:function/ { body = 1; next }
      body && /%\)/ {
        pct = $0; sub(/^[^(]*\( */, "", pct); sub(/%.*/, "", pct)
        if (self && pct + 0 >= 90) next
        sub(/\?\?\?:/, "")
        if (shown++ < limit) print
      }' "$dir/annotate.txt" | sed "s|$dir/||g" | "${demangle[@]}"
  }
  echo
  echo "### callgrind: ${load_label[$profile_load]}, $profile_requests requests, instructions by function, self"
  echo
  echo '```'
  top_functions no 40
  echo '```'
  echo
  echo "### callgrind: the same, inclusive"
  echo
  echo '```'
  top_functions yes 60
  echo '```'
fi
