#!/usr/bin/env bash
# pgpair.sh - a throwaway PostgreSQL primary and its streaming standby, for failover tests.
#
#   tests/pgpair.sh start DIR MODE [PID]
#                                      initdb DIR/p, start it, pg_basebackup -R into DIR/s,
#                                      start that as a streaming standby, wait until it
#                                      streams (MODE sync: synchronous_standby_names = '*',
#                                      else async). With PID, a watchdog destroys the pair
#                                      once that process is gone (a test killed on a
#                                      timeout runs no clean-up of its own)
#   tests/pgpair.sh ctl DIR NODE ARGS  pg_ctl -D DIR/NODE ARGS (NODE: p or s), as the
#                                      server's owner: e.g. "ctl DIR p stop -m immediate"
#   tests/pgpair.sh destroy DIR        stop both servers at once (-m immediate), remove DIR
#
# Each server listens on a unix socket in its own directory (DIR/p, DIR/s; no TCP) with
# trust authentication, so a multi-host URL names them as host=DIR/p,DIR/s. As root the
# servers run as the `postgres` user, like tests/with-postgres.sh. DIR must be short (the
# socket path is limited to ~107 bytes) and is created by start.
set -euo pipefail

die() {
    echo "pgpair.sh: $*" >&2
    exit 1
}

bindir() {
    if [ -n "${RUNNER_TEST_PGCTL:-}" ]; then
        dirname "$RUNNER_TEST_PGCTL"
        return
    fi
    local d
    for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k4,4 -rV); do
        [ -x "$d/pg_ctl" ] && { echo "$d"; return; }
    done
    die "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin"
}

BIN=$(bindir)
RUNAS=""
[ "$(id -u)" -eq 0 ] && RUNAS=postgres

as_pg() {
    if [ -n "$RUNAS" ]; then
        runuser -u "$RUNAS" -- "$@"
    else
        "$@"
    fi
}

node_conf() { # node_conf DIR NODE: the settings of one node, appended to postgresql.conf
    cat <<EOF

# pgpair.sh
listen_addresses = ''
unix_socket_directories = '$1/$2'
port = 5432
max_connections = 100
fsync = off
full_page_writes = on
wal_level = replica
max_wal_senders = 5
wal_keep_size = 64MB
hot_standby = on
log_min_messages = warning
log_line_prefix = '%m [%p] $2 '
EOF
}

start() {
    local dir=$1 mode=${2:-async} watch=${3:-}
    mkdir -p "$dir/p" "$dir/s"
    [ -n "$RUNAS" ] && chown "$RUNAS" "$dir" "$dir/p" "$dir/s"
    chmod 0755 "$dir"
    as_pg "$BIN/initdb" -D "$dir/p/data" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    node_conf "$dir" p | as_pg tee -a "$dir/p/data/postgresql.conf" >/dev/null
    if [ "$mode" = sync ]; then
        printf "synchronous_standby_names = '*'\nsynchronous_commit = on\n" |
            as_pg tee -a "$dir/p/data/postgresql.conf" >/dev/null
    fi
    as_pg "$BIN/pg_ctl" -D "$dir/p/data" -l "$dir/p/server.log" -w -t 60 start >/dev/null ||
        { cat "$dir/p/server.log" >&2; die "could not start the primary"; }
    as_pg "$BIN/pg_basebackup" -h "$dir/p" -p 5432 -U postgres -D "$dir/s/data" -R -X stream \
        -c fast >"$dir/basebackup.log" 2>&1 || { cat "$dir/basebackup.log" >&2; die "pg_basebackup failed"; }
    # the copy carries the primary's settings: the standby's own come last and win
    node_conf "$dir" s | as_pg tee -a "$dir/s/data/postgresql.conf" >/dev/null
    # once promoted it has no standby of its own to wait for (an HA manager such as
    # Patroni clears synchronous_standby_names the same way when the last standby is gone)
    echo "synchronous_standby_names = ''" | as_pg tee -a "$dir/s/data/postgresql.conf" >/dev/null
    echo "primary_conninfo = 'host=$dir/p port=5432 user=postgres application_name=standby'" |
        as_pg tee -a "$dir/s/data/postgresql.auto.conf" >/dev/null
    as_pg "$BIN/pg_ctl" -D "$dir/s/data" -l "$dir/s/server.log" -w -t 60 start >/dev/null ||
        { cat "$dir/s/server.log" >&2; die "could not start the standby"; }
    if [ -n "$watch" ]; then
        # detached from the caller's stdio, so that system() returns at once
        (while kill -0 "$watch" 2>/dev/null; do sleep 1; done; destroy "$dir") \
            </dev/null >/dev/null 2>&1 &
    fi
    local i
    for i in $(seq 1 200); do
        if [ "$(as_pg "$BIN/psql" -h "$dir/p" -p 5432 -U postgres -d postgres -XAtc \
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'" 2>/dev/null)" = 1 ]; then
            return 0
        fi
        sleep 0.05
    done
    die "the standby did not start streaming within 10 s"
}

ctl() {
    local dir=$1 node=$2
    shift 2
    as_pg "$BIN/pg_ctl" -D "$dir/$node/data" -l "$dir/$node/server.log" "$@" >/dev/null
}

destroy() {
    local dir=$1 node
    [ -d "$dir" ] || return 0
    for node in p s; do
        if [ -f "$dir/$node/data/postmaster.pid" ]; then
            # a frozen server must be thawed before it can stop
            local pid
            pid=$(head -n 1 "$dir/$node/data/postmaster.pid")
            kill -CONT "$pid" 2>/dev/null || true
            local stat
            for stat in /proc/[0-9]*/stat; do
                # field 4 is the parent pid (the command name in field 2 has no spaces here)
                read -r child _ _ ppid _ <"$stat" 2>/dev/null || continue
                [ "$ppid" = "$pid" ] && kill -CONT "$child" 2>/dev/null
            done
            as_pg "$BIN/pg_ctl" -D "$dir/$node/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
        fi
    done
    rm -rf "$dir"
}

[ $# -ge 2 ] || die "usage: $0 start DIR [sync] | ctl DIR NODE ARGS... | destroy DIR"
cmd=$1
shift
case "$cmd" in
start) start "$@" ;;
ctl) ctl "$@" ;;
destroy) destroy "$@" ;;
*) die "unrecognized command \"$cmd\"" ;;
esac
