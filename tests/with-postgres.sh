#!/usr/bin/env bash
# with-postgres.sh - run a command against a throwaway PostgreSQL server.
#
#   tests/with-postgres.sh meson test -C build --print-errorlogs
#
# Starts a private server (initdb into a fresh temporary directory, unix socket in that
# directory only, trust authentication), exports RUNNER_TEST_DATABASE_URL for it, runs
# the command, then stops the server and deletes the directory, whatever happens. The
# exit status is the command's.
#
# When RUNNER_TEST_DATABASE_URL is already set the command simply runs against it.
#
# As root the server runs as the `postgres` user (PostgreSQL refuses to run as root); the
# command itself still runs as the caller and connects over the socket as user postgres.
#
# Exported for tests that need to control the server (e.g. restart it mid-run):
#   RUNNER_TEST_PGCTL    path of pg_ctl
#   RUNNER_TEST_PGDATA   the data directory
#   RUNNER_TEST_PGLOG    the server's log file (pass it to pg_ctl -l on restart)
#   RUNNER_TEST_PGHOST   the socket directory
#   RUNNER_TEST_PGPORT   the port (names the socket file only; no TCP)
#   RUNNER_TEST_PGUSER   the superuser name (postgres)
#   RUNNER_TEST_PGRUNAS  the OS user pg_ctl must run as ("postgres" as root, else empty):
#                        runuser -u "$RUNNER_TEST_PGRUNAS" -- "$RUNNER_TEST_PGCTL" ...
#
# Environment knobs: PG_BINDIR (where initdb/pg_ctl live), RUNNER_TEST_KEEP=1 (keep the
# directory after the run, for post-mortems).
set -euo pipefail

if [ $# -eq 0 ]; then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
fi

if [ -n "${RUNNER_TEST_DATABASE_URL:-}" ]; then
    exec "$@"
fi

die() {
    echo "with-postgres.sh: $*" >&2
    exit 1
}

# find_pg_bindir prints the directory holding initdb and pg_ctl: $PG_BINDIR, the highest
# /usr/lib/postgresql/*/bin (Debian keeps them off PATH), pg_config --bindir, then PATH.
find_pg_bindir() {
    local d
    if [ -n "${PG_BINDIR:-}" ]; then
        [ -x "$PG_BINDIR/initdb" ] || die "PG_BINDIR=$PG_BINDIR has no initdb"
        echo "$PG_BINDIR"
        return
    fi
    for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k4,4 -rV); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
            echo "$d"
            return
        fi
    done
    if command -v pg_config >/dev/null 2>&1; then
        d=$(pg_config --bindir 2>/dev/null || true)
        if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
            echo "$d"
            return
        fi
    fi
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return
    fi
    die "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin," \
        "pg_config --bindir or PATH: install the server (Debian: apt-get install postgresql)," \
        "set PG_BINDIR, or point RUNNER_TEST_DATABASE_URL at an existing database"
}

bindir=$(find_pg_bindir)
runas=""
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 ||
        die "running as root but there is no \"postgres\" user to run the server as" \
            "(PostgreSQL refuses to run as root): install the postgresql package or run as a normal user"
    command -v runuser >/dev/null 2>&1 || die "running as root but runuser is not installed"
    runas=postgres
fi

# as_pg runs a command as the server's owner.
as_pg() {
    if [ -n "$runas" ]; then
        runuser -u "$runas" -- "$@"
    else
        "$@"
    fi
}

# A short path: the socket lives in it and unix socket paths are limited to ~107 bytes.
dir=$(mktemp -d "${TMPDIR:-/tmp}/runner-pg.XXXXXX")
pgdata="$dir/data"
pglog="$dir/server.log"
port=5432
started=0

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    if [ "$started" -eq 1 ]; then
        as_pg "$bindir/pg_ctl" -D "$pgdata" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    fi
    if [ "$status" -ne 0 ] && [ -f "$pglog" ]; then
        echo "with-postgres.sh: exit status $status; last lines of the server log:" >&2
        tail -n 30 "$pglog" >&2 || true
    fi
    if [ "${RUNNER_TEST_KEEP:-}" = 1 ]; then
        echo "with-postgres.sh: kept $dir" >&2
    else
        rm -rf "$dir"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

if [ -n "$runas" ]; then
    chown "$runas" "$dir"
fi
chmod 0755 "$dir"

if ! as_pg "$bindir/initdb" -D "$pgdata" -U postgres --auth=trust --encoding=UTF8 \
    --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    die "initdb failed"
fi

# Settings go into postgresql.conf so that a test's `pg_ctl restart` keeps them.
# fsync=off only skips flushing to disk; commit semantics (synchronous_commit) are the
# defaults the runner meets in production.
as_pg tee -a "$pgdata/postgresql.conf" >/dev/null <<EOF

# with-postgres.sh
listen_addresses = ''
unix_socket_directories = '$dir'
port = $port
max_connections = 200
fsync = off
full_page_writes = off
log_min_messages = warning
log_checkpoints = off
log_line_prefix = '%m [%p] %d '
EOF

if ! as_pg "$bindir/pg_ctl" -D "$pgdata" -l "$pglog" -w -t 60 start >/dev/null; then
    cat "$pglog" >&2 || true
    die "could not start PostgreSQL from $bindir"
fi
started=1

export RUNNER_TEST_DATABASE_URL="postgresql:///postgres?host=$dir&port=$port&user=postgres"
export RUNNER_TEST_PGCTL="$bindir/pg_ctl"
export RUNNER_TEST_PGDATA="$pgdata"
export RUNNER_TEST_PGLOG="$pglog"
export RUNNER_TEST_PGHOST="$dir"
export RUNNER_TEST_PGPORT="$port"
export RUNNER_TEST_PGUSER=postgres
export RUNNER_TEST_PGRUNAS="$runas"

echo "with-postgres.sh: $("$bindir/pg_ctl" --version) at $RUNNER_TEST_DATABASE_URL" >&2

set +e
"$@"
status=$?
set -e
exit "$status"
