#!/usr/bin/env bash
# dev.sh - build, run and test runner on a development machine.
#
#   ./dev.sh run [--database-url URL]   install what is missing, build, start a local
#                                       PostgreSQL under .pgdata/ (unless a URL is given),
#                                       migrate, and run runner.yaml in the foreground
#   ./dev.sh test [MESON TEST ARGS...]  install, build, run every test against a
#                                       throwaway PostgreSQL, again under ASan+UBSan,
#                                       check the installed library, build the release
#                                       and hardened configurations, then TSan and
#                                       valgrind over a workload of the binary, lint,
#                                       a Patroni failover (scripts/patroni.sh),
#                                       and fuzz each target for 60 s
#   ./dev.sh psql [PSQL ARGS...]        psql into the local database
#   ./dev.sh url                        print the local database URL (starts the server)
#   ./dev.sh stop                       stop the local PostgreSQL
#
# The database URL for `run` is, in order: --database-url, RUNNER_DATABASE_URL, else the
# local server this script keeps under .pgdata/ (unix socket only, no TCP port). As root
# that server runs as the `postgres` user, since PostgreSQL refuses to run as root.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$root"

PACKAGES=(gcc libc6-dev meson ninja-build pkg-config libpq-dev libyaml-dev libjansson-dev libcriterion-dev postgresql tzdata libmicrohttpd-dev libssl-dev libcrypt-dev scdoc python3)
# `test` also runs valgrind, lints (clang-tidy, cppcheck) and fuzzes (clang with libFuzzer),
# builds the release and hardened configurations (clang, dpkg-buildflags from dpkg-dev),
# checks the metrics tests' output with promtool (prometheus); the unit_file test needs
# systemd-analyze and systemd-sysusers (systemd; no running systemd needed) and /bin/kill
# (procps), which the unit's ExecReload= names; the dashboard is driven in headless Chromium
TEST_PACKAGES=(valgrind clang libclang-rt-14-dev clang-tidy cppcheck dpkg-dev prometheus systemd procps chromium chromium-driver
    python3-selenium openssl)
# ... and runs the failover workload on a Patroni cluster (scripts/patroni.sh)
PATRONI_PACKAGES=(patroni etcd-server)
PGDIR="$root/.pgdata"
PGDATA_DIR="$PGDIR/data"
PGLOG="$PGDIR/server.log"
PGPORT=5432
DBNAME=runner

die() {
    echo "dev.sh: $*" >&2
    exit 1
}

note() {
    echo "dev.sh: $*" >&2
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run: $* (install sudo or run as root)"
    fi
}

# install_deps installs those of the Debian packages PACKAGES and then the arguments that
# are missing (apt-get update only when something is). On systems without dpkg it only
# checks for the build tools.
install_deps() {
    local missing=() p
    if ! command -v dpkg >/dev/null 2>&1; then
        for p in meson ninja pkg-config; do
            command -v "$p" >/dev/null 2>&1 || die "$p not found; install: ${PACKAGES[*]}"
        done
        return
    fi
    for p in "${PACKAGES[@]}" "$@"; do
        if ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
            missing+=("$p")
        fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return
    fi
    note "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
}

# build configures build/ once, then builds incrementally. Warnings are errors here and
# in scripts/, where developers and CI build, but not in the project's defaults: a
# packager's compiler and flags may warn where ours do not (scripts/check-builds.sh keeps
# the common configurations clean).
build() {
    if [ ! -d build ]; then
        meson setup build -Dwerror=true
    elif [ ! -f build/build.ninja ]; then
        meson setup --wipe build -Dwerror=true
    else
        meson configure build -Dwerror=true >/dev/null # a build/ set up by hand
    fi
    ninja -C build
}

# pg_bindir prints where initdb/pg_ctl live: $PG_BINDIR, the highest
# /usr/lib/postgresql/*/bin (Debian keeps them off PATH), pg_config --bindir, PATH.
pg_bindir() {
    local d
    if [ -n "${PG_BINDIR:-}" ]; then
        echo "$PG_BINDIR"
        return
    fi
    for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k4,4 -rV); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
            echo "$d"
            return
        fi
    done
    d=$(pg_config --bindir 2>/dev/null || true)
    if [ -n "$d" ] && [ -x "$d/initdb" ]; then
        echo "$d"
        return
    fi
    if command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return
    fi
    die "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql, or set PG_BINDIR"
}

# as_pg runs a command as the owner of the local server: postgres when we are root.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# urlencode percent-encodes a value for a URL query string.
urlencode() {
    local s=$1 out="" c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
        [A-Za-z0-9/._~-]) out+=$c ;;
        *) out+=$(printf '%%%02X' "'$c") ;;
        esac
    done
    printf '%s' "$out"
}

