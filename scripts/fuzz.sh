#!/usr/bin/env bash
# fuzz.sh - build the libFuzzer targets with clang and run each for a bounded time.
#
#   scripts/fuzz.sh [TARGET...]        TARGET: config, cron (default: both)
#
# Environment:
#   FUZZ_SECONDS   seconds per target (default 60)
#   FUZZ_BUILD     build directory (default build-fuzz)
#   FUZZ_WORK      where generated corpora and crash artifacts go (default $FUZZ_BUILD/fuzz)
#
# The checked-in seeds (tests/fuzz/corpus/<target>) and earlier crashes
# (tests/fuzz/regress/<target>) are read, never written: new interesting inputs go to
# $FUZZ_WORK/corpus/<target>, crashes to $FUZZ_WORK/artifacts/<target>/. A crash makes
# the script exit 1; minimize it with
#   $FUZZ_BUILD/tests/fuzz/fuzz_<target> -minimize_crash=1 -runs=10000 CRASH_FILE
# and add it to tests/fuzz/regress/<target>/ so tests/test_fuzz_regress.c replays it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

seconds=${FUZZ_SECONDS:-60}
build=${FUZZ_BUILD:-build-fuzz}
work=${FUZZ_WORK:-$build/fuzz}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config cron)

die() {
    echo "fuzz.sh: $*" >&2
    exit 2
}

command -v clang >/dev/null 2>&1 || die "clang not found (apt-get install clang)"
[[ "$seconds" =~ ^[0-9]+$ ]] || die "FUZZ_SECONDS must be a number of seconds"

# Per target: the longest input worth trying and the dictionary.
max_len() {
    case $1 in
    config) echo 4096 ;;
    cron) echo 128 ;;
    *) die "unknown target \"$1\" (config, cron)" ;;
    esac
}

if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" -Dwerror=true -Dfuzz=true -Dtests=false >/dev/null
else
    meson configure "$build" -Dfuzz=true >/dev/null
fi
fuzzers=()
for t in "${targets[@]}"; do
    max_len "$t" >/dev/null
    fuzzers+=("tests/fuzz/fuzz_$t")
done
ninja -C "$build" "${fuzzers[@]}" >/dev/null

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=0
summary=()
for t in "${targets[@]}"; do
    corpus="$work/corpus/$t"
    artifacts="$work/artifacts/$t"
    log="$work/$t.log"
    mkdir -p "$corpus" "$artifacts"
    rm -f "$artifacts"/crash-* "$artifacts"/leak-* "$artifacts"/timeout-* "$artifacts"/oom-*
    seeds=(tests/fuzz/corpus/"$t")
    [ -d tests/fuzz/regress/"$t" ] && seeds+=(tests/fuzz/regress/"$t")

    echo "fuzz.sh: fuzzing $t for ${seconds}s (log: $log)"
    rc=0
    start=$SECONDS
    "$build/tests/fuzz/fuzz_$t" \
        -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 \
        -dict="tests/fuzz/$t.dict" -artifact_prefix="$artifacts/" \
        "$corpus" "${seeds[@]}" >"$log" 2>&1 || rc=$?

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
    crashes=$(find "$artifacts" -type f | wc -l)
    if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
        failed=1
        echo "fuzz.sh: $t FAILED (exit $rc); the report:" >&2
        grep -E -A40 '==ERROR|runtime error|fuzz_(config|cron):|deadly signal|Test unit written' "$log" \
            | head -80 >&2 || tail -40 "$log" >&2
        find "$artifacts" -type f -printf '  %p\n' >&2
    fi
    line="$t: ${execs:-?} execs in $((SECONDS - start))s, cov ${cov:-?}, ft ${ft:-?}"
    line+=", corpus $(find "$corpus" -type f | wc -l), crashes $crashes"
    [ "$rc" -eq 0 ] || line+=", exit $rc"
    summary+=("$line")
done

for s in "${summary[@]}"; do
    echo "fuzz: $s"
done
if [ "$failed" -ne 0 ]; then
    echo "fuzz: FAILED"
    exit 1
fi
echo "fuzz: ok"
