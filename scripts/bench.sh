#!/usr/bin/env bash
# bench.sh - runner's benchmark figures against a throwaway PostgreSQL, as one table.
#
#   scripts/bench.sh               BENCH_REPS=5 scripts/bench.sh
#   BENCH_ONLY="throughput latency" scripts/bench.sh    (groups: throughput ceiling latency
#                                                        deploy kill hotfix scale retention;
#                                                        default all)
#   BENCH_ONLY=hotfix BENCH_REPS=1 scripts/bench.sh      (about a minute and a half)
#
# Builds build-bench/ (BENCH_BUILD; the project's default buildtype, tests off, so that it
# never disturbs build/), then runs itself under tests/with-postgres.sh (a private server
# in a temporary directory, unix socket only) with fsync, full_page_writes and
# synchronous_commit turned back ON (commits cost what they cost in production) and
# track_commit_timestamp on. Every figure runs BENCH_REPS times (default 3), each
# repetition in a fresh database, and the table shows min / median / max next to the
# target; a target is judged on the median. Exit status: 0 when every measurement ran
# (missed targets included, unless BENCH_STRICT=1: then 3), 1 when one failed.
# BENCH_KEEP=1 keeps the temporary directory (configurations, runner logs).
#
#   throughput  20,000 jobs inserted in one statement, worked by one instance with the
#               default configuration (concurrency 20; log.level warn unless the row says
#               info): jobs/s = 20,000 / (max(finished_at) - min(started_at)), database
#               clock. Kinds: no-op C handler (tests/bench/noop_runner.c, plain and
#               transactional), sql `SELECT 1`, exec `/bin/true` (the runner binary).
#   ceiling     pgbench, 20 clients, 2 threads, BENCH_PGBENCH_S (10) seconds of one-row
#               UPDATEs on a 1,000-row table; the sql kind as a share of its tps.
#   latency     an idle no-op instance; jobs enqueued one at a time (`SELECT
#               runner.enqueue('noop'), pg_current_xact_id()`: what runner_enqueue runs,
#               plus the transaction id) at 50/s, 10 warm-up + 500 measured. The target
#               figure is the issue's: handler start - created_at, the handler's start
#               read with CLOCK_REALTIME (the server runs on the same host, so its now()
#               reads the same clock) against the inserting transaction's now(). Split
#               at the claim's started_at and at the enqueuing transaction's commit
#               timestamp (track_commit_timestamp, taken before its WAL flush) into the
#               enqueuer's part, the runner's wake-up (flush, NOTIFY, claim start) and
#               the claim itself with the hand-over to a worker. Also the enqueue round
#               trip as the client sees it.
#   deploy      the seed workload: runner A (concurrency 20) and an already running peer B
#               (concurrency 60, so it has free workers: the figure measures the hand-over,
#               not a backlog), exec jobs `sleep 3` enqueued at 20/s for 10 s, then the
#               feeder stops and A gets SIGTERM. Both: shutdown.grace 2s (below the job's
#               3 s, so that some jobs finish in grace and some are released),
#               kill_after 2s, lease 5s, heartbeat 1s. SIGTERM -> exit of A; jobs A
#               completed in grace; jobs released; release -> peer start (started_at of the
#               re-claim minus the "released" entry of the errors history).
#               SIGKILL variant (5 s of feeding): SIGKILL -> rescue (the "rescued" entry of
#               the errors history) against lease + heartbeat.
#   hotfix      the hotfix deploy of issue 12: a worker kind (kinds.hot.worker, a /bin/sh
#               script that sleeps 3 s per job; processes 60, worker.concurrency 60) fed
#               at 20/s by a thread of its own for HOTFIX_PRE_S (10) + HOTFIX_POST_S (8)
#               seconds; after HOTFIX_PRE_S the script is replaced (a new file renamed
#               over it; runner.yaml stays the same: a reload rolls a kind whose script
#               changed on disk), then either SIGHUP (reload), or SIGTERM and a new
#               runner once the old one has exited (restart; shutdown.grace 5s, so the
#               3 s jobs finish). Figures: jobs lost (not completed, or completed without
#               the worker's "done" effect), run twice (two "done" effects), the longest
#               and p99 created_at -> started_at wait of jobs created from 1 s before
#               the signal to 4 s after it against the steady state (from 4 s after the
#               first enqueue to 1 s before the signal), and the time from the signal until every
#               job starts on the new version (the later of the old version's last start
#               and the new one's first). Then the worker kind's no-op throughput: 5,000
#               jobs through examples/workers/worker.sh and worker.py (processes 4)
#               against exec kinds with the same logic (sh -c 'IFS= read -r args';
#               python3 -c 'import json, sys; json.load(sys.stdin)'; 1,000 and 100 jobs),
#               all with worker.concurrency 4, through the real binary and database (4
#               jobs in flight: bound by the durable claim and completion commits, not
#               by the handler); and the handler's cost alone, without the database:
#               tests/bench/workerproc_bench (2,000 jobs, 4 threads, medians of 5
#               alternating rounds), where the 10x target is judged.
#   footprint   the no-op runner's VmHWM (children excluded) after its throughput run, and
#               its utime + stime per 1,000 no-op jobs (/proc/PID/stat). Once more with
#               GNUTLS_NO_IMPLICIT_INIT=1 in its environment, as the README's deploy notes
#               suggest: libpq -> libldap -> gnutls initialises itself (and p11-kit) from a
#               library constructor, about 0.7 MiB of pages libpq never uses.
#               The throughput rows also print the WAL the server wrote per job over the
#               run (the insert, the claim, the completion and whatever else ran), from
#               pg_current_wal_lsn() before the insert and after the last job finished.
#   scale       the sql throughput run again, with BENCH_SCALE_ROWS (100,000; the issue's
#               figure is 400,000) rows the claim must skip loaded (and VACUUM ANALYZEd)
#               first, each figure as a ratio to the empty-table run of the same
#               repetition: due jobs of a kind no handler knows; due jobs of a paused queue
#               the instance works (worker.queues [default, paused]); jobs due tomorrow at a
#               better priority; all three; due jobs spread over 500 other queue names. Then
#               pgbench, BENCH_ENQ_S (5) seconds each, `SELECT runner.enqueue('work')` at
#               1, 4 and 8 clients against a plain INSERT of the same row into a copy of
#               runner.jobs without its triggers (LIKE ... INCLUDING ALL), no runner
#               running. Last, BENCH_HISTORY_ROWS (500,000; the issue's figure is
#               10,000,000) jobs completed within the last hour, rolled up as the
#               instances' prune would (runner.rollup_completed(), when the schema has
#               it): the execution time of `SELECT * FROM runner.queue_summary` (EXPLAIN
#               ANALYZE, best of 3) and the wall time of `runner status`.
#   retention   the sustained-retention run: one instance (sql kind `SELECT 1`, worker
#               defaults, `retention: 1m`) fed BENCH_RETENTION_RATE (2,000) jobs/s for
#               BENCH_RETENTION_S (600) seconds by pgbench (-R, ten enqueues per
#               transaction, 4 clients); every 30 s: jobs completed per second over the
#               last 30 s, the longest created_at -> started_at wait of the jobs started
#               in them, rows in runner.jobs, its dead tuples (pg_stat_user_tables) and
#               its total relation size. Figures: throughput over the run, the longest
#               wait, and, after two minutes of warm-up, the most rows in the second half
#               of the rest against the first half, and the size at the end against the
#               size at half time (flat: about 1.0).
#
# The machine is whatever runs this: the runner, the server and the clients share its
# CPUs, so the figures are for this host only (the header prints CPUs and load).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

