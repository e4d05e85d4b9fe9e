#!/usr/bin/env bash
# Fails when the committed protobuf-c code in Sources/ErdtreeProto does not
# match what scripts/generate.sh makes from api/ now (a proto was edited
# without `make generate`, or generated files were edited by hand). `make
# test` runs it. Compares only what generate.sh owns: include/ and generated/.
set -euo pipefail

cd "$(dirname "$0")/.."

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

scripts/generate.sh --into "$tmp/ErdtreeProto"

stale=()
while IFS= read -r f; do
  if [ ! -f "Sources/ErdtreeProto/$f" ]; then
    stale+=("Sources/ErdtreeProto/$f (missing)")
  elif ! cmp -s "$tmp/ErdtreeProto/$f" "Sources/ErdtreeProto/$f"; then
    stale+=("Sources/ErdtreeProto/$f (differs)")
  fi
done < <(cd "$tmp/ErdtreeProto" && find include generated -type f | LC_ALL=C sort)

# Files generate.sh would not write: left over from a removed proto.
while IFS= read -r f; do
  [ -f "$tmp/ErdtreeProto/$f" ] || stale+=("Sources/ErdtreeProto/$f (no longer generated)")
done < <(cd Sources/ErdtreeProto && find include generated -type f 2>/dev/null | LC_ALL=C sort)

if [ ${#stale[@]} -gt 0 ]; then
  echo "check-generated: generated protobuf code is stale; run \`make generate\` and commit the result:" >&2
  printf '  %s\n' "${stale[@]}" >&2
  exit 1
fi
echo "check-generated: Sources/ErdtreeProto matches api/"
