#!/usr/bin/env bash
# Builds the libFuzzer targets of Fuzz/ into .build-fuzz/ and runs each for SECONDS (default 60).
#
#   Scripts/fuzz.sh [SECONDS]
#
# Environment:
#   FUZZ_TARGETS   space-separated subset of: frame vzmap descriptor jobconfig session vmdk abm records (default: all)
#   FUZZ_JOBS      targets run at the same time (default 1; the machines have 2 cores)
#   FUZZ_ARGS      extra libFuzzer flags (e.g. "-seed=1 -max_len=8192")
#   FUZZ_NO_BUILD  1 = reuse the binaries already in .build-fuzz/
#   FUZZ_SRC       the Sources directory to build from (default: Sources); e.g. a scratch copy with
#                  a known crash patched out, to fuzz past it
#
# Each target is compiled with swiftc straight from the sources (FAULTS.md: -sanitize=fuzzer,address
# -parse-as-library), as one module named VZCore so that VZFormats' `import VZCore` needs no
# separate module build. Seeds come from Fuzz/corpus/<target>/ (checked in, small; see
# Fuzz/corpus/generate-corpus.swift); what libFuzzer learns goes to .build-fuzz/corpus/<target>/,
# crashes to .build-fuzz/artifacts/<target>-crash-*. Run with SWIFT_BACKTRACE=enable=no, or the
# Swift crash handler trips ASan and hangs. Exit status: 0 when no target found anything.
set -euo pipefail
SECONDS_EACH=${1:-60}
HERE=$(cd "$(dirname "$0")/.." && pwd)
OUT="$HERE/.build-fuzz"
TARGETS=${FUZZ_TARGETS:-frame vzmap descriptor jobconfig session vmdk abm records}
JOBS=${FUZZ_JOBS:-1}
export SWIFT_BACKTRACE=enable=no
mkdir -p "$OUT/artifacts" "$OUT/corpus" "$OUT/logs"
cd "$HERE"

SRC=${FUZZ_SRC:-Sources}
sources_for() {
    case "$1" in
        frame)      echo "$SRC"/VZCore/*.swift Fuzz/FrameFuzz.swift ;;
        vzmap)      echo "$SRC"/VZCore/*.swift "$SRC"/VZFormats/*.swift Fuzz/VzmapFuzz.swift ;;
        descriptor) echo "$SRC"/VZCore/*.swift "$SRC"/VZFormats/*.swift Fuzz/DescriptorFuzz.swift ;;
        jobconfig)  echo "$SRC"/VZCore/*.swift Fuzz/JobConfigFuzz.swift ;;
        session)    echo "$SRC"/VZCore/*.swift "$SRC"/VZWire/DiskGeometry.swift "$SRC"/VZWire/TargetSessionStateMachine.swift Fuzz/SessionFuzz.swift ;;
        vmdk)       echo "$SRC"/VZCore/*.swift "$SRC"/VZFormats/*.swift Fuzz/VMDKFuzz.swift ;;
        abm)        echo "$SRC"/VZCore/*.swift "$SRC"/VZFormats/*.swift "$SRC"/VZActiveBlocks/*.swift Fuzz/ActiveBlocksFuzz.swift ;;
        records)    echo "$SRC"/VZCore/*.swift "$SRC"/VZFormats/*.swift Fuzz/RecordFuzz.swift ;;
        *) echo "unknown fuzz target '$1'" >&2; exit 2 ;;
    esac
}

build() {
    local t=$1
    # shellcheck disable=SC2046
    swiftc -module-name VZCore -parse-as-library -sanitize=fuzzer,address -O -g -suppress-warnings \
        $(sources_for "$t") -o "$OUT/$t-fuzz" > "$OUT/logs/$t-build.log" 2>&1 \
        || { cat "$OUT/logs/$t-build.log" >&2; echo "build of $t failed" >&2; return 1; }
    echo "built $OUT/$t-fuzz"
}

if [ "${FUZZ_NO_BUILD:-0}" != 1 ]; then
    pids=()
    for t in $TARGETS; do build "$t" & pids+=($!); done
    for p in "${pids[@]}"; do wait "$p"; done
fi

run() {
    local t=$1
    mkdir -p "$OUT/corpus/$t"
    # The working corpus comes first: libFuzzer adds what it finds to the first directory only,
    # so the checked-in seeds stay as they are.
    # shellcheck disable=SC2086
    local rc=0
    "$OUT/$t-fuzz" "$OUT/corpus/$t" "Fuzz/corpus/$t" \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=256 \
        -artifact_prefix="$OUT/artifacts/$t-" -print_final_stats=1 ${FUZZ_ARGS:-} \
        > "$OUT/logs/$t-run.log" 2>&1 || rc=$?
    local execs
    # Plain runs print stat::number_of_executed_units; -fork runs print "#N: ... DONE"-style lines.
    execs=$(grep -m1 'stat::number_of_executed_units' "$OUT/logs/$t-run.log" | awk '{print $2}' || true)
    [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$OUT/logs/$t-run.log" | tail -1 | tr -d '#' || true)
    if [ "$rc" = 0 ]; then
        echo "$t: ok, ${execs:-?} executions in ${SECONDS_EACH}s"
    else
        echo "$t: FAILED (exit $rc) after ${execs:-?} executions; log $OUT/logs/$t-run.log"
        grep -E '^==[0-9]+==ERROR|Fatal error|failure|precondition|SUMMARY|Test unit written|^    #[4-8] ' "$OUT/logs/$t-run.log" \
            | head -12 | sed 's/^/    /' || true
    fi
    return "$rc"
}

status=0
running=0
for t in $TARGETS; do
    ( run "$t" ) & 
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then wait -n || status=1; running=$((running - 1)); fi
done
while [ "$running" -gt 0 ]; do wait -n || status=1; running=$((running - 1)); done
exit "$status"