REPS=${BENCH_REPS:-3}
ONLY=${BENCH_ONLY:-}
BUILD=${BENCH_BUILD:-build-bench}
JOBS=20000
PGBENCH_S=${BENCH_PGBENCH_S:-10}
LAT_COUNT=500
LAT_RATE=50
LAT_WARMUP=10
DEPLOY_RATE=20
DEPLOY_FEED_S=10
KILL_FEED_S=5
GRACE_S=2
KILL_AFTER_S=2
LEASE_S=5
HEARTBEAT_S=1
HOTFIX_RATE=20
HOTFIX_PRE_S=${HOTFIX_PRE_S:-10}
HOTFIX_POST_S=${HOTFIX_POST_S:-8}
HOTFIX_PROCESSES=${HOTFIX_PROCESSES:-60}
WP_JOBS=5000
WP_EXEC_SH_JOBS=1000
WP_EXEC_PY_JOBS=100
WPB_JOBS=2000
SCALE_ROWS=${BENCH_SCALE_ROWS:-100000}
ENQ_S=${BENCH_ENQ_S:-5}
HISTORY_ROWS=${BENCH_HISTORY_ROWS:-500000}
RET_RATE=${BENCH_RETENTION_RATE:-2000}
RET_S=${BENCH_RETENTION_S:-600}

die() {
    echo "bench.sh: $*" >&2
    exit 1
}

case "$REPS" in
'' | *[!0-9]*) die "BENCH_REPS must be a positive integer" ;;
esac
[ "$REPS" -ge 1 ] || die "BENCH_REPS must be at least 1"
case "$SCALE_ROWS$ENQ_S$HISTORY_ROWS" in
'' | *[!0-9]*) die "BENCH_SCALE_ROWS and BENCH_ENQ_S must be positive integers" ;;
esac

if [ -z "${BENCH_INNER:-}" ]; then
    if [ ! -f "$BUILD/build.ninja" ]; then
        meson setup "$BUILD" -Dwerror=true -Dtests=false >/dev/null
    fi
    ninja -C "$BUILD" >/dev/null
    # always a server of our own: the benchmark changes its settings
    exec env -u RUNNER_TEST_DATABASE_URL BENCH_INNER=1 tests/with-postgres.sh "$0" "$@"
fi

# ---- inside tests/with-postgres.sh ----

BENCH="$root/$BUILD/tests/bench/bench"
NOOP="$root/$BUILD/tests/bench/noop_runner"
WPBENCH="$root/$BUILD/tests/bench/workerproc_bench"
RUNNER="$root/$BUILD/runner"
pgbin=$(dirname "$RUNNER_TEST_PGCTL")
PSQL="$pgbin/psql"
PGBENCH="$pgbin/pgbench"
for f in "$BENCH" "$NOOP" "$WPBENCH" "$RUNNER" "$PSQL" "$PGBENCH"; do
    [ -x "$f" ] || die "$f not found"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/runner-bench.XXXXXX")
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    # the bench programs kill their runners when they die (PR_SET_PDEATHSIG); pgbench
    # and psql run in the foreground
    if [ "${BENCH_KEEP:-}" = 1 ]; then
        echo "bench.sh: kept $tmp" >&2
    else
        rm -rf "$tmp"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

base_url="$RUNNER_TEST_DATABASE_URL"
db_url() {
    echo "postgresql:///$1?host=$RUNNER_TEST_PGHOST&port=$RUNNER_TEST_PGPORT&user=$RUNNER_TEST_PGUSER"
}
sql() {
    "$PSQL" "$base_url" -v ON_ERROR_STOP=1 -qAtX -c "$1"
}

# ---- server settings: durable commits ----
sql "ALTER SYSTEM SET fsync = on" >/dev/null
sql "ALTER SYSTEM SET full_page_writes = on" >/dev/null
sql "ALTER SYSTEM SET synchronous_commit = on" >/dev/null
# commit timestamps let the latency figure tell the enqueuer's commit from the runner's part
sql "ALTER SYSTEM SET track_commit_timestamp = on" >/dev/null
as_pg() {
    if [ -n "$RUNNER_TEST_PGRUNAS" ]; then
        runuser -u "$RUNNER_TEST_PGRUNAS" -- "$@"
    else
        "$@"
    fi
}
as_pg "$RUNNER_TEST_PGCTL" -D "$RUNNER_TEST_PGDATA" -l "$RUNNER_TEST_PGLOG" -w -t 60 restart \
    >/dev/null || die "could not restart the server with the benchmark's settings"
settings=$(sql "SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY name)
                  FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit',
                  'full_page_writes', 'shared_buffers', 'wal_sync_method', 'max_connections',
                  'track_commit_timestamp')")
case "$settings" in
*"fsync=on"*"synchronous_commit=on"*) ;;
*) die "could not turn fsync and synchronous_commit on: $settings" ;;
esac