local_url() {
    printf 'postgresql:///%s?host=%s&port=%s&user=postgres' "$1" "$(urlencode "$PGDIR")" "$PGPORT"
}

pg_running() {
    [ -f "$PGDATA_DIR/PG_VERSION" ] &&
        as_pg "$(pg_bindir)/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1
}

# pg_start initializes .pgdata/ once and starts the server if it is not running.
pg_start() {
    local bindir
    bindir=$(pg_bindir)
    # Unix socket paths are limited to 107 bytes.
    if [ $((${#PGDIR} + 20)) -gt 107 ]; then
        die "the checkout path is too long for a unix socket ($PGDIR/.s.PGSQL.$PGPORT);" \
            "move it or set RUNNER_DATABASE_URL"
    fi
    mkdir -p "$PGDIR"
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || die "no \"postgres\" user to run PostgreSQL as (apt-get install postgresql)"
        chown postgres "$PGDIR"
        if ! runuser -u postgres -- test -x "$PGDIR"; then
            die "user postgres cannot reach $PGDIR: every directory above the checkout" \
                "must be traversable (e.g. chmod o+x on it), or set RUNNER_DATABASE_URL"
        fi
    fi
    chmod 0700 "$PGDIR"
    if [ ! -f "$PGDATA_DIR/PG_VERSION" ]; then
        note "initializing a PostgreSQL cluster in $PGDATA_DIR"
        as_pg "$bindir/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust --encoding=UTF8 \
            --locale=C.UTF-8 >"$PGDIR/initdb.log" 2>&1 ||
            {
                cat "$PGDIR/initdb.log" >&2
                die "initdb failed"
            }
        as_pg tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null <<EOF

# dev.sh: unix socket only, inside the checkout
listen_addresses = ''
unix_socket_directories = '$PGDIR'
port = $PGPORT
max_connections = 200
EOF
    fi
    if ! pg_running; then
        note "starting PostgreSQL (log: $PGLOG)"
        if ! as_pg "$bindir/pg_ctl" -D "$PGDATA_DIR" -l "$PGLOG" -w -t 60 start >/dev/null; then
            tail -n 30 "$PGLOG" >&2 || true
            die "could not start PostgreSQL"
        fi
    fi
    local exists
    exists=$("$bindir/psql" "$(local_url postgres)" -X -tAq -v ON_ERROR_STOP=1 \
        -c "SELECT 1 FROM pg_database WHERE datname = '$DBNAME'")
    if [ "$exists" != 1 ]; then
        "$bindir/psql" "$(local_url postgres)" -X -q -v ON_ERROR_STOP=1 \
            -c "CREATE DATABASE $DBNAME" >/dev/null
        note "created database $DBNAME"
    fi
}

cmd_run() {
    local url="${RUNNER_DATABASE_URL:-}" config=runner.yaml
    while [ $# -gt 0 ]; do
        case $1 in
        --database-url) url=${2:?--database-url needs a value}; shift 2 ;;
        --database-url=*) url=${1#*=}; shift ;;
        --config) config=${2:?--config needs a value}; shift 2 ;;
        --config=*) config=${1#*=}; shift ;;
        *) die "unknown argument to run: $1 (usage: ./dev.sh run [--database-url URL] [--config FILE])" ;;
        esac
    done
    install_deps
    build
    if [ -z "$url" ]; then
        pg_start
        url=$(local_url "$DBNAME")
        note "local PostgreSQL: psql '$url'   (or ./dev.sh psql; ./dev.sh stop stops it)"
    fi
    build/runner --config "$config" --database-url "$url" migrate
    note "running $config against $url (Ctrl+C stops gracefully)"
    exec build/runner --config "$config" --database-url "$url" run
}

# run_sanitizer_tests builds build-san/ with AddressSanitizer (LeakSanitizer included) and
# UndefinedBehaviorSanitizer and runs the same tests again against a fresh server. On by
# default; RUNNER_SANITIZE=0 skips it. Every report is fatal where it happens: ASan/LSan
# abort the process, UBSan halts it. A test process that dies so is a crashed criterion
# test; a runner that dies so is seen by the test that started it (no exit 0, lost
# output). Either way the suite fails.
run_sanitizer_tests() {
    case ${RUNNER_SANITIZE:-1} in
    0)
        note "RUNNER_SANITIZE=0: skipping the sanitizer build (build-san/)"
        return 0
        ;;
    1) ;;
    *) die "RUNNER_SANITIZE must be 0 or 1, not \"$RUNNER_SANITIZE\"" ;;
    esac
    if [ ! -d build-san ]; then
        meson setup build-san -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug \
            -Dwerror=true
    elif [ ! -f build-san/build.ninja ]; then
        meson setup --wipe build-san -Db_sanitize=address,undefined -Db_lundef=false \
            -Dbuildtype=debug -Dwerror=true
    fi
    ninja -C build-san
    note "the same tests again under AddressSanitizer + UndefinedBehaviorSanitizer (build-san/)"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        tests/with-postgres.sh meson test -C build-san --print-errorlogs "$@"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 RUNNER_BIN="$root/build-san/runner" \
        RUNNER_BROWSER_SHOTS="$root/build-san/browser-shots" \
        run_check RUNNER_BROWSER "the browser test under the sanitizers" scripts/browser-test.sh
}

