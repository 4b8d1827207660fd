#!/usr/bin/env bash
# check-install.sh - the installed library as a packager ships it and an embedder uses it.
#
#   scripts/check-install.sh [BUILDDIR]     (default build/, built first if needed)
#
# Runs `meson install --destdir` of BUILDDIR into a temporary directory, then checks:
#   1. librunner.a and librunner.so define as global symbols exactly the functions that
#      include/runner.h declares (nm), each declared RUNNER_API; offenders are listed;
#   2. the installed runner.h compiles alone with -std=c11 -Wpedantic -Werror;
#   3. examples/embed.c builds out of tree with `pkg-config --cflags --libs runner`, once
#      against librunner.so and once against librunner.a (with the requirements and
#      Libs.private that runner.pc lists), each also next to an object that defines every internal name of the library (log_event,
#      xmalloc, config_init, ...) as an embedding program might, and each program starts:
#      without a database URL it reads its configuration through the library and exits 2
#      saying "no database URL".
# The .pc file is read from the destdir with its prefix pointed there. CC picks the
# compiler (default cc); CHECK_INSTALL_KEEP=1 keeps the temporary directory. Exits 1 on
# any finding.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

die() {
    echo "check-install.sh: $*" >&2
    exit 1
}

note() {
    echo "check-install.sh: $*" >&2
}

build=${1:-build}
cc=${CC:-cc}
for tool in meson ninja nm pkg-config readelf "$cc"; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install meson ninja-build binutils pkg-config gcc)"
done
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" -Dwerror=true >/dev/null
fi
ninja -C "$build" >/dev/null
[ -f "$build/librunner_internal.a" ] || die "$build/librunner_internal.a is missing"

work=$(mktemp -d)
if [ -n "${CHECK_INSTALL_KEEP:-}" ]; then
    note "keeping $work"
else
    trap 'rm -rf "$work"' EXIT
fi
dest="$work/dest"
meson install -C "$build" --destdir "$dest" --quiet >"$work/install.log" 2>&1 ||
    {
        cat "$work/install.log" >&2
        die "meson install failed"
    }

# installed NAME prints the one installed file called NAME (symbolic links followed).
installed() {
    local found
    found=$(find "$dest" -name "$1" \( -type f -o -type l \))
    [ -n "$found" ] || die "$1 was not installed (default_library must be both)"
    [ "$(printf '%s\n' "$found" | wc -l)" -eq 1 ] || die "$1 was installed twice: $found"
    readlink -f "$found"
}
lib_a=$(installed librunner.a)
lib_so=$(installed librunner.so)
header=$(installed runner.h)
pc=$(installed runner.pc)

failed=0
fail() {
    echo "check-install.sh: FAIL: $*" >&2
    failed=1
}

# 1. Exported symbols: exactly the functions the installed header declares, each of them
# RUNNER_API (a declaration without it would be hidden).
grep -E '^[A-Za-z_][^(]*[ *]runner_[a-z0-9_]+\(' "$header" | grep -v '^typedef' \
    >"$work/declarations" || die "no function declarations found in $header"
sed 's/^[^(]*[ *]\(runner_[a-z0-9_]*\)(.*/\1/' "$work/declarations" | sort -u >"$work/api"
while read -r line; do
    fail "runner.h declares without RUNNER_API: $line"
done < <(grep -v '^RUNNER_API ' "$work/declarations")
# check_exports LIB NM-FLAGS... compares the global symbols LIB defines with the API.
check_exports() {
    local lib=$1 name
    shift
    nm "$@" --defined-only "$lib" | awk 'NF == 3 { sub(/@.*/, "", $3); print $3 }' |
        sort -u >"$work/defined"
    local offenders missing
    offenders=$(comm -23 "$work/defined" "$work/api")
    missing=$(comm -13 "$work/defined" "$work/api")
    if [ -n "$offenders" ]; then
        fail "${lib#"$dest"} defines global symbols that include/runner.h does not export:"
        for name in $offenders; do
            echo "    $name" >&2
        done
    fi
    if [ -n "$missing" ]; then
        fail "${lib#"$dest"} lacks functions that runner.h declares: $(tr "\n" " " <<<"$missing")"
    fi
    if [ -z "$offenders$missing" ]; then
        note "${lib#"$dest"}: $(wc -l <"$work/api") global symbols, exactly the functions of runner.h"
    fi
}
check_exports "$lib_a" -g
check_exports "$lib_so" -D