# ---- configurations ----
cat >"$tmp/kinds.yaml" <<'EOF'
log: {level: warn}
kinds:
  bench_sql:
    sql: "SELECT 1"
  bench_true:
    command: ["/bin/true"]
EOF
cat >"$tmp/scale.yaml" <<'EOF'
log: {level: warn}
worker:
  queues: [default, paused]
kinds:
  bench_sql:
    sql: "SELECT 1"
EOF
cat >"$tmp/noop-info.yaml" <<'EOF'
log: {level: info}
EOF
deploy_config() {
    cat <<EOF
worker:
  concurrency: $1
  lease: ${LEASE_S}s
  heartbeat: ${HEARTBEAT_S}s
shutdown:
  grace: ${GRACE_S}s
  kill_after: ${KILL_AFTER_S}s
log: {level: info}
kinds:
  sleep3:
    command: ["sleep", "3"]
EOF
}
deploy_config 20 >"$tmp/deploy-a.yaml"
deploy_config 60 >"$tmp/deploy-b.yaml"

# the hotfix's worker script, version $1: 3 s per job, "start"/"done" effects
hotfix_worker() {
    cat <<EOF
#!/bin/sh
while IFS= read -r line; do
    case \$line in '{"cancel":'*) continue ;; esac
    id=\${line#'{"id":'}
    id=\${id%%,*}
    echo "start \$id $1" >> "\$HOTFIX_EFFECTS"
    sleep 3
    echo "done \$id $1" >> "\$HOTFIX_EFFECTS"
    printf '{"id":%s,"ok":true}\\n' "\$id"
done
EOF
}
# hotfix_config SCRIPT EXTRA_ARGV
hotfix_config() {
    cat <<EOF
worker:
  concurrency: $HOTFIX_PROCESSES
shutdown:
  grace: 5s
  kill_after: 2s
log: {level: info}
kinds:
  hot:
    worker: ["/bin/sh", "$1"$2]
    processes: $HOTFIX_PROCESSES
EOF
}
if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
cat >"$tmp/workers.yaml" <<EOF
worker:
  concurrency: 4
log: {level: warn}
kinds:
  wp_sh:
    worker: ["/bin/sh", "$root/examples/workers/worker.sh"]
    processes: 4
  wp_py:
    worker: ["$PYTHON", "$root/examples/workers/worker.py"]
    processes: 4
  ex_sh:
    command: ["/bin/sh", "-c", "IFS= read -r args; exit 0"]
  ex_py:
    command: ["$PYTHON", "-c", "import json, sys; json.load(sys.stdin)"]
EOF

# ---- bookkeeping ----
declare -A VALS=()
declare -A FAILED=()
failures=0
dbn=0

# add FIGURE VALUE appends one repetition's value.
add() {
    VALS[$1]="${VALS[$1]:-} $2"
}

# field LINE KEY prints the value of KEY=... in a RESULT line.
field() {
    local kv
    for kv in $1; do
        if [ "${kv%%=*}" = "$2" ]; then
            echo "${kv#*=}"
            return
        fi
    done
    echo "?"
}

# fresh_db creates and migrates a database: DB_NAME, DB_URL.
fresh_db() {
    dbn=$((dbn + 1))
    DB_NAME="bench_$dbn"
    DB_URL=$(db_url "$DB_NAME")
    sql "CREATE DATABASE $DB_NAME" >/dev/null
    "$RUNNER" --database-url "$DB_URL" migrate >"$tmp/migrate.log" 2>&1 ||
        die "migrate failed: $(cat "$tmp/migrate.log")"
}

drop_db() {
    sql "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null
}

# measure NAME LOG CMD... runs one bench program and leaves its RESULT lines in
# $tmp/result, or records a failure (with the end of the logs) and leaves it empty.
measure() {
    local name=$1 log=$2
    shift 2
    : >"$tmp/result"
    if BENCH_LOG="$log" "$@" >"$tmp/out" 2>"$tmp/stderr"; then
        grep '^RESULT ' "$tmp/out" >"$tmp/result" || true
    else
        failures=$((failures + 1))
        FAILED[$name]=1
        {
            echo "bench.sh: $name failed:"
            cat "$tmp/stderr"
            if [ -f "$log" ]; then
                echo "bench.sh: last lines of $log:"
                tail -n 20 "$log"
            fi
        } >&2
    fi
}

progress() {
    printf 'bench.sh: [rep %d/%d] %s\n' "$rep" "$REPS" "$*" >&2
}

# ---- the figures ----

# throughput FIGURE KIND CMD... measures one kind; @URL@ in CMD stands for the database.
throughput() {
    local fig=$1 kind=$2 line url a
    shift 2
    progress "throughput $fig"
    fresh_db
    url=$DB_URL
    [ -z "${PRELOAD:-}" ] || scale_preload "$url" "$PRELOAD"
    local -a cmd=()
    for a in "$@"; do
        if [ "$a" = @URL@ ]; then a=$url; fi
        cmd+=("$a")
    done
    measure "tp_$fig" "$tmp/$fig.log" "$BENCH" throughput "$url" "$kind" "${TP_JOBS:-$JOBS}" 300 \
        -- "${cmd[@]}"
    line=$(cat "$tmp/result")
    drop_db
    [ -n "$line" ] || return 0
    add "tp_$fig" "$(field "$line" jobs_per_s)"
    add "wal_$fig" "$(field "$line" wal_bytes_per_job)"
    if [ "$fig" = noop ]; then
        add hwm "$(mib "$(field "$line" hwm_kib)")"
        add rss_anon "$(mib "$(field "$line" rss_anon_kib)")"
        add rss_file "$(mib "$(field "$line" rss_file_kib)")"
        add cpu "$(field "$line" cpu_ms_per_1000)"
    fi
    if [ "$fig" = noop_lean ]; then
        add hwm_lean "$(mib "$(field "$line" hwm_kib)")"
    fi
}

