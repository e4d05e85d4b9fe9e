#!/usr/bin/env bash
# Builds the libFuzzer harnesses (Tests/Fuzz, Package.swift's fuzzHarnesses) with ASan and runs each
# for FUZZ_SECONDS (default 60), one after the other: the machine's cores are shared.
#
#   scripts/fuzz.sh                  every harness
#   scripts/fuzz.sh deframer wal     the named ones
#
# Seeds come from the committed Tests/Fuzz/corpus/<harness>/ (read only); inputs that add coverage
# go to .build-fuzz/corpus/<harness>/, crash/leak/timeout/oom inputs to .build-fuzz/findings/<harness>/.
# Exits non-zero when any harness found something, after running the rest.
#
# FUZZ_CONFIG=release|debug picks the build (default release: still ASan, with -enable-testing for the
# harnesses' @testable imports). FUZZ_ARGS adds libFuzzer flags, e.g. FUZZ_ARGS='-jobs=2'.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_CONFIG=${FUZZ_CONFIG:-release}
FUZZ_ARGS=${FUZZ_ARGS:-}
SWIFT=${SWIFT:-swift}
SCRATCH=.build-fuzz

# The harness list is Package.swift's fuzzHarnesses table: each row holds "FuzzName", "Tests/Fuzz/<harness>".
mapfile -t rows < <(grep -oE '"Fuzz[A-Za-z0-9]+", "Tests/Fuzz/[^"]+"' Package.swift | tr -d ' "')
declare -A targets=()
all=()
for row in "${rows[@]}"; do
    target=${row%%,*}
    harness=${row##*/}
    targets[$harness]=$target
    all+=("$harness")
done
harnesses=("$@")
[[ ${#harnesses[@]} -gt 0 ]] || harnesses=("${all[@]}")
for harness in "${harnesses[@]}"; do
    [[ -n ${targets[$harness]:-} ]] || { echo "fuzz.sh: no harness '$harness' (have: ${all[*]})" >&2; exit 2; }
done

# ERDTREE_FAILPOINTS would change the code under test depending on the caller (`make test` exports it);
# the harnesses fuzz what ships. ld.gold crashes on sanitizer objects, so lld links.
build_flags=(--scratch-path "$SCRATCH" -c "$FUZZ_CONFIG" -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld)
[[ $FUZZ_CONFIG == release ]] && build_flags+=(-Xswiftc -enable-testing)
# SwiftPM builds one --product per call, and each call costs seconds even with nothing to do: every
# harness at once is one plain build (the erdtree product comes along; it links, and is not run).
if [[ $# -eq 0 ]]; then
    env -u ERDTREE_FAILPOINTS ERDTREE_FUZZ=1 "$SWIFT" build "${build_flags[@]}"
else
    for harness in "${harnesses[@]}"; do
        env -u ERDTREE_FAILPOINTS ERDTREE_FUZZ=1 "$SWIFT" build "${build_flags[@]}" --product "${targets[$harness]}"
    done
fi
bin_dir=$(env -u ERDTREE_FAILPOINTS ERDTREE_FUZZ=1 "$SWIFT" build "${build_flags[@]}" --show-bin-path)

failed=()
for harness in "${harnesses[@]}"; do
    corpus=$SCRATCH/corpus/$harness
    # Not $SCRATCH/artifacts: SwiftPM owns that directory (binary targets) and empties it on every build.
    artifacts=$SCRATCH/findings/$harness
    mkdir -p "$corpus" "$artifacts"
    seeds=()
    [[ -d Tests/Fuzz/corpus/$harness ]] && seeds+=("Tests/Fuzz/corpus/$harness")
    echo "== fuzz $harness for ${FUZZ_SECONDS}s"
    # The Swift backtracer would print a second report, slowly, over libFuzzer's own.
    # shellcheck disable=SC2086
    if ! SWIFT_BACKTRACE=enable=no "$bin_dir/${targets[$harness]}" \
        -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" $FUZZ_ARGS \
        "$corpus" "${seeds[@]}"; then
        failed+=("$harness")
        echo "fuzz.sh: $harness found an input: $artifacts/ (reproduce: $bin_dir/${targets[$harness]} <file>)" >&2
    fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz.sh: failing harnesses: ${failed[*]}" >&2
    exit 1
fi
