#!/usr/bin/env bash
# Regenerates the C target ErdtreeProto from the protos in api/ (`make
# generate`). The output is committed, so building needs neither buf nor
# protoc-gen-c; scripts/check-generated.sh fails `make test` when it is stale.
#
#   scripts/generate.sh              rewrite Sources/ErdtreeProto in place
#   scripts/generate.sh --into DIR   write the same tree under DIR instead
#
# What it writes (every file, and nothing else, under include/ and generated/;
# files there from protos that no longer exist are removed):
#   include/<proto path>.pb-c.h          protoc-gen-c headers
#   generated/<proto path>.pb-c.c        protoc-gen-c sources
#   generated/descriptor_set.c           the FileDescriptorSet of the served
#                                        protos (api/ less api/etcd, with
#                                        imports, without source info) as
#                                        erdtree_descriptor_set[_len], served
#                                        by gRPC reflection; and every
#                                        ProtobufCServiceDescriptor generated
#                                        for them as
#                                        erdtree_service_descriptors[_count],
#                                        which ErdtreeProtobuf's method table
#                                        joins with the set (no service is
#                                        listed by hand)
#   include/ErdtreeProto.h               umbrella header over all of the above
#   include/module.modulemap             names it: SwiftPM refuses an implicit
#                                        umbrella header with directories next
#                                        to it, and the protoc-gen-c headers
#                                        must sit at their proto paths because
#                                        the .pb-c.c files include them so
#
# api/etcd holds etcd's protos, which the node's etcd client speaks and no
# server of ours serves: their messages are generated like the rest, but they
# stay out of the descriptor set and the service list, so reflection, the router
# and Connect's method table never list /etcdserverpb.* paths.
#
# Output is byte-for-byte reproducible for a given buf and protoc-gen-c.
# Needs: buf (.venv/bin/buf from `scripts/install-deps.sh test`, or on PATH),
# protoc-gen-c (Debian's protobuf-c-compiler) and python3.
set -euo pipefail

cd "$(dirname "$0")/.."

dest=Sources/ErdtreeProto
case "${1:-}" in
  "") ;;
  --into)
    [ $# -eq 2 ] || { echo "usage: $0 [--into DIR]" >&2; exit 2; }
    dest=$2
    ;;
  *) echo "usage: $0 [--into DIR]" >&2; exit 2 ;;
esac

if [ -x .venv/bin/buf ]; then
  buf=.venv/bin/buf
elif command -v buf >/dev/null 2>&1; then
  buf=buf
else
  echo "generate: buf not found in .venv/bin or on PATH; run scripts/install-deps.sh test" >&2
  exit 1
