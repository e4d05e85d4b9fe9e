#!/usr/bin/env bash
# Compares Erdtree with what users would run instead, in one run on this
# machine: etcd 3.4 (a gRPC key-value store) and nghttpd (the HTTP/2 ceiling of
# the box). All servers listen on loopback from a temp dir; h2load drives each
# load in turn, alternating systems round by round, and the summary quotes
# medians and per-round ratios, never a lone absolute figure (the machine is
# shared). docs/benchmarks.md explains every row.
#
#   scripts/bench.sh        (`make bench` runs `scripts/install-deps.sh bench` first)
#
# Environment:
#   ERDTREE_BIN=PATH        bench this binary instead of building .build-bench
#   BENCH_ROUNDS=3          rounds; a round runs every load once
#   BENCH_REQUESTS=N        requests per run, every load; unset: sized per load
#                           from a warm-up so one run takes ~BENCH_SECONDS
#   BENCH_SECONDS=6         target length of one run
#   BENCH_SYSTEMS="erdtree nghttpd etcd"   subset to bench (rows lacking a side print —)
#   BENCH_WAL_SYNC=VALUE    Erdtree wal.sync_interval ("always" = fsync per batch,
#                           as etcd does); unset: the server's default
#   BENCH_EVENT_LOOPS=1     Erdtree server.event_loops; 1 matches nghttpd's single
#                           worker and leaves the other core to h2load (0 = per core)
#   BENCH_OUT=FILE          also write the report (markdown) to FILE
#   BENCH_KEEP=1            keep the temp dir (server logs, configs, h2load output)
#   BENCH_PROFILE=1         then run a small Get load on Erdtree under callgrind
#                           and print its top functions
#   BENCH_PROFILE_REQUESTS=20000
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
systems=" ${BENCH_SYSTEMS:-erdtree nghttpd etcd} "
wal_sync=${BENCH_WAL_SYNC:-}
event_loops=${BENCH_EVENT_LOOPS:-1}
profile=${BENCH_PROFILE:-0}
profile_requests=${BENCH_PROFILE_REQUESTS:-20000}

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }
has() { [[ $systems == *" $1 "* ]]; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found (package $2): run scripts/install-deps.sh bench"; }

[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive integer, got '$rounds'"
[[ $seconds =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECONDS must be a positive integer, got '$seconds'"
[[ -z $fixed_requests || $fixed_requests =~ ^[1-9][0-9]*$ ]] \
  || die "BENCH_REQUESTS must be a positive integer, got '$fixed_requests'"
for s in $systems; do
  case $s in erdtree | nghttpd | etcd) ;; *) die "BENCH_SYSTEMS: unknown system '$s' (erdtree, nghttpd, etcd)" ;; esac
done
need h2load nghttp2-client
need curl curl
need python3 python3
if has nghttpd; then need nghttpd nghttp2-server; fi
if has etcd; then need etcd etcd-server; fi
if has erdtree; then need protoc protobuf-compiler; fi
if has erdtree && [ "$profile" = 1 ]; then
  need valgrind valgrind
  need callgrind_control valgrind
  need objcopy binutils
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/erdtree-bench.XXXXXX")
pids=()

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
h2load_pid=
cleanup() {
  local pid
  if [ -n "$h2load_pid" ]; then kill -KILL "$h2load_pid" 2>/dev/null || true; fi
  for pid in "${pids[@]}"; do stop_pid "$pid"; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then note "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Ports the kernel just handed out; a race with another tenant is possible but
# shows up as a server that fails to start, which wait_port reports.
read -r port_erdtree port_nghttpd port_etcd port_etcd_peer port_profile < <(
  python3 -c 'import socket
socks = [socket.socket() for _ in range(5)]
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
  encode SetRequest "key: \"$key\" value: \"$value\"" "$tmp/preload-set.bin"
  encode SetRequest "key: \"$write_key\" value: \"$value\"" "$tmp/set.bin"
fi
if has etcd; then
  python3 "$helpers/grpc_body.py" etcd-range "$key" > "$tmp/range.bin"
  python3 "$helpers/grpc_body.py" etcd-put "$key" "$tmp/value.bin" > "$tmp/preload-put.bin"
  python3 "$helpers/grpc_body.py" etcd-put "$write_key" "$tmp/value.bin" > "$tmp/put.bin"
fi

# --- loads ----------------------------------------------------------------
# id: system, path, body, clients, streams per client, gRPC headers?

declare -A load_system load_path load_body load_clients load_streams load_grpc load_label
define_load() {
  load_system[$1]=$2 load_path[$1]=$3 load_body[$1]=$4
  load_clients[$1]=$5 load_streams[$1]=$6 load_grpc[$1]=$7 load_label[$1]=$8
}
define_load get erdtree /erdtree.v1.KVStore/Get "$tmp/get.bin" 4 32 1 "Erdtree Get (c4 m32)"
define_load ngpost nghttpd /file20 "$tmp/post.bin" 4 32 0 "nghttpd POST 100 B (c4 m32)"
define_load range etcd /etcdserverpb.KV/Range "$tmp/range.bin" 4 32 1 "etcd Range serializable (c4 m32)"
define_load set erdtree /erdtree.v1.KVStore/Set "$tmp/set.bin" 4 32 1 "Erdtree Set 100 B (c4 m32)"
define_load put etcd /etcdserverpb.KV/Put "$tmp/put.bin" 4 32 1 "etcd Put 100 B (c4 m32)"
define_load get1 erdtree /erdtree.v1.KVStore/Get "$tmp/get.bin" 1 1 1 "Erdtree Get (c1 m1)"
define_load ngpost1 nghttpd /file20 "$tmp/post.bin" 1 1 0 "nghttpd POST 100 B (c1 m1)"

# The order of a round: systems alternate, and each Erdtree load sits next to
# the anchor it is compared with.
loads=()
for id in get ngpost range set put get1 ngpost1; do
  if has "${load_system[$id]}"; then loads+=("$id"); fi
done
[ ${#loads[@]} -gt 0 ] || die "BENCH_SYSTEMS selects nothing to run"

declare -A system_port=([erdtree]=$port_erdtree [nghttpd]=$port_nghttpd [etcd]=$port_etcd)
load_url() { echo "http://127.0.0.1:${system_port[${load_system[$1]}]}${load_path[$1]}"; }

h2load_run() { # load-id out-file h2load-args...
  local id=$1 out=$2
  shift 2
  local args=(-c "${load_clients[$id]}" -m "${load_streams[$id]}" -t 1 -d "${load_body[$id]}")
  if [ "${load_grpc[$id]}" = 1 ]; then args+=(-H 'content-type: application/grpc' -H 'te: trailers'); fi
  # In the background so that a signal to this script acts at once (bash
  # defers traps until a foreground child exits).
  h2load "${args[@]}" "$@" "$(load_url "$id")" > "$out" 2>&1 &
  h2load_pid=$!
  if ! wait "$h2load_pid"; then
    h2load_pid=
    cat "$out" >&2
    die "h2load failed on ${load_label[$id]}"
  fi
  h2load_pid=
}

# h2load counts a response as succeeded from :status alone, so anything but
# every request answered 2xx is a broken run, not a slow one. (gRPC errors
# ride in trailers under :status 200: grpc_check samples those.)
h2load_check() { # load-id out-file expected-requests (empty: timing-based)
  local id=$1 out=$2 want=$3 done ok failed errored timeout twoxx
  read -r done ok failed errored timeout < <(awk '/^requests:/ {print $6, $8, $10, $12, $14}' "$out")
  twoxx=$(awk '/^status codes:/ {print $3}' "$out")
  if [ -z "$done" ] || [ "$failed" != 0 ] || [ "$errored" != 0 ] || [ "$timeout" != 0 ] \
    || [ "$ok" != "$twoxx" ] || [ "$ok" = 0 ] || { [ -n "$want" ] && [ "$ok" != "$want" ]; }; then
    cat "$out" >&2
    die "${load_label[$id]}: ${ok:-?} of ${want:-$done} requests succeeded with 2xx (h2load output above)"
  fi
}

h2load_rps() { awk '/^finished in/ {print $4}' "$1"; }

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
preload_etcd() {
  local base="http://127.0.0.1:$port_etcd/etcdserverpb.KV"
  grpc_check "$base/Put" "$tmp/preload-put.bin" "etcd Put"
  grpc_check "$base/Put" "$tmp/put.bin" "etcd Put"
  read_check_etcd
}
read_check_etcd() {
  grpc_check "http://127.0.0.1:$port_etcd/etcdserverpb.KV/Range" "$tmp/range.bin" "etcd Range" "$value"
}

# --- servers ----------------------------------------------------------------

erdtree_config() { # dir port
  mkdir -p "$1"
  {
    echo "server:"
    echo "  address: 127.0.0.1"
    echo "  port: $2"
    echo "  event_loops: $event_loops"
    echo "wal:"
    echo "  directory: $1/wal"
    if [ -n "$wal_sync" ]; then echo "  sync_interval: \"$wal_sync\""; fi
  } > "$1/erdtree.yaml"
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
  erdtree_config "$tmp/erdtree" "$port_erdtree"
  # cwd is the temp dir so nothing the server writes by default lands in the repo.
  (cd "$tmp/erdtree" && exec "$erdtree_bin" master --config "$tmp/erdtree/erdtree.yaml") \
    > "$tmp/erdtree/server.log" 2>&1 &
  pids+=($!)
  wait_port "$port_erdtree" $! erdtree "$tmp/erdtree/server.log"
  preload_erdtree "$port_erdtree" erdtree
fi

if has nghttpd; then
  nghttpd --no-tls -a 127.0.0.1 -d "$tmp/www" "$port_nghttpd" > "$tmp/nghttpd.log" 2>&1 &
  pids+=($!)
  wait_port "$port_nghttpd" $! nghttpd "$tmp/nghttpd.log"
  nghttpd_check
fi

if has etcd; then
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

# --- warm-up and sizing -------------------------------------------------------

declare -A requests
if [ -n "$fixed_requests" ]; then
  note "warming up each load for 2 s; $fixed_requests requests per run"
else
  note "warming up each load for 2 s, sizing runs to ~${seconds}s"
fi
for id in "${loads[@]}"; do
  h2load_run "$id" "$tmp/h2load.out" -D 2
  h2load_check "$id" "$tmp/h2load.out" ""
  if [ -n "$fixed_requests" ]; then
    requests[$id]=$fixed_requests
  else
    rps=$(h2load_rps "$tmp/h2load.out")
    requests[$id]=$(awk -v r="$rps" -v s="$seconds" 'BEGIN {n = int(r * s / 100) * 100; print (n < 200 ? 200 : n)}')
  fi
  note "  ${load_label[$id]}: $(printf '%.0f' "$(h2load_rps "$tmp/h2load.out")") req/s warm-up -> ${requests[$id]} requests per run"
done

# --- rounds -------------------------------------------------------------------

results=$tmp/results.tsv
: > "$results"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for ((round = 1; round <= rounds; round++)); do
  for id in "${loads[@]}"; do
    # Throughput and latency come from separate runs: h2load's per-request log
    # costs it enough CPU that, on 2 cores, a logged run measures h2load rather
    # than the server (both Erdtree and nghttpd then top out near the same figure).
    h2load_run "$id" "$tmp/h2load.out" -n "${requests[$id]}"
    h2load_check "$id" "$tmp/h2load.out" "${requests[$id]}"
    rps=$(h2load_rps "$tmp/h2load.out")
    latency_requests=$(( requests[$id] / 4 < 200 ? 200 : requests[$id] / 4 ))
    h2load_run "$id" "$tmp/h2load.latency.out" -n "$latency_requests" --log-file "$tmp/requests.log"
    h2load_check "$id" "$tmp/h2load.latency.out" "$latency_requests"
    read -r p50 p99 < <(python3 "$helpers/report.py" percentiles "$tmp/requests.log")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$id" "${requests[$id]}" "$rps" "$p50" "$p99" >> "$results"
    note "round $round/$rounds  ${load_label[$id]}: $(printf '%.0f' "$rps") req/s, p50 ${p50} µs, p99 ${p99} µs"
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
      cp "$tmp/h2load.out" "$tmp/h2load.$round.$id.out"
    fi
    rm -f "$tmp/requests.log"
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# The sampled answers must still be right after the load (a server that
# broke mid-run would otherwise only show up as a fast number).
if has erdtree; then read_check_erdtree "$port_erdtree" erdtree; fi
if has nghttpd; then nghttpd_check; fi
if has etcd; then read_check_etcd; fi

# --- report -------------------------------------------------------------------

versions=()
if has erdtree; then versions+=("$erdtree_label${wal_sync:+ (wal.sync_interval $wal_sync)}"); fi
if has etcd; then versions+=("etcd $(etcd --version | awk '/^etcd Version/ {print $3}')"); fi
if has nghttpd; then versions+=("$(nghttpd --version | awk '{print $NF}' | tr '/' ' ')"); fi
report() {
  echo "## Erdtree benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "Medians of $rounds alternated rounds on loopback; ratios are medians of per-round ratios."
  echo "$(nproc) cores shared by every server and h2load (one thread), nothing pinned;"
  echo "load average ${load_before} before, ${load_after} after. $(IFS=,; echo "${versions[*]}" | sed 's/,/, /g')."
  if has erdtree && [ -z "$(ls -A "$tmp/erdtree/wal" 2>/dev/null)" ]; then
    echo
    echo "**Erdtree wrote no file under its wal.directory: its Set figures are memory-only writes,"
    echo "not comparable with etcd's fsynced Puts.**"
  fi
  echo
  python3 "$helpers/report.py" summary "$results"
  echo
  echo "<details><summary>every run</summary>"
  echo
  python3 "$helpers/report.py" rounds "$results"
  echo
  echo "</details>"
}
report_file=$tmp/report.md
report > "$report_file"
cat "$report_file"
if [ -n "${BENCH_OUT:-}" ]; then cp "$report_file" "$BENCH_OUT"; fi

# --- optional profile -----------------------------------------------------------

if [ "$profile" = 1 ] && has erdtree; then
  note "profiling: Erdtree Get (c4 m32, $profile_requests requests) under callgrind"
  dir=$tmp/profile
  erdtree_config "$dir" "$port_profile"
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
  system_port[erdtree]=$port_profile
  h2load_run get "$dir/h2load.out" -n "$profile_requests"
  h2load_check get "$dir/h2load.out" "$profile_requests"
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
  echo "### callgrind: Erdtree Get, $profile_requests requests (c4 m32), instructions by function, self"
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
