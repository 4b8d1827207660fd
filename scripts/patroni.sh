#!/usr/bin/env bash
# patroni.sh - the runner on a Patroni cluster: a planned switchover and a killed leader.
#
#   scripts/patroni.sh            build/runner against a throwaway cluster, then remove it
#
# Sets up, on loopback only, a single-member etcd and two PostgreSQL members managed by
# Patroni (Debian packages patroni and etcd-server; as root the members run as the
# `postgres` user), runs two runner instances on the multi-host URL
# postgresql://127.0.0.1:P1,127.0.0.1:P2/postgres?target_session_attrs=read-write while a
# stream of sql jobs (each inserting one row keyed by its job id) is enqueued, then
#   1. `patronictl switchover` (planned): the leader hands over to the replica;
#   2. SIGKILL of the new leader's Patroni and PostgreSQL (unplanned): the replica takes
#      over once the leader key expires (ttl 10 s).
# Checks that every job completed, each sql effect happened exactly once and both runners
# are still alive, and prints the time from each leader change to the first job claimed
# on the new leader. Everything it started is stopped and its directory removed on exit.
# Takes about a minute. RUNNER_BIN overrides build/runner.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNNER_BIN=${RUNNER_BIN:-$root/build/runner}
N_BEFORE=200 # jobs enqueued before the switchover; as many again after each change

die() {
    echo "patroni.sh: $*" >&2
    exit 1
}
note() { echo "patroni.sh: $*" >&2; }

for c in patroni patronictl etcd psql python3; do
    command -v "$c" >/dev/null 2>&1 || die "$c not found (Debian: apt-get install patroni etcd-server postgresql)"
done
[ -x "$RUNNER_BIN" ] || die "$RUNNER_BIN not built (meson setup build && ninja -C build)"
bindir=
for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k4,4 -rV); do
    [ -x "$d/initdb" ] && { bindir=$d; break; }
done
[ -n "$bindir" ] || die "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin"

runas=()
[ "$(id -u)" -eq 0 ] && runas=(runuser -u postgres --)

dir=$(mktemp -d "${TMPDIR:-/tmp}/rpat.XXXXXX")
chmod 0755 "$dir"
pids=()