# 2. The header on its own, as strict as a consumer may compile.
inc=$(dirname "$header")
printf '#include <runner.h>\nint main(void) { return runner_strerror(RUNNER_OK)[0] == 0; }\n' \
    >"$work/header.c"
# the prefix in the .pc is where the package will live; the files are in the destdir
prefix=$(sed -n 's/^prefix=//p' "$pc")
mkdir "$work/pkgconfig"
sed "s|^prefix=.*|prefix=$dest$prefix|" "$pc" >"$work/pkgconfig/runner.pc"
export PKG_CONFIG_PATH="$work/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
# shellcheck disable=SC2046 # pkg-config prints words to split
"$cc" -std=c11 -Wall -Wextra -Wpedantic -Werror $(pkg-config --cflags runner) -c \
    -o "$work/header.o" "$work/header.c" || fail "runner.h does not compile alone with -std=c11"
case " $(pkg-config --cflags-only-I runner) " in
*" -I$inc "*) ;;
*) fail "pkg-config --cflags runner does not point at the installed header ($inc)" ;;
esac

# 3. examples/embed.c out of tree, next to a program's own definitions of every internal
# name (the symbols librunner_internal.a defines besides runner_*).
nm -g --defined-only "$build/librunner_internal.a" | awk 'NF == 3 { print $3 }' |
    grep -v '^runner_' | sort -u | sed 's/.*/void &(void) {}/' >"$work/clash.c"
[ -s "$work/clash.c" ] || die "no internal symbols found in $build/librunner_internal.a"
"$cc" -c -o "$work/clash.o" "$work/clash.c"

libdir=$(pkg-config --variable=libdir runner)
[ "$libdir" = "$(dirname "$lib_so")" ] || fail "pkg-config's libdir $libdir is not where librunner.so is"
cflags=$(pkg-config --cflags runner)
shared_libs=$(pkg-config --libs runner)
# The archive, then what runner.pc says it needs: its requirements, public and private
# (libyaml, ...), and its own Libs.private (pthread). The requirements stay shared:
# `pkg-config --static` would also ask for what a static libpq needs (Debian's libpq.pc
# lists libpgcommon.a, which is not on the linker's path), not what librunner.a needs.
requires=$(pkg-config --print-requires runner; pkg-config --print-requires-private runner)
requires=$(awk '{ print $1 }' <<<"$requires" | tr '\n' ' ')
static_libs="-L$libdir -l:librunner.a $(pkg-config --libs "$requires") \
    $(sed -n 's/^Libs.private: *//p' "$work/pkgconfig/runner.pc")"
for dep in libpq yaml-0.1; do
    case " $requires " in
    *" $dep "*) ;;
    *) fail "runner.pc does not require $dep: $requires" ;;
    esac
done

# try VARIANT LIBS... builds embed (and embed with clash.o), checks what it needs at run
# time and starts it.
try() {
    local variant=$1 exe
    shift
    for exe in "embed-$variant" "embed-$variant-clash"; do
        local extra=()
        [ "$exe" = "embed-$variant-clash" ] && extra=("$work/clash.o")
        # shellcheck disable=SC2086 # pkg-config output is words
        if ! "$cc" -Wall -Wextra -Werror -pthread $cflags -o "$work/$exe" examples/embed.c \
            "${extra[@]}" "$@" 2>"$work/$exe.log"; then
            cat "$work/$exe.log" >&2
            fail "$exe: examples/embed.c does not build against the installed $variant library"
            continue
        fi
        local needed
        needed=$(readelf -d "$work/$exe" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
        if [ "$variant" = shared ] && ! grep -qx 'librunner\.so\.[0-9]*' <<<"$needed"; then
            fail "$exe does not load librunner.so: $(tr "\n" " " <<<"$needed")"
        fi
        if [ "$variant" = static ] && grep -q '^librunner' <<<"$needed"; then
            fail "$exe links librunner.a but loads a librunner.so"
        fi
        local rc=0 out
        out=$(env -u RUNNER_DATABASE_URL LD_LIBRARY_PATH="$libdir" timeout 20 "$work/$exe" 2>&1) ||
            rc=$?
        if [ "$rc" -ne 2 ] || [ "$out" != "embed: no database URL" ]; then
            fail "$exe did not start: exit $rc, output: $out"
        else
            note "$exe: built with pkg-config and started"
        fi
    done
}
# shellcheck disable=SC2086
try shared $shared_libs
# shellcheck disable=SC2086
try static $static_libs

if [ "$failed" -ne 0 ]; then
    die "the installed library is not fit to ship (see above)"
fi
note "install of $build: only runner_* exported; embed.c builds and starts, shared and static"