# scale_preload URL CASE loads the rows a claim must skip (empty, kinds, paused, future,
# all, queues500) and VACUUM ANALYZEs the table, as autovacuum would have by then.
scale_preload() {
    local -a steps=()
    case "$2" in
    empty) ;;
    kinds) steps=(kinds) ;;
    paused) steps=(paused) ;;
    future) steps=(future) ;;
    all) steps=(kinds paused future) ;;
    queues500) steps=(queues500) ;;
    *) die "unknown scale case $2" ;;
    esac
    local step
    for step in "${steps[@]}"; do
        case "$step" in
        kinds) echo "INSERT INTO runner.jobs (kind) SELECT 'foreign' FROM generate_series(1, :n);" ;;
        paused)
            echo "INSERT INTO runner.jobs (kind, queue) SELECT 'bench_sql', 'paused' FROM generate_series(1, :n);"
            echo "SELECT runner.pause_queue('paused');"
            ;;
        future) echo "INSERT INTO runner.jobs (kind, priority, run_at) SELECT 'bench_sql', -1, now() + interval '1 day' FROM generate_series(1, :n);" ;;
        queues500) echo "INSERT INTO runner.jobs (kind, queue) SELECT 'bench_sql', 'q' || (i % 500) FROM generate_series(1, :n) i;" ;;
        esac
    done >"$tmp/preload.sql"
    echo "VACUUM ANALYZE runner.jobs;" >>"$tmp/preload.sql"
    "$PSQL" "$1" -v ON_ERROR_STOP=1 -v n="$SCALE_ROWS" -qAtX -f "$tmp/preload.sql" >/dev/null ||
        die "could not load the rows of scale case $2"
}

# scale runs the sql throughput beside each case's skipped rows.
scale() {
    local c
    for c in empty kinds paused future all queues500; do
        PRELOAD=$c throughput "scale_$c" bench_sql "$RUNNER" --config "$tmp/scale.yaml" \
            --database-url @URL@ run
    done
}

# enqueue_pgbench runs pgbench with runner.enqueue() and with a plain INSERT into a copy
# of the table at 1, 4 and 8 clients.
enqueue_pgbench() {
    progress "enqueue pgbench"
    local name out tps c kind
    fresh_db
    name=$DB_NAME
    "$PSQL" "$DB_URL" -v ON_ERROR_STOP=1 -qAtX \
        -c "CREATE TABLE bench_copy (LIKE runner.jobs INCLUDING ALL)" >/dev/null
    echo "SELECT runner.enqueue('work');" >"$tmp/enqueue.sql"
    echo "INSERT INTO bench_copy (kind) VALUES ('work');" >"$tmp/insert.sql"
    for c in 1 4 8; do
        for kind in enqueue insert; do
            if out=$("$PGBENCH" -n -c "$c" -j "$((c < 2 ? c : 2))" -T "$ENQ_S" -f "$tmp/$kind.sql" \
                -h "$RUNNER_TEST_PGHOST" -p "$RUNNER_TEST_PGPORT" -U "$RUNNER_TEST_PGUSER" "$name" 2>&1); then
                tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | tail -n 1)
                add "${kind}_c$c" "${tps:-?}"
            else
                failures=$((failures + 1))
                FAILED[${kind}_c$c]=1
                echo "bench.sh: pgbench $kind failed: $out" >&2
            fi
        done
    done
    drop_db
}

# retention feeds one instance with retention 1m for RET_S seconds and samples the
# table every 30 s.
retention() {
    progress "retention ($RET_RATE jobs/s for $RET_S s)"
    fresh_db
    cat >"$tmp/retention.yaml" <<'EOF'
log: {level: warn}
retention: 1m
kinds:
  bench_sql:
    sql: "SELECT 1"
EOF
    "$RUNNER" --config "$tmp/retention.yaml" --database-url "$DB_URL" run \
        >"$tmp/retention.log" 2>&1 &
    local runner_pid=$! t=0 line jps wait rows dead size
    echo "SELECT runner.enqueue('bench_sql') FROM generate_series(1, 10);" >"$tmp/ret.sql"
    "$PGBENCH" -n -c 4 -j 2 -R "$((RET_RATE / 10))" -T "$RET_S" -f "$tmp/ret.sql" \
        -h "$RUNNER_TEST_PGHOST" -p "$RUNNER_TEST_PGPORT" -U "$RUNNER_TEST_PGUSER" "$DB_NAME" \
        >"$tmp/ret-pgbench.log" 2>&1 &
    # after two minutes of warm-up (a minute of jobs to keep, the first prunes), the first
    # and the second half of the rest: the largest row count of each, the size at the end
    # of each
    local feeder=$! half=$(((RET_S + 120) / 2)) rows1=0 rows2=0 size1="" maxwait=0 done_total=0
    echo "bench.sh: retention   t_s  jobs/s  max_wait_ms    rows  dead_tuples  size_mib" >&2
    while [ "$t" -lt "$RET_S" ]; do
        sleep 30
        t=$((t + 30))
        line=$(sql_db "SELECT (SELECT count(*) FROM runner.jobs
                                WHERE finished_at > now() - interval '30 s') / 30,
                              (SELECT coalesce(round(extract(epoch FROM
                                         max(started_at - created_at)) * 1000), 0)
                                 FROM runner.jobs WHERE started_at > now() - interval '30 s'),
                              (SELECT count(*) FROM runner.jobs),
                              (SELECT n_dead_tup FROM pg_stat_user_tables
                                WHERE relid = 'runner.jobs'::regclass),
                              pg_total_relation_size('runner.jobs') / 1048576" | tr '|' ' ')
        read -r jps wait rows dead size <<<"$line"
        printf 'bench.sh: retention %5d %7s %12s %7s %12s %9s\n' "$t" "$jps" "$wait" "$rows" \
            "$dead" "$size" >&2
        [ "$wait" -gt "$maxwait" ] && maxwait=$wait
        done_total=$((done_total + jps * 30))
        if [ "$t" -gt 120 ] && [ "$t" -le "$half" ]; then
            [ "$rows" -gt "$rows1" ] && rows1=$rows
            size1=$size
        elif [ "$t" -gt "$half" ] && [ "$rows" -gt "$rows2" ]; then
            rows2=$rows
        fi
    done
    wait "$feeder" || echo "bench.sh: pgbench feeder: $(tail -n 3 "$tmp/ret-pgbench.log")" >&2
    kill -TERM "$runner_pid" 2>/dev/null
    wait "$runner_pid" || true
    add ret_tp "$((done_total / RET_S))"
    add ret_wait "$maxwait"
    if [ "$rows1" -gt 0 ] && [ "$rows2" -gt 0 ] && [ "${size1:-0}" -gt 0 ]; then
        add ret_rows "$(awk -v a="$rows2" -v b="$rows1" 'BEGIN { printf "%.2f", a / b }')"
        add ret_size "$(awk -v a="$size" -v b="$size1" 'BEGIN { printf "%.2f", a / b }')"
    fi
    drop_db
}

