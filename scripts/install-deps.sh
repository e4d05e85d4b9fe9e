#!/usr/bin/env bash
# Installs what Erdtree needs on a Debian 12 machine that has only the Swift
# toolchain. Idempotent: packages already present are not fetched again, and an
# existing venv is reused when it already holds every interop client.
#
#   scripts/install-deps.sh          build + run deps (libraries, protoc-gen-c)
#   scripts/install-deps.sh test     also the test tools (etcd and etcdctl for the HA and etcd client tests,
#                                    openssl for the certificates of the TLS tests, prometheus for
#                                    promtool, which checks /metrics)
#                                    and the Python venv
#   scripts/install-deps.sh bench    also the benchmark anchors (etcd, nghttpd, redis, redis-sentinel)
set -euo pipefail

cd "$(dirname "$0")/.."
mode="${1:-build}"

build_pkgs=(pkg-config libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler zlib1g-dev)
test_pkgs=(nghttp2-client curl openssl python3-venv docker-compose iproute2 binutils etcd-server etcd-client prometheus)
bench_pkgs=(nghttp2-client nghttp2-server etcd-server etcd-client redis-server redis-sentinel redis-tools protobuf-compiler valgrind binutils gcc)

wanted=("${build_pkgs[@]}")
case "$mode" in
  build) ;;
  test) wanted+=("${test_pkgs[@]}") ;;
  bench) wanted+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "usage: $0 [build|test|bench]" >&2; exit 2 ;;
esac

missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install-deps: installing ${missing[*]}"
  $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
    --no-install-recommends "${missing[@]}"
fi

if [ "$mode" = test ] || [ "$mode" = bench ]; then
  venv=.venv
  reqs=tests/interop/requirements.txt
  stamp="$venv/.requirements.sha"
  want_sha=$(sha256sum "$reqs" | cut -d' ' -f1)
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want_sha" ]; then
    echo "install-deps: preparing $venv from $reqs"
    # The venv module of a pyenv/CPython build works without python3-venv;
    # Debian's python3 needs the package installed above.
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$reqs"
    echo "$want_sha" > "$stamp"
  fi
fi
