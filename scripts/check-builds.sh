#!/usr/bin/env bash
# check-builds.sh - the configurations packagers build, each warning-free under -Werror.
#
#   scripts/check-builds.sh [NAME...]     (default: all of them)
#
# The project's default_options do not set werror, so that a distribution's compiler and
# flags cannot fail its build on a new warning; this script is what keeps those builds
# free of warnings instead. Each configuration is set up once in build-NAME/ with
# -Dwerror=true, built, and then installed and checked by scripts/check-install.sh (only
# runner_* exported, embed.c builds with pkg-config):
#   release        gcc, --buildtype=release (-O3), with the tests
#   release-clang  clang, --buildtype=release
#   hardened       gcc, --buildtype=plain with Debian's flags: dpkg-buildflags under
#                  DEB_BUILD_MAINT_OPTIONS=hardening=+all (-O2 -g -D_FORTIFY_SOURCE=2
#                  -fstack-protector-strong -Wformat -Werror=format-security, -z relro -z now),
#                  with the tests
#   hardened-lto   the same with optimize=+lto (-flto=auto -ffat-lto-objects), as Ubuntu
#                  builds its packages
# release-clang and hardened-lto leave the tests out: the test code is the same, and linking
# every test under LTO would be the slowest part of the script.
# A configuration's flags are read when its directory is set up: remove build-NAME/ after
# changing them. Exits 1 when a configuration does not build or fails the install check.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

die() {
    echo "check-builds.sh: $*" >&2
    exit 1
}

note() {
    echo "check-builds.sh: $*" >&2
}

all=(release release-clang hardened hardened-lto)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${all[@]}")

for tool in meson ninja gcc clang dpkg-buildflags; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool not found (apt-get install meson ninja-build gcc clang dpkg-dev)"
done

# setup NAME: meson setup build-NAME/ for that configuration.
setup() {
    local dir=build-$1 maint=
    local opts=(-Dwerror=true)
    case $1 in
    release) opts+=(--buildtype=release) ;;
    release-clang) opts+=(--buildtype=release -Dtests=false) ;;
    hardened) maint=hardening=+all ;;
    hardened-lto)
        maint="hardening=+all optimize=+lto"
        opts+=(-Dtests=false)
        ;;
    *) die "unknown configuration \"$1\" (one of: ${all[*]})" ;;
    esac
    if [ -n "$maint" ]; then
        # dpkg-buildflags also reads DEB_CFLAGS_APPEND and friends from the environment
        opts+=(--buildtype=plain)
        CC=gcc CFLAGS=$(DEB_BUILD_MAINT_OPTIONS=$maint dpkg-buildflags --get CFLAGS) \
            CPPFLAGS=$(DEB_BUILD_MAINT_OPTIONS=$maint dpkg-buildflags --get CPPFLAGS) \
            LDFLAGS=$(DEB_BUILD_MAINT_OPTIONS=$maint dpkg-buildflags --get LDFLAGS) \
            meson setup "$dir" "${opts[@]}" >/dev/null
    elif [ "$1" = release-clang ]; then
        CC=clang meson setup "$dir" "${opts[@]}" >/dev/null
    else
        CC=gcc meson setup "$dir" "${opts[@]}" >/dev/null
    fi
}

for name in "${names[@]}"; do
    dir=build-$name
    if [ ! -f "$dir/build.ninja" ]; then
        rm -rf "$dir"
        setup "$name"
    fi
    note "building $dir/ with -Werror"
    if ! ninja -C "$dir" >"$dir/check-builds.log" 2>&1; then
        grep -E 'warning:|error:|FAILED:' "$dir/check-builds.log" >&2 ||
            tail -n 30 "$dir/check-builds.log" >&2
        die "the $name configuration does not build warning-free (full log: $dir/check-builds.log)"
    fi
    scripts/check-install.sh "$dir"
done
note "all warning-free and installable: ${names[*]}"