# history times queue_summary and `runner status` beside HISTORY_ROWS jobs completed
# within the hour.
history() {
    progress "history"
    local best=""
    fresh_db
    "$PSQL" "$DB_URL" -v ON_ERROR_STOP=1 -v n="$HISTORY_ROWS" -qAtX >/dev/null <<'SQL' ||
INSERT INTO runner.jobs (queue, kind, state, attempt, max_attempts, started_at, finished_at)
SELECT 'q' || (i % 5), 'k', 'completed', 1, 25, t, t
  FROM generate_series(1, :n) i, LATERAL (SELECT now() - (i % 3500) * interval '1 s' AS t) x;
VACUUM ANALYZE runner.jobs;
SQL
        die "could not load the history rows"
    if [ "$(sql_db "SELECT to_regprocedure('runner.rollup_completed()') IS NOT NULL")" = t ]; then
        while [ "$(sql_db "SELECT through < now() - interval '20 s' FROM runner.rollup_progress")" = t ]; do
            sql_db "SELECT runner.rollup_completed()" >/dev/null
        done
    fi
    local i ms t0 t1
    for i in 1 2 3; do
        ms=$(sql_db "EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM runner.queue_summary" |
            sed -n 's/.*"Execution Time": \([0-9.]*\).*/\1/p')
        best=$(awk -v a="${best:-$ms}" -v b="$ms" 'BEGIN { print (b < a ? b : a) }')
    done
    add hist_summary "$best"
    t0=$(date +%s%N)
    "$RUNNER" --database-url "$DB_URL" status >/dev/null
    t1=$(date +%s%N)
    add hist_status "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')"
    drop_db
}

sql_db() {
    "$PSQL" "$DB_URL" -v ON_ERROR_STOP=1 -qAtX -c "$1"
}

mib() {
    awk -v k="$1" 'BEGIN { printf "%.2f", k / 1024 }'
}

pgbench_ceiling() {
    progress "pgbench ceiling"
    local url name out tps
    fresh_db
    url=$DB_URL
    name=$DB_NAME
    "$PSQL" "$url" -v ON_ERROR_STOP=1 -qAtX \
        -c "CREATE TABLE bench_t (id int PRIMARY KEY, v bigint NOT NULL DEFAULT 0)" \
        -c "INSERT INTO bench_t (id) SELECT generate_series(1, 1000)" \
        -c "VACUUM ANALYZE bench_t" >/dev/null
    printf '%s\n' '\set id random(1, 1000)' 'UPDATE bench_t SET v = v + 1 WHERE id = :id;' \
        >"$tmp/update.sql"
    if out=$("$PGBENCH" -n -c 20 -j 2 -T "$PGBENCH_S" -f "$tmp/update.sql" \
        -h "$RUNNER_TEST_PGHOST" -p "$RUNNER_TEST_PGPORT" -U "$RUNNER_TEST_PGUSER" "$name" 2>&1); then
        tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | tail -n 1)
        add pgbench "${tps:-?}"
    else
        failures=$((failures + 1))
        FAILED[pgbench]=1
        echo "bench.sh: pgbench failed: $out" >&2
    fi
    drop_db
}

latency() {
    progress "latency"
    local url out
    fresh_db
    url=$DB_URL
    measure lat_p50 "$tmp/latency.log" "$BENCH" latency "$url" "$LAT_COUNT" "$LAT_RATE" \
        "$LAT_WARMUP" "$tmp/stamps" -- "$NOOP" "$url"
    out=$(cat "$tmp/result")
    drop_db
    [ -n "$out" ] || return 0
    local line
    line=$(grep 'dist=handler ' <<<"$out")
    add lat_p50 "$(field "$line" p50_ms)"
    add lat_p95 "$(field "$line" p95_ms)"
    add lat_p99 "$(field "$line" p99_ms)"
    add lat_max "$(field "$line" max_ms)"
    line=$(grep 'dist=claim ' <<<"$out")
    add clat_p50 "$(field "$line" p50_ms)"
    add clat_p99 "$(field "$line" p99_ms)"
    line=$(grep 'dist=enqueue_rtt ' <<<"$out")
    add enq_p50 "$(field "$line" p50_ms)"
    add enq_p99 "$(field "$line" p99_ms)"
    line=$(grep 'dist=created_to_commit ' <<<"$out" || true)
    if [ -n "$line" ]; then
        add commit_p50 "$(field "$line" p50_ms)"
        add commit_p99 "$(field "$line" p99_ms)"
        line=$(grep 'dist=commit_to_claim ' <<<"$out")
        add wake_p50 "$(field "$line" p50_ms)"
        add wake_p99 "$(field "$line" p99_ms)"
    fi
    line=$(grep 'dist=claim_to_handler ' <<<"$out")
    add start_p50 "$(field "$line" p50_ms)"
    add start_p99 "$(field "$line" p99_ms)"
}

deploy() {
    local mode=$1 feed_s=$2 url line logdir
    progress "deploy ($mode)"
    fresh_db
    url=$DB_URL
    logdir="$tmp/deploy-$mode-$rep"
    mkdir -p "$logdir"
    local fig=d_exit
    [ "$mode" = term ] || fig=k_rescue_max
    measure "$fig" "$logdir/runner-a.log" "$BENCH" deploy "$mode" "$url" \
        "$DEPLOY_RATE" "$feed_s" sleep3 "$logdir" \
        -- "$RUNNER" --config "$tmp/deploy-a.yaml" --database-url "$url" run \
        -- "$RUNNER" --config "$tmp/deploy-b.yaml" --database-url "$url" run
    line=$(cat "$tmp/result")
    drop_db
    [ -n "$line" ] || return 0
    if [ "$mode" = term ]; then
        add d_exit "$(field "$line" exit_s)"
        add d_code "$(field "$line" exit_code)"
        add d_running "$(field "$line" running_at_signal)"
        add d_grace "$(field "$line" completed_in_grace)"
        add d_released "$(field "$line" released)"
        add d_restart_max "$(field "$line" restart_ms_max)"
        add d_restart_p50 "$(field "$line" restart_ms_p50)"
        add d_release_after "$(field "$line" release_after_s)"
    else
        add k_running "$(field "$line" running_at_signal)"
        add k_rescued "$(field "$line" rescued)"
        add k_rescue_max "$(field "$line" rescue_s_max)"
        add k_rescue_min "$(field "$line" rescue_s_min)"
        add k_restart_max "$(field "$line" restart_s_max)"
        add k_detect "$(field "$line" rescue_after_expiry_s_max)"
    fi
}