fi
command -v protoc-gen-c >/dev/null 2>&1 || {
  echo "generate: protoc-gen-c not found; run scripts/install-deps.sh (protobuf-c-compiler)" >&2
  exit 1
}
command -v python3 >/dev/null 2>&1 || { echo "generate: python3 not found" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# buf.gen.yaml's `out` is relative to --output; keep the two in step.
"$buf" generate --output "$tmp/buf"
gen="$tmp/buf/.build-generated/c"
[ -d "$gen" ] || { echo "generate: buf generate wrote nothing under $gen (does buf.gen.yaml's out still say .build-generated/c?)" >&2; exit 1; }

# Client-only protos (see above), relative to api/ and to the generated tree.
client_only=etcd

# --as-file-descriptor-set: a plain FileDescriptorSet; buf's default image
# format adds a buf-only field (8042) to every file, which reflection clients
# would receive as an unknown field.
"$buf" build --as-file-descriptor-set --exclude-source-info --exclude-path "api/$client_only" \
  -o "$tmp/descriptor_set.binpb"

out="$tmp/out"
mkdir -p "$out/include" "$out/generated"
(
  cd "$gen"
  find . -name '*.pb-c.h' | LC_ALL=C sort | while read -r f; do
    mkdir -p "$out/include/$(dirname "$f")"
    cp "$f" "$out/include/$f"
  done
  find . -name '*.pb-c.c' | LC_ALL=C sort | while read -r f; do
    mkdir -p "$out/generated/$(dirname "$f")"
    cp "$f" "$out/generated/$f"
  done
)

python3 - "$tmp/descriptor_set.binpb" "$out/generated/descriptor_set.c" "$out/include" "$client_only" <<'EOF'
import os
import re
import sys

data = open(sys.argv[1], "rb").read()

# Every service descriptor the protoc-gen-c headers of served protos declare
# (not those under the client-only directory), headers in path order and
# services in the order each header declares them (the proto's).
headers = []
client_only = os.path.join(sys.argv[3], sys.argv[4])
for root, _, files in os.walk(sys.argv[3]):
    if root == client_only or root.startswith(client_only + os.sep):
        continue
    headers += [os.path.join(root, f) for f in files if f.endswith(".pb-c.h")]
headers.sort(key=lambda path: os.path.relpath(path, sys.argv[3]).encode())
services = []
for header in headers:
    services += re.findall(r"^extern const ProtobufCServiceDescriptor (\w+);$", open(header).read(), re.M)

lines = [
    "/* Generated by scripts/generate.sh from api/. DO NOT EDIT! */",
    "/* The google.protobuf.FileDescriptorSet of every proto in api/ but the",
    " * client-only api/%s, imports included and source info excluded (`buf" % sys.argv[4],
    " * build --as-file-descriptor-set --exclude-source-info`); gRPC reflection",
    " * serves its files. Then every service descriptor protoc-gen-c generated",
    " * for them, which the method table joins with the set's methods. */",
    "",
    '#include "ErdtreeProto.h"',
    "",
    "const unsigned char erdtree_descriptor_set[%d] = {" % len(data),
]
for start in range(0, len(data), 12):
    chunk = data[start:start + 12]
    lines.append("  " + " ".join("0x%02x," % b for b in chunk))
lines += [
    "};",
    "",
    "const size_t erdtree_descriptor_set_len = sizeof(erdtree_descriptor_set);",
    "",
    "const ProtobufCServiceDescriptor *_Nonnull const erdtree_service_descriptors[%d] = {" % len(services),
]
lines += ["  &%s," % name for name in services]
lines += [
    "};",
    "",
    "const size_t erdtree_service_descriptors_count =",
    "    sizeof(erdtree_service_descriptors) / sizeof(erdtree_service_descriptors[0]);",
    "",
]
open(sys.argv[2], "w").write("\n".join(lines))
EOF

{
  cat <<'EOF'
/* Generated by scripts/generate.sh from api/. DO NOT EDIT! */
/* Umbrella header of ErdtreeProto: every protoc-gen-c header for api/ (the
 * etcd client's api/etcd included), plus the embedded descriptor set that gRPC
 * reflection serves and the list of generated service descriptors, both of
 * which leave api/etcd out: the server serves none of it.
 *
 * protoc-gen-c's `*__INIT` macros are not imported by Swift; call the
 * generated `*__init(&message)` functions instead. */
#ifndef ERDTREE_PROTO_H
#define ERDTREE_PROTO_H

#include <stddef.h>

EOF
  (cd "$out/include" && find . -name '*.pb-c.h' | LC_ALL=C sort | sed 's|^\./\(.*\)$|#include "\1"|')
  cat <<'EOF'

/* The serialized google.protobuf.FileDescriptorSet of api/ but api/etcd (see
 * generated/descriptor_set.c). */
extern const unsigned char erdtree_descriptor_set[];
extern const size_t erdtree_descriptor_set_len;

/* Every ProtobufCServiceDescriptor protoc-gen-c generated for api/ but
 * api/etcd (see generated/descriptor_set.c), so that code joining the
 * generated code with the descriptor set needs no hand-written list of
 * services. */
extern const ProtobufCServiceDescriptor *_Nonnull const erdtree_service_descriptors[];
extern const size_t erdtree_service_descriptors_count;

/* Swift does not import globals of incomplete array type, so it reaches the
 * arrays through these accessors. */
static inline const unsigned char *_Nonnull erdtree_descriptor_set_bytes(void) {
  return erdtree_descriptor_set;
}

static inline const ProtobufCServiceDescriptor *_Nonnull const *_Nonnull erdtree_service_descriptors_list(void) {
  return erdtree_service_descriptors;
}

#endif /* ERDTREE_PROTO_H */
EOF
} > "$out/include/ErdtreeProto.h"

cat > "$out/include/module.modulemap" <<'EOF'
module ErdtreeProto {
    umbrella header "ErdtreeProto.h"
    export *
}
EOF

# Replace only what this script owns; anything else in $dest is left alone.
mkdir -p "$dest"
rm -rf "$dest/generated"
if [ -d "$dest/include" ]; then
  find "$dest/include" -name '*.pb-c.h' -delete
  rm -f "$dest/include/ErdtreeProto.h" "$dest/include/module.modulemap"
  find "$dest/include" -mindepth 1 -type d -empty -delete
fi
mkdir -p "$dest/include"
cp -R "$out/include/." "$dest/include/"
cp -R "$out/generated" "$dest/generated"
