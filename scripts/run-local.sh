#!/usr/bin/env bash
# Runs a local Erdtree cluster in the foreground until Ctrl-C (or until any node
# exits), each node's log lines prefixed with its name: a master on the embedded
# default (127.0.0.1:8080, data under ./data/master) and two slaves following it
# on 127.0.0.1:8081 and :8082 (data under ./data/slave1 and ./data/slave2, their
# config files written there at start).
#
#   ERDTREE_BIN=path/to/erdtree scripts/run-local.sh   (default: .build/release/erdtree)
set -euo pipefail

cd "$(dirname "$0")/.."
bin="${ERDTREE_BIN:-.build/release/erdtree}"
if [ ! -x "$bin" ]; then
  echo "run-local: $bin is missing; run 'make release' (or 'make run') first" >&2
  exit 1
fi

pids=()
names=()

# Stop every node we started: SIGTERM lets each drain and close its WAL; a node
# still up after the grace period gets SIGKILL so Ctrl-C always returns.
stop_all() {
  trap - INT TERM EXIT
  local pid
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  local deadline=$((SECONDS + 15))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
      sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap stop_all EXIT

# start_node NAME ARGS...: runs "$bin ARGS..." in the background with stdout and
# stderr prefixed by "[NAME] " (stderr stays on stderr).
#
# Ctrl-C reaches the whole terminal process group. The node runs in its own
# session (setsid) so that only stop_all's single SIGTERM stops it, and the
# prefixing seds ignore SIGINT so they outlive the node and print its last
# lines instead of dying first and leaving it to write into a closed pipe.
start_node() {
  local name=$1
  shift
  setsid "$bin" "$@" \
    > >(trap '' INT; exec sed -u "s/^/[$name] /") \
    2> >(trap '' INT; exec sed -u "s/^/[$name] /" >&2) &
  pids+=($!)
  names+=("$name")
  echo "run-local: started $name (pid $!): $bin $*" >&2
}

# A slave's config: the embedded default's keys, with its own port and directory.
slave_config() { # name port
  mkdir -p "data/$1"
  cat > "data/$1/config.yaml" <<EOF
# Written by scripts/run-local.sh at each start; edit the script, not this file.
server:
  address: "127.0.0.1"
  port: $2
wal:
  directory: "./data/$1/wal"
master:
  address: "127.0.0.1:8080"
  sync_interval: 1s
EOF
}

start_node master master
slave_config slave1 8081
slave_config slave2 8082
start_node slave1 slave --config data/slave1/config.yaml
start_node slave2 slave --config data/slave2/config.yaml

# Return as soon as any node exits (a crash should not leave the rest running
# unnoticed), with that node's exit status.
status=0
wait -n "${pids[@]}" || status=$?
echo "run-local: a node exited with status $status; stopping the others" >&2
exit "$status"