# run_check VAR WHAT COMMAND... runs COMMAND unless the environment variable VAR is 0.
# Used for the checks after the test suites; each fails the test command on a finding.
run_check() {
    local var=$1 what=$2
    shift 2
    case ${!var:-1} in
    0) note "$var=0: skipping $what" ;;
    1) "$@" ;;
    *) die "$var must be 0 or 1, not \"${!var}\"" ;;
    esac
}

# run_fuzz runs each libFuzzer target (scripts/fuzz.sh) for RUNNER_FUZZ_SECONDS (default
# 60; 0 skips). A crash fails the test command; tests/fuzz/README.md says how to turn it
# into a regression input.
run_fuzz() {
    local seconds=${RUNNER_FUZZ_SECONDS:-60}
    [[ "$seconds" =~ ^[0-9]+$ ]] || die "RUNNER_FUZZ_SECONDS must be a number of seconds"
    if [ "$seconds" -eq 0 ]; then
        note "RUNNER_FUZZ_SECONDS=0: skipping the fuzzers"
        return 0
    fi
    FUZZ_SECONDS=$seconds scripts/fuzz.sh
}

cmd_test() {
    local extra=(prometheus) # promtool, for the metrics tests themselves
    local v
    for v in RUNNER_TSAN RUNNER_MEMCHECK RUNNER_LINT RUNNER_FUZZ_SECONDS RUNNER_BUILDS RUNNER_BROWSER; do
        if [ "${!v:-1}" != 0 ]; then
            extra=("${TEST_PACKAGES[@]}")
        fi
    done
    if [ "${RUNNER_PATRONI:-1}" != 0 ]; then
        extra+=("${PATRONI_PACKAGES[@]}")
    fi
    install_deps "${extra[@]}"
    build
    tests/with-postgres.sh meson test -C build --print-errorlogs "$@"
    run_check RUNNER_BROWSER "the dashboard's browser test (scripts/browser-test.sh)" \
        scripts/browser-test.sh
    run_sanitizer_tests "$@"
    run_check RUNNER_INSTALL_CHECK "the install and ABI check of build/ (scripts/check-install.sh)" \
        scripts/check-install.sh build
    run_check RUNNER_BUILDS "the release and hardened builds (scripts/check-builds.sh)" \
        scripts/check-builds.sh
    run_check RUNNER_TSAN "ThreadSanitizer (scripts/tsan.sh)" scripts/tsan.sh
    run_check RUNNER_MEMCHECK "valgrind memcheck (scripts/memcheck.sh)" scripts/memcheck.sh
    run_check RUNNER_LINT "clang-tidy and cppcheck (scripts/lint.sh)" scripts/lint.sh
    run_check RUNNER_PATRONI "the Patroni switchover and failover (scripts/patroni.sh)" scripts/patroni.sh
    run_fuzz
}

cmd_psql() {
    local url="${RUNNER_DATABASE_URL:-}"
    if [ -z "$url" ]; then
        pg_start
        url=$(local_url "$DBNAME")
    fi
    local psql=psql
    command -v psql >/dev/null 2>&1 || psql="$(pg_bindir)/psql"
    exec "$psql" "$url" "$@"
}

cmd_url() {
    if [ -n "${RUNNER_DATABASE_URL:-}" ]; then
        echo "$RUNNER_DATABASE_URL"
        return
    fi
    pg_start
    local_url "$DBNAME"
    echo
}

cmd_stop() {
    if pg_running; then
        as_pg "$(pg_bindir)/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop
    else
        note "local PostgreSQL is not running"
    fi
}

case ${1:-} in
run) shift; cmd_run "$@" ;;
test) shift; cmd_test "$@" ;;
psql) shift; cmd_psql "$@" ;;
url) shift; cmd_url ;;
stop) shift; cmd_stop ;;
*)
    echo "usage: ./dev.sh run [--database-url URL] | test [MESON TEST ARGS] | psql [ARGS] | url | stop" >&2
    exit 2
    ;;
esac