hotfix() {
    local mode=$1 url line dir
    progress "hotfix ($mode)"
    fresh_db
    url=$DB_URL
    dir="$tmp/hotfix-$mode-$rep"
    mkdir -p "$dir"
    hotfix_worker v1 >"$dir/worker.sh"
    hotfix_worker v2 >"$dir/worker.sh.new"
    hotfix_config "$dir/worker.sh" "" >"$dir/runner.yaml"
    hotfix_config "$dir/worker.sh" "" >"$dir/runner.yaml.new" # the same file
    : >"$dir/effects"
    measure "hf_$mode" "$dir/runner-a.log" "$BENCH" hotfix "$mode" "$url" "$HOTFIX_RATE" \
        "$HOTFIX_PRE_S" "$HOTFIX_POST_S" hot "$dir/effects" "$dir/worker.sh" \
        "$dir/worker.sh.new" "$dir/runner.yaml" "$dir/runner.yaml.new" "$dir" \
        -- "$RUNNER" --config "$dir/runner.yaml" --database-url "$url" run
    line=$(cat "$tmp/result")
    drop_db
    [ -n "$line" ] || return 0
    local p=hf_$mode
    add "${p}_jobs" "$(field "$line" jobs)"
    add "${p}_lost" "$(field "$line" lost)"
    add "${p}_twice" "$(field "$line" run_twice)"
    add "${p}_restarted" "$(field "$line" restarted)"
    add "${p}_steady_max" "$(field "$line" steady_wait_ms_max)"
    add "${p}_steady_p99" "$(field "$line" steady_wait_ms_p99)"
    add "${p}_deploy_max" "$(field "$line" deploy_wait_ms_max)"
    add "${p}_deploy_p99" "$(field "$line" deploy_wait_ms_p99)"
    add "${p}_new" "$(field "$line" new_version_s)"
    add "${p}_old_gone" "$(field "$line" old_gone_s)"
    if [ "$mode" = restart ]; then
        add "${p}_exit" "$(field "$line" exit_s)"
    fi
}

# workers_tp: the worker kinds' no-op throughput and the exec kinds' with the same logic
workers_tp() {
    local run=("$RUNNER" --config "$tmp/workers.yaml" --database-url @URL@ run)
    TP_JOBS=$WP_JOBS throughput wp_sh wp_sh "${run[@]}"
    TP_JOBS=$WP_EXEC_SH_JOBS throughput ex_sh ex_sh "${run[@]}"
    TP_JOBS=$WP_JOBS throughput wp_py wp_py "${run[@]}"
    TP_JOBS=$WP_EXEC_PY_JOBS throughput ex_py ex_py "${run[@]}"
    # the handler's cost alone, without the database (workerproc_bench: 4 threads, 5
    # alternating rounds, medians)
    progress "workerproc_bench"
    measure wpb_sh "$tmp/workerproc_bench.log" env RUNNER_SOURCE_ROOT="$root" BENCH_PYTHON="$PYTHON" \
        "$WPBENCH" "$WPB_JOBS"
    local line
    line=$(cat "$tmp/result")
    [ -n "$line" ] || return 0
    add wpb_sh_w "$(field "$line" sh_worker_jobs_per_s)"
    add wpb_sh_e "$(field "$line" sh_exec_jobs_per_s)"
    add wpb_sh_ratio "$(field "$line" sh_ratio)"
    add wpb_py_w "$(field "$line" python_worker_jobs_per_s)"
    add wpb_py_e "$(field "$line" python_exec_jobs_per_s)"
    add wpb_py_ratio "$(field "$line" python_ratio)"
}

start_s=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# wanted GROUP: is the group in BENCH_ONLY (all groups when it is empty)?
wanted() {
    if [ "$1" = ratio ]; then
        wanted throughput && wanted ceiling
        return
    fi
    [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]
}
for rep in $(seq 1 "$REPS"); do
    if wanted throughput; then
        throughput noop noop "$NOOP" @URL@
        throughput noop_info noop "$NOOP" @URL@ "$tmp/noop-info.yaml"
        throughput noop_lean noop /usr/bin/env GNUTLS_NO_IMPLICIT_INIT=1 "$NOOP" @URL@
        throughput noop_tx noop_tx "$NOOP" @URL@
        throughput sql bench_sql "$RUNNER" --config "$tmp/kinds.yaml" --database-url @URL@ run
        throughput exec bench_true "$RUNNER" --config "$tmp/kinds.yaml" --database-url @URL@ run
    fi
    if wanted ceiling; then pgbench_ceiling; fi
    if wanted latency; then latency; fi
    if wanted deploy; then deploy term "$DEPLOY_FEED_S"; fi
    if wanted kill; then deploy kill "$KILL_FEED_S"; fi
    if wanted hotfix; then
        hotfix reload
        hotfix restart
        workers_tp
    fi
    if wanted scale; then
        scale
        enqueue_pgbench
        history
    fi
    if wanted retention; then retention; fi
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(($(date +%s) - start_s))

# per_rep A B OUT FACTOR: FACTOR * A / B of each repetition (B: the base of the same
# repetition, e.g. the sql run against that repetition's pgbench)
per_rep() {
    local -a a b
    read -r -a a <<<"${VALS[$1]:-}"
    read -r -a b <<<"${VALS[$2]:-}"
    local i
    for i in "${!a[@]}"; do
        [ -n "${b[$i]:-}" ] || continue
        add "$3" "$(awk -v x="${a[$i]}" -v y="${b[$i]}" -v f="$4" 'BEGIN { if (y > 0) printf "%.1f", f * x / y; else print "?" }')"
    done
}
per_rep tp_sql pgbench ratio_sql 100
per_rep tp_noop_tx pgbench ratio_noop_tx 100
per_rep tp_wp_sh tp_ex_sh ratio_wp_sh 1
per_rep tp_wp_py tp_ex_py ratio_wp_py 1
for c in kinds paused future all queues500; do
    per_rep "tp_scale_$c" tp_scale_empty "r_scale_$c" 100
