#!/usr/bin/env bash
# Makes what deploy/compose.secure.yaml mounts as secrets, in deploy/secrets/ (never committed),
# or in the directory given as the only argument:
# a CA, a server certificate for each node (its service name, localhost and 127.0.0.1), a
# client certificate for each slave (mutual TLS on replication) and one for operators, and
# a token per role. Idempotent: files already there are kept, so re-running never rotates a
# secret by surprise; delete a file to have it made anew (then `docker compose kill -s HUP`).
set -euo pipefail
out=${1:-$(dirname "$0")/secrets}
umask 077
mkdir -p "$out"
cd "$out"

DAYS=825

if [[ ! -f ca.pem ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=erdtree deploy CA" -keyout ca.key -out ca.pem 2>/dev/null
fi

# name, extendedKeyUsage, subjectAltName
issue() {
    local name=$1 usage=$2 san=$3
    [[ -f $name.pem ]] && return
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
        -keyout "$name.key" -out "$name.csr" 2>/dev/null
    openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$DAYS" \
        -extfile <(printf 'extendedKeyUsage=%s\nsubjectAltName=%s\n' "$usage" "$san") \
        -out "$name.pem" 2>/dev/null
    rm -f "$name.csr"
}

for node in master slave1 slave2; do
    issue "$node" serverAuth "DNS:$node,DNS:localhost,IP:127.0.0.1"
done
for client in slave1-client slave2-client operator; do
    issue "$client" clientAuth "DNS:$client"
done

for role in read write admin replication; do
    [[ -f $role.token ]] || openssl rand -hex 32 > "$role.token"
done

# The node runs as uid 10001 (deploy/Dockerfile); compose bind-mounts these files as they are.
chmod 644 ./*.pem ./*.key ./*.token
echo "secrets in $(pwd)"