# member_pids NAME prints the pids of member NAME's Patroni (and of runuser, which
# starts it as root): killing runuser alone would leave Patroni running.
member_pids() {
    local p cmd
    for p in /proc/[0-9]*; do
        cmd=$( (tr '\0' ' ' <"$p/cmdline") 2>/dev/null) || continue
        case $cmd in *"patroni $dir/$1.yml"*) echo "${p#/proc/}" ;; esac
    done
}

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local p m
    for p in "${pids[@]}" $(member_pids pg1) $(member_pids pg2); do kill -TERM "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${pids[@]}" $(member_pids pg1) $(member_pids pg2); do kill -KILL "$p" 2>/dev/null || true; done
    # members' postmasters outlive a killed Patroni: stop them by their pid files
    for m in pg1 pg2; do
        if [ -f "$dir/$m/postmaster.pid" ]; then
            kill -KILL "$(head -n 1 "$dir/$m/postmaster.pid")" 2>/dev/null || true
        fi
    done
    wait 2>/dev/null || true
    if [ "$status" -ne 0 ]; then
        for f in "$dir"/*.log; do
            [ -f "$f" ] && { echo "--- $f (last 20 lines)" >&2; tail -n 20 "$f" >&2; }
        done
    fi
    rm -rf "$dir"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# six free loopback ports: etcd client and peer, two REST APIs, two PostgreSQL members
read -r EC EP R1 R2 P1 P2 < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)

etcd --name e1 --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$EC" --advertise-client-urls "http://127.0.0.1:$EC" \
    --listen-peer-urls "http://127.0.0.1:$EP" --initial-advertise-peer-urls "http://127.0.0.1:$EP" \
    --initial-cluster "e1=http://127.0.0.1:$EP" >"$dir/etcd.log" 2>&1 &
pids+=($!)

member_config() { # member_config NAME REST_PORT PG_PORT
    cat <<EOF
scope: runner-test
name: $1
restapi:
  listen: 127.0.0.1:$2
  connect_address: 127.0.0.1:$2
etcd3:
  hosts: 127.0.0.1:$EC
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 5
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 5
        max_replication_slots: 5
        max_connections: 100
        fsync: "off"
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
  pg_hba:
    - local all all trust
    - local replication all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:$3
  connect_address: 127.0.0.1:$3
  data_dir: $dir/$1
  bin_dir: $bindir
  pgpass: $dir/$1.pgpass
  authentication:
    superuser:
      username: postgres
    replication:
      username: postgres
    rewind:
      username: postgres
  parameters:
    unix_socket_directories: $dir
tags:
  nofailover: false
EOF
}

member_config pg1 "$R1" "$P1" >"$dir/pg1.yml"
member_config pg2 "$R2" "$P2" >"$dir/pg2.yml"
[ ${#runas[@]} -gt 0 ] && chown postgres "$dir" "$dir"/*.yml

for i in $(seq 1 100); do
    etcdctl_ok=$(python3 -c "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:$EC/health',timeout=1).read().decode())" 2>/dev/null || true)
    case $etcdctl_ok in *true*) break ;; esac
    sleep 0.1
done
case ${etcdctl_ok:-} in *true*) ;; *) die "etcd did not become healthy" ;; esac

"${runas[@]}" patroni "$dir/pg1.yml" >"$dir/pg1.log" 2>&1 &
pids+=($!)

patronictl_() { "${runas[@]}" patronictl -c "$dir/pg1.yml" "$@"; }

# leader prints the member that holds the leader key ("" while there is none)
leader() {
    patronictl_ list -f json 2>/dev/null | python3 -c '
import json, sys
for m in json.load(sys.stdin):
    if m.get("Role") == "Leader" and m.get("State") == "running":
        print(m["Member"])' 2>/dev/null || true
}

wait_for() { # wait_for SECONDS WHAT COMMAND...
    local secs=$1 what=$2 i
    shift 2
    for i in $(seq 1 $((secs * 10))); do
        "$@" && return 0
        sleep 0.1
    done
    die "timed out after $secs s: $what"
}

pg1_leads() { [ "$(leader)" = pg1 ]; }
wait_for 90 "pg1 leads" pg1_leads
"${runas[@]}" patroni "$dir/pg2.yml" >"$dir/pg2.log" 2>&1 &
pids+=($!)
streaming() {
    [ "$(psql "host=127.0.0.1 port=$P1 user=postgres dbname=postgres" -XAtc \
        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'" 2>/dev/null)" = 1 ]
}
wait_for 60 "pg2 streams from pg1" streaming

url="postgresql://127.0.0.1:$P1,127.0.0.1:$P2/postgres?user=postgres&target_session_attrs=read-write"
q() { psql "$url" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }

"$RUNNER_BIN" --database-url "$url" migrate >"$dir/migrate.log" 2>&1 || { cat "$dir/migrate.log" >&2; die "runner migrate failed"; }
q "CREATE TABLE public.effects (job_id bigint NOT NULL)"
cat >"$dir/runner.yaml" <<'EOF'
worker:
  concurrency: 4
  poll_interval: 60s
  lease: 6s
  heartbeat: 1s
shutdown:
  grace: 5s
  kill_after: 1s
kinds:
  effect:
    sql: "INSERT INTO public.effects (job_id) SELECT $2 FROM pg_sleep(0.05 + 0 * length($1::text))"
EOF
for r in a b; do
    "$RUNNER_BIN" --config "$dir/runner.yaml" --database-url "$url" run >"$dir/runner-$r.log" 2>&1 &
    pids+=($!)
    eval "runner_$r=$!"
done
registered() { [ "$(q "SELECT count(*) FROM runner.instances WHERE state = 'running'" 2>/dev/null)" = 2 ]; }
wait_for 20 "both runners registered" registered

enqueue() { # enqueue N: one statement, retried until a primary acknowledges it
    local i
    for i in $(seq 1 200); do
        q "SELECT count(runner.enqueue('effect')) FROM generate_series(1, $1)" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "could not enqueue for 20 s"
}

# first_claim_after TS: ms from TS to the first job claimed after it ("" while none)
first_claim_after() {
    q "SELECT (extract(epoch FROM min(started_at) - '$1'::timestamptz) * 1000)::bigint
         FROM runner.jobs WHERE started_at > '$1'::timestamptz" 2>/dev/null
}

# change LABEL COMMAND...: run the leader change, enqueue more jobs, measure
change() {
    local label=$1 old new ts ms
    shift
    old=$(leader)
    "$@"
    for _ in $(seq 1 600); do
        new=$(leader)
        [ -n "$new" ] && [ "$new" != "$old" ] && break
        sleep 0.1
    done
    [ -n "$new" ] && [ "$new" != "$old" ] || die "no new leader after the $label"
    ts=$(q "SELECT now()")
    enqueue "$N_BEFORE"
    for _ in $(seq 1 300); do
        ms=$(first_claim_after "$ts")
        [ -n "$ms" ] && break
        sleep 0.1
    done
    [ -n "$ms" ] || die "no job claimed on the new leader $new within 30 s of the $label"
    note "$label: $old -> $new; first job claimed on the new leader ${ms} ms after it led"
}

enqueue "$N_BEFORE"
wait_for 30 "the first jobs done" sh -c "[ \"\$(psql '$url' -XAtc \"SELECT count(*) >= 20 FROM runner.jobs WHERE state = 'completed'\")\" = t ]"

change switchover patronictl_ switchover --leader pg1 --candidate pg2 --force >/dev/null

kill_leader() {
    local l p
    l=$(leader)
    for p in $(member_pids "$l"); do kill -KILL "$p"; done
    kill -KILL "$(head -n 1 "$dir/$l/postmaster.pid")"
}
change "killed leader" kill_leader

all_done() { [ "$(q "SELECT count(*) FROM runner.jobs WHERE state <> 'completed'" 2>/dev/null)" = 0 ]; }
wait_for 60 "every job completed" all_done
jobs=$(q "SELECT count(*) FROM runner.jobs")
effects=$(q "SELECT count(*) FROM public.effects")
distinct=$(q "SELECT count(DISTINCT job_id) FROM public.effects")
note "$jobs jobs in the table (of $((3 * N_BEFORE)) enqueued), $effects effects of $distinct jobs"
[ "$effects" = "$distinct" ] || die "$((effects - distinct)) sql effects happened twice"
[ "$distinct" = "$jobs" ] || die "$((jobs - distinct)) completed jobs have no effect"
for r in "$runner_a" "$runner_b"; do
    kill -0 "$r" 2>/dev/null || die "a runner exited during the leader changes"
done
grep -q "database connection restored" "$dir/runner-a.log" || die "runner a did not log its reconnection"
kill -TERM "$runner_a" "$runner_b"
wait "$runner_a" || die "runner a exited with status $?"
wait "$runner_b" || die "runner b exited with status $?"
note "ok"