done
for c in 1 4 8; do
    per_rep "enqueue_c$c" "insert_c$c" "r_enqueue_c$c" 100
done

# ---- the table ----

# stats prints "min median max" of the figure's values (a numeric sort).
stats() {
    tr ' ' '\n' <<<"${VALS[$1]:-}" | grep -v '^$' | grep -v '?' | sort -g |
        awk '{ v[NR] = $1 } END {
            if (NR == 0) { print "- - -"; exit }
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%s %s %s\n", f(v[1]), f(m), f(v[NR]) }
        # integers as they are, else 0 decimals from 1000, 1 from 10, 3 below
        function f(x,  a) {
            a = x < 0 ? -x : x
            if (x == int(x)) return sprintf("%d", x)
            if (a >= 1000) return sprintf("%.0f", x)
            if (a >= 10) return sprintf("%.1f", x)
            return sprintf("%.3f", x)
        }'
}

verdict=0
# row GROUP FIGURE LABEL UNIT OP TARGET: OP is ge, le or - (no target); rows of groups
# left out by BENCH_ONLY are not printed.
row() {
    wanted "$1" || return 0
    shift
    local fig=$1 label=$2 unit=$3 op=$4 target=$5 min med max status tgt
    read -r min med max <<<"$(stats "$fig")"
    status=""
    tgt=""
    if [ "$op" != - ]; then
        tgt="$([ "$op" = ge ] && echo ">=" || echo "<=") $target"
        if [ "$med" = - ]; then
            status="FAIL"
        elif awk -v m="$med" -v t="$target" -v op="$op" \
            'BEGIN { exit !((op == "ge" && m >= t) || (op == "le" && m <= t)) }'; then
            status="ok"
        else
            status="MISSED"
            verdict=$((verdict + 1))
        fi
    fi
    [ -n "${FAILED[$fig]:-}" ] && status="$status (a run failed)"
    printf '%-58s %-6s %9s %9s %9s  %-9s %s\n' "$label" "$unit" "$min" "$med" "$max" "$tgt" \
        "$status"
}

exit_target=$(awk -v g="$GRACE_S" -v k="$KILL_AFTER_S" 'BEGIN { print g + k + 0.2 }')
rescue_target=$((LEASE_S + HEARTBEAT_S))

echo
echo "runner benchmark: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- 2>/dev/null || echo '+local changes'), build $BUILD ($(meson introspect "$BUILD" --buildoptions 2>/dev/null | grep -o '"name": "buildtype", "value": "[a-z]*"' | sed 's/.*"value": "//;s/"//' || echo '?'))"
echo "host: $(nproc) CPUs, $(uname -r), load average before $load_before, after $load_after (shared and noisy: figures are for this host)"
echo "server: $("$pgbin/postgres" --version), $settings"
echo "$REPS repetitions, ${elapsed}s; targets are judged on the median"
echo
printf '%-58s %-6s %9s %9s %9s  %-9s %s\n' figure unit min median max target ""
printf '%s\n' "$(printf '%.0s-' $(seq 1 112))"
row throughput tp_noop "throughput: no-op C handler (noop)" jobs/s ge 40000
row throughput tp_noop_info "throughput: no-op, log.level info to a file" jobs/s - ""
row throughput tp_noop_lean "throughput: no-op, GNUTLS_NO_IMPLICIT_INIT=1" jobs/s - ""
row throughput tp_noop_tx "throughput: no-op transactional C (noop_tx)" jobs/s - ""
row throughput tp_sql "throughput: sql SELECT 1" jobs/s - ""
row throughput tp_exec "throughput: exec /bin/true" jobs/s - ""
row throughput wal_noop "WAL per no-op job (insert, claim, completion)" bytes - ""
row throughput wal_sql "WAL per sql job (insert, claim, completion)" bytes le 500
row ceiling pgbench "ceiling: pgbench 1-row UPDATE, 20 clients" tps - ""
row ratio ratio_sql "sql SELECT 1 / pgbench" % ge 80
row ratio ratio_noop_tx "noop_tx / pgbench" % - ""
row latency lat_p50 "latency enqueue (created_at) -> handler start, p50" ms le 1
row latency lat_p95 "latency enqueue (created_at) -> handler start, p95" ms - ""
row latency lat_p99 "latency enqueue (created_at) -> handler start, p99" ms le 3
row latency lat_max "latency enqueue (created_at) -> handler start, max" ms - ""
row latency commit_p50 "  of which created_at -> enqueue's commit, p50" ms - ""
row latency commit_p99 "  of which created_at -> enqueue's commit, p99" ms - ""
row latency wake_p50 "  of which enqueue's commit -> claim (started_at), p50" ms - ""
row latency wake_p99 "  of which enqueue's commit -> claim (started_at), p99" ms - ""
row latency start_p50 "  of which claim (started_at) -> handler start, p50" ms - ""
row latency start_p99 "  of which claim (started_at) -> handler start, p99" ms - ""
row latency clat_p50 "latency created_at -> claim (started_at), p50" ms - ""
row latency clat_p99 "latency created_at -> claim (started_at), p99" ms - ""
row latency enq_p50 "enqueue round trip seen by the client, p50" ms - ""
row latency enq_p99 "enqueue round trip seen by the client, p99" ms - ""
row deploy d_exit "deploy: SIGTERM -> exit (grace ${GRACE_S}s, kill_after ${KILL_AFTER_S}s)" s le "$exit_target"
row deploy d_code "deploy: exit status" "" le 0
row deploy d_running "deploy: jobs running at SIGTERM" jobs - ""
row deploy d_grace "deploy: completed during grace" jobs - ""
row deploy d_released "deploy: released" jobs - ""
row deploy d_release_after "deploy: SIGTERM -> release statement" s - ""
row deploy d_restart_p50 "deploy: release -> peer starts it, p50" ms - ""
row deploy d_restart_max "deploy: release -> peer starts it, max" ms le 100
row kill k_running "kill: jobs running at SIGKILL" jobs - ""
row kill k_rescued "kill: jobs rescued" jobs - ""
row kill k_rescue_min "kill: SIGKILL -> rescue, first job" s - ""
row kill k_rescue_max "kill: SIGKILL -> rescue, last job (lease ${LEASE_S}s, hb ${HEARTBEAT_S}s)" s le "$rescue_target"
row kill k_detect "kill: lease expiry -> rescue, max" s - ""
row kill k_restart_max "kill: SIGKILL -> peer restarts last job" s - ""
for m in reload restart; do
    row hotfix "hf_${m}_jobs" "hotfix ($m): jobs (20/s, 3 s each, $HOTFIX_PROCESSES processes)" jobs - ""
    row hotfix "hf_${m}_lost" "hotfix ($m): jobs lost" jobs le 0
    row hotfix "hf_${m}_twice" "hotfix ($m): jobs run twice" jobs le 0
    row hotfix "hf_${m}_restarted" "hotfix ($m): jobs started twice (interrupted)" jobs - ""
    row hotfix "hf_${m}_steady_max" "hotfix ($m): enqueue -> start wait, steady state, max" ms - ""
    row hotfix "hf_${m}_steady_p99" "hotfix ($m): enqueue -> start wait, steady state, p99" ms - ""
    if [ "$m" = reload ]; then
        row hotfix "hf_${m}_deploy_max" "hotfix ($m): enqueue -> start wait, across, max" ms le 100
    else
        row hotfix "hf_${m}_deploy_max" "hotfix ($m): enqueue -> start wait, across, max" ms - ""
    fi
    row hotfix "hf_${m}_deploy_p99" "hotfix ($m): enqueue -> start wait, across, p99" ms - ""
    row hotfix "hf_${m}_new" "hotfix ($m): signal -> every job starts on v2" s - ""
    row hotfix "hf_${m}_old_gone" "hotfix ($m): signal -> last v1 job done" s - ""
