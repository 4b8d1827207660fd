#!/bin/sh
# public_archive.sh - build-time tool: turns the internal archive into the installed
# librunner.a, whose only global symbols are the public runner_* API.
# usage: public_archive.sh OUTPUT.a INPUT.a OBJCOPY AR NM CC [CC ARGS...]
#
# The library is compiled with -fvisibility=hidden and include/runner.h marks the public
# functions RUNNER_API (default visibility). Hidden visibility only matters to the dynamic
# linker, though: in a plain archive every hidden function is still a global symbol that
# clashes with an embedding program's own log_event or xmalloc. So all objects become one
# relocatable object (the references between them are resolved there, once), and then
# every hidden symbol is made local: what remains global is exactly what runner.h exports.
set -eu

if [ $# -lt 6 ]; then
    echo "usage: public_archive.sh OUTPUT.a INPUT.a OBJCOPY AR NM CC [CC ARGS...]" >&2
    exit 2
fi
out=$1 in=$2 objcopy=$3 ar=$4 nm=$5
shift 5

tmp="$out.d"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT

# -r: a partial link (no start files, no libraries). Under LTO (Debian's optimize=+lto
# builds fat objects) -fno-lto links their machine code, and the copied LTO sections go:
# a consumer's LTO link would read the symbols there, in which nothing is hidden.
"$@" -r -nostdlib -fno-lto -o "$tmp/runner.o" \
    -Wl,--whole-archive "$in" -Wl,--no-whole-archive
"$objcopy" --localize-hidden -R '.gnu.lto_*' -R '.gnu.debuglto_*' -N __gnu_lto_slim \
    -N __gnu_lto_v1 "$tmp/runner.o"
# Slim LTO objects (clang's -flto, gcc's without -ffat-lto-objects) hold no machine code:
# say so rather than install an archive that defines nothing.
if ! "$nm" -g --defined-only "$tmp/runner.o" | grep -q ' T runner_run$'; then
    echo "public_archive.sh: $in has no machine code for runner_run (slim LTO objects?" \
        "use -ffat-lto-objects)" >&2
    exit 1
fi
rm -f "$out"
"$ar" rcs "$out" "$tmp/runner.o"
