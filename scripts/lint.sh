#!/usr/bin/env bash
# lint.sh - clang-tidy (checks in .clang-tidy) and cppcheck over runner/ and include/,
# and scripts/layout.sh (the README's list of sources matches the files' purpose lines).
#
#   scripts/lint.sh [BUILD_DIR]     default: $LINT_BUILD or build-lint
#
# clang-tidy reads the compile commands of a meson build directory, which is set up
# (with clang when it is installed) and built when it does not exist yet. Every finding
# is an error: the script prints them, a summary line, and exits 1 if there were any.
# A finding that is wrong can be silenced on its line with
#   // NOLINT(check-name): why          (clang-tidy)
#   // cppcheck-suppress id             (cppcheck, on the line before)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

build=${1:-${LINT_BUILD:-build-lint}}
jobs=$(nproc 2>/dev/null || echo 2)

die() {
    echo "lint.sh: $*" >&2
    exit 2
}

for tool in clang-tidy cppcheck meson ninja; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install clang-tidy cppcheck)"
done

if [ ! -f "$build/compile_commands.json" ]; then
    if command -v clang >/dev/null 2>&1; then
        CC=clang meson setup "$build" -Dwerror=true -Dtests=false >/dev/null
    else
        meson setup "$build" -Dwerror=true -Dtests=false >/dev/null
    fi
fi
ninja -C "$build" >/dev/null

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# clang-tidy: one process per file, in parallel; headers of runner/ and include/ are
# checked through the files that include them (HeaderFilterRegex in .clang-tidy).
mapfile -t sources < <(find runner -name '*.c' | sort)
tidy_rc=0
# shellcheck disable=SC2016 # the sh -c script expands its own arguments
printf '%s\n' "${sources[@]}" |
    xargs -P "$jobs" -I{} sh -c 'clang-tidy -p "$1" --quiet "$2" \
        >"$3/$(echo "$2" | tr / _).tidy" 2>/dev/null' _ "$build" {} "$out" || tidy_rc=1
cat "$out"/*.tidy >"$out/tidy.txt"
# A header included from several files is reported once per file: keep the first.
tidy_findings=$(grep -E '^[^ ].*:[0-9]+:[0-9]+: (warning|error): ' "$out/tidy.txt" |
    sed -E 's#^[^ :]*/((runner|include)/[^ :]*:)#\1#' | sort -u || true)
tidy_n=$(printf '%s' "$tidy_findings" | grep -c . || true)
if [ "$tidy_n" -gt 0 ]; then
    echo "== clang-tidy"
    cat "$out/tidy.txt"
fi
if [ "$tidy_rc" -ne 0 ] && [ "$tidy_n" -eq 0 ]; then
    cat "$out/tidy.txt"
    die "clang-tidy failed without a finding (see above)"
fi

# cppcheck: the configuration the build uses (-D_GNU_SOURCE, C11, POSIX).
# varFuncNullUB is off: the NULL that ends log_event's key/value list is checked by
# __attribute__((sentinel)), and NULL is ((void *)0) with glibc.
cppcheck_rc=0
cppcheck --enable=warning,portability,performance --error-exitcode=1 --inline-suppr \
    --std=c11 --library=posix -D_GNU_SOURCE -DRUNNER_VERSION='"lint"' \
    -I include -I runner --suppress=missingIncludeSystem --suppress=varFuncNullUB \
    -j "$jobs" -q --template='{file}:{line}:{column}: {severity}: {message} [{id}]' \
    runner include 2>"$out/cppcheck.txt" || cppcheck_rc=$?
cppcheck_n=$(grep -cE '^[^ ]+:[0-9]+:[0-9]+: ' "$out/cppcheck.txt" || true)
if [ -s "$out/cppcheck.txt" ]; then
    echo "== cppcheck"
    cat "$out/cppcheck.txt"
fi
if [ "$cppcheck_rc" -ne 0 ] && [ "$cppcheck_n" -eq 0 ]; then
    die "cppcheck failed without a finding (see above)"
fi

if [ "$tidy_n" -gt 0 ]; then
    echo "== clang-tidy findings"
    echo "$tidy_findings"
fi
layout_rc=0
scripts/layout.sh || layout_rc=1
echo "lint: clang-tidy $tidy_n findings in ${#sources[@]} files, cppcheck $cppcheck_n findings"
[ "$tidy_n" -eq 0 ] && [ "$cppcheck_n" -eq 0 ] && [ "$layout_rc" -eq 0 ]