done
row hotfix hf_restart_exit "hotfix (restart): SIGTERM -> exit of the old runner" s - ""
row hotfix wpb_sh_w "workers, no database: worker.sh no-op, processes 4" jobs/s - ""
row hotfix wpb_sh_e "workers, no database: exec sh -c 'IFS= read -r args'" jobs/s - ""
row hotfix wpb_sh_ratio "workers, no database: worker.sh / exec sh" x ge 10
row hotfix wpb_py_w "workers, no database: worker.py no-op, processes 4" jobs/s - ""
row hotfix wpb_py_e "workers, no database: exec python3 json.load" jobs/s - ""
row hotfix wpb_py_ratio "workers, no database: worker.py / exec python3" x ge 10
row hotfix tp_wp_sh "workers, runner: worker.sh no-op (concurrency 4)" jobs/s - ""
row hotfix tp_ex_sh "workers, runner: exec sh (concurrency 4)" jobs/s - ""
row hotfix ratio_wp_sh "workers, runner: worker.sh / exec sh" x - ""
row hotfix tp_wp_py "workers, runner: worker.py no-op (concurrency 4)" jobs/s - ""
row hotfix tp_ex_py "workers, runner: exec python3 (concurrency 4)" jobs/s - ""
row hotfix ratio_wp_py "workers, runner: worker.py / exec python3" x - ""
row scale tp_scale_empty "scale: sql SELECT 1, empty table" jobs/s - ""
row scale r_scale_kinds "scale: beside $SCALE_ROWS due jobs of another kind" % ge 90
row scale r_scale_paused "scale: beside $SCALE_ROWS due jobs of a paused queue" % ge 90
row scale r_scale_future "scale: beside $SCALE_ROWS jobs due tomorrow, better priority" % ge 90
row scale r_scale_all "scale: beside all three ($((3 * SCALE_ROWS)) rows)" % ge 90
row scale r_scale_queues500 "scale: beside $SCALE_ROWS due jobs in 500 other queues" % ge 90
row scale wal_scale_empty "scale: WAL per sql job, empty table" bytes - ""
row scale wal_scale_all "scale: WAL per sql job, beside all three" bytes - ""
row scale enqueue_c1 "enqueue: runner.enqueue(), pgbench 1 client" tps - ""
row scale insert_c1 "enqueue: plain INSERT into a copy, 1 client" tps - ""
row scale r_enqueue_c1 "enqueue / INSERT, 1 client" % - ""
row scale enqueue_c4 "enqueue: runner.enqueue(), 4 clients" tps - ""
row scale insert_c4 "enqueue: plain INSERT into a copy, 4 clients" tps - ""
row scale r_enqueue_c4 "enqueue / INSERT, 4 clients" % - ""
row scale enqueue_c8 "enqueue: runner.enqueue(), 8 clients" tps - ""
row scale insert_c8 "enqueue: plain INSERT into a copy, 8 clients" tps - ""
row scale r_enqueue_c8 "enqueue / INSERT, 8 clients" % ge 80
row scale hist_summary "history: queue_summary beside $HISTORY_ROWS completed in the hour" ms le 50
row scale hist_status "history: runner status (wall, process start included)" ms - ""
row retention ret_tp "retention 1m: jobs/s completed, fed $RET_RATE/s for $RET_S s" jobs/s ge $((RET_RATE * 95 / 100))
row retention ret_wait "retention 1m: longest enqueue -> start wait" ms - ""
row retention ret_rows "retention 1m: most rows, 2nd half / 1st half (after 2 min)" x le 1.2
row retention ret_size "retention 1m: size at the end / at half time (after 2 min)" x le 1.2
row throughput hwm "footprint: peak RSS (VmHWM) of noop runner" MiB le 8
row throughput hwm_lean "  the same with GNUTLS_NO_IMPLICIT_INIT=1 (README)" MiB - ""
row throughput rss_anon "footprint: RssAnon at the end of the run" MiB - ""
row throughput rss_file "footprint: RssFile at the end of the run" MiB - ""
row throughput cpu "footprint: runner CPU per 1,000 no-op jobs" ms - ""
echo

if [ "$failures" -gt 0 ]; then
    echo "bench.sh: $failures measurement(s) failed (see above)" >&2
    exit 1
fi
if [ "$verdict" -ne 0 ]; then
    echo "bench.sh: $verdict target(s) missed" >&2
    [ "${BENCH_STRICT:-}" = 1 ] && exit 3
fi
exit 0
