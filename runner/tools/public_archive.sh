#!/bin/sh
# public_archive.sh - build-time tool: turns the internal archive into the installed
# librunner.a, whose only global symbols are the public runner_* API.
# usage: public_archive.sh OUTPUT.a INPUT.a OBJCOPY AR CC [CC ARGS...]
#
# The library is compiled with -fvisibility=hidden and include/runner.h marks the public
# functions RUNNER_API (default visibility). Hidden visibility only matters to the dynamic
# linker, though: in a plain archive every hidden function is still a global symbol that
# clashes with an embedding program's own log_event or xmalloc. So all objects become one
# relocatable object (the references between them are resolved there, once), and then
# every hidden symbol is made local: what remains global is exactly what runner.h exports.
set -eu

if [ $# -lt 5 ]; then
    echo "usage: public_archive.sh OUTPUT.a INPUT.a OBJCOPY AR CC [CC ARGS...]" >&2
    exit 2
fi
out=$1 in=$2 objcopy=$3 ar=$4
shift 4

tmp="$out.d"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT

# -r: a partial link (no start files, no libraries); -fno-lto: use the fat objects' code
# if the build uses LTO, so that the result is an ordinary object file.
"$@" -r -nostdlib -fno-lto -o "$tmp/runner.o" \
    -Wl,--whole-archive "$in" -Wl,--no-whole-archive
"$objcopy" --localize-hidden "$tmp/runner.o"
rm -f "$out"
"$ar" rcs "$out" "$tmp/runner.o"
