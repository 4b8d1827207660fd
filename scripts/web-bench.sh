#!/usr/bin/env bash
# web-bench.sh - per-page response times of `runner web` on a big table.
#
#   scripts/web-bench.sh                      # 10M finished + 100k waiting jobs
#   WEB_BENCH_FINISHED=1000000 scripts/web-bench.sh
#
# Fills a throwaway database (tests/with-postgres.sh, or RUNNER_TEST_DATABASE_URL) with
# WEB_BENCH_FINISHED finished jobs (98.9 % completed, 1 % failed, 0.1 % cancelled, over
# 7 days, 20 kinds in 5 queues) and WEB_BENCH_WAITING waiting ones (90 % due, 10 % later),
# plus 40 running jobs of two instances, rolls the completions up as running instances
# do (runner.rollup_completed()), then times each page with curl,
# WEB_BENCH_REPS times (default 15), and prints min / median / max in ms. Not a test: it
# asserts nothing; the README quotes its output. cpu_ms is the CPU time per request of
# runner web and its database backends together (load-independent, unlike the wall clock).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

if [ -z "${RUNNER_TEST_DATABASE_URL:-}" ]; then
    exec tests/with-postgres.sh "$0" "$@"
fi

FINISHED=${WEB_BENCH_FINISHED:-10000000}
WAITING=${WEB_BENCH_WAITING:-100000}
REPS=${WEB_BENCH_REPS:-15}
BIN=${RUNNER_BIN:-build/runner}
URL=$RUNNER_TEST_DATABASE_URL
[ -x "$BIN" ] || { echo "web-bench.sh: $BIN not built (ninja -C build)" >&2; exit 1; }

psql() { command psql "$URL" -X -q -v ON_ERROR_STOP=1 "$@"; }

"$BIN" --database-url "$URL" migrate >/dev/null
psql -c "ALTER SYSTEM SET max_wal_size = '8GB'" -c "SELECT pg_reload_conf()" >/dev/null

t0=$(date +%s)
if [ "$(psql -tAc "SELECT count(*) FROM runner.instances WHERE version = 'bench'")" != 0 ]; then
    echo "web-bench.sh: the database holds a previous run's data: timing only" >&2
    FILLED=1
fi
[ -n "${FILLED:-}" ] || echo "web-bench.sh: inserting $FINISHED finished jobs" >&2
chunk=1000000
done_rows=0
while [ -z "${FILLED:-}" ] && [ "$done_rows" -lt "$FINISHED" ]; do
    n=$((FINISHED - done_rows < chunk ? FINISHED - done_rows : chunk))
    psql <<SQL
INSERT INTO runner.jobs (queue, kind, args, state, priority, run_at, attempt, max_attempts,
                         created_at, started_at, finished_at, last_error, errors)
SELECT 'q' || (g % 5), 'kind' || (g % 20),
       jsonb_build_object('user', g, 'email', 'user' || g || '@example.com', 'n', g % 1000),
       s.state, 0, f - interval '2 s', 1, 25, f - interval '3 s', f - interval '1 s', f,
       CASE WHEN s.state = 'failed' THEN 'exit status 1: could not reach upstream ' || g END,
       CASE WHEN s.state = 'failed' THEN jsonb_build_array(jsonb_build_object(
            'at', f, 'attempt', 1, 'outcome', 'retry', 'error', 'could not reach upstream'))
            ELSE '[]' END
  FROM generate_series($done_rows + 1, $done_rows + $n) g,
       LATERAL (SELECT now() - interval '7 days' * (1 - g::float8 / $FINISHED) AS f) t,
       LATERAL (SELECT CASE WHEN g % 1000 = 7 THEN 'cancelled'
                            WHEN g % 100 = 3 THEN 'failed' ELSE 'completed' END AS state) s;
SQL
    done_rows=$((done_rows + n))
    echo "web-bench.sh:   $done_rows" >&2
done
[ -n "${FILLED:-}" ] || echo "web-bench.sh: inserting $WAITING waiting jobs and 40 running ones" >&2
[ -n "${FILLED:-}" ] || psql <<SQL
INSERT INTO runner.instances (host, pid, version, concurrency, queues, lease)
VALUES ('bench-a', 101, 'bench', 20, '{q0,q1,q2,q3,q4}', '30 s'),
       ('bench-b', 102, 'bench', 20, '{q0,q1,q2,q3,q4}', '30 s');
INSERT INTO runner.jobs (queue, kind, args, state, run_at)
SELECT 'q' || (g % 5), 'kind' || (g % 20), jsonb_build_object('user', g, 'n', g % 1000),
       'available', CASE WHEN g % 10 = 0 THEN now() + interval '1 hour' ELSE now() - interval '1 s' * (g % 600) END
  FROM generate_series(1, $WAITING) g;
UPDATE runner.jobs j SET state = 'running', attempt = 1, max_attempts = 25, started_at = now(),
       lease_owner = i.id, lease_expires_at = now() + interval '30 s'
  FROM (SELECT id, row_number() OVER () AS rn FROM runner.jobs
         WHERE state = 'available' ORDER BY id LIMIT 40) c,
       (SELECT id, row_number() OVER (ORDER BY host) AS k FROM runner.instances) i
 WHERE j.id = c.id AND i.k = 1 + c.rn % 2;
VACUUM ANALYZE runner.jobs;
SQL
# what the running instances do every few seconds (the chores' rollup): without it the
# overview would count the last hour's completions row by row
for _ in $(seq 40); do
    [ "$(psql -tAc "SELECT runner.rollup_completed() >= 0 AND runner.rollup_through() < now() - interval '20 s'")" = t ] || break
done
echo "web-bench.sh: data ready in $(($(date +%s) - t0)) s; table $(psql -tAc "SELECT pg_size_pretty(pg_total_relation_size('runner.jobs'))")" >&2

log=$(mktemp)
"$BIN" --database-url "$URL" web --listen 127.0.0.1:0 2>"$log" &
web=$!
trap 'kill $web 2>/dev/null; wait $web 2>/dev/null; rm -f "$log"' EXIT
base=
for _ in $(seq 100); do
    base=$(sed -n 's/.*msg="dashboard listening" url=\(http:[^ ]*\)\/ .*/\1/p' "$log")
    [ -n "$base" ] && break
    sleep 0.1
done
[ -n "$base" ] || { cat "$log" >&2; echo "web-bench.sh: runner web did not start" >&2; exit 1; }

mid=$(psql -tAc "SELECT max(id) / 2 FROM runner.jobs")
failed=$(psql -tAc "SELECT max(id) FROM runner.jobs WHERE state = 'failed'")
pages=(
    "/"
    "/jobs"
    "/jobs?before=$mid"
    "/jobs?state=completed"
    "/jobs?state=failed"
    "/jobs?state=cancelled"
    "/jobs?state=available"
    "/jobs?state=running"
    "/jobs?kind=kind7"
    "/jobs?state=failed&queue=q3"
    "/jobs?q=user123%40"
    "/jobs?kind=nosuchkind"
    "/jobs/$failed"
    "/queues"
    "/schedules"
    "/instances"
)
# cpu_ticks sums the CPU time (user + system, in clock ticks) of runner web and of its
# database backends: on a loaded machine the wall clock says more about the neighbours.
cpu_ticks() {
    local t=0 pid f
    for pid in $web $(psql -tAc "SELECT pid FROM pg_stat_activity WHERE application_name = 'runner web'"); do
        if f=$(cut -d' ' -f14,15 "/proc/$pid/stat" 2>/dev/null); then
            t=$((t + ${f% *} + ${f#* }))
        fi
    done
    echo "$t"
}
hz=$(getconf CLK_TCK)
echo "web-bench.sh: load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores" >&2
printf '%-34s %8s %9s %8s %8s\n' page min_ms median_ms max_ms cpu_ms
for p in "${pages[@]}"; do
    curl -s -o /dev/null "$base$p" # warm the connection pool and the cache
    times=()
    c0=$(cpu_ticks)
    for _ in $(seq "$REPS"); do
        times+=("$(curl -s -o /dev/null -w '%{time_total}' "$base$p")")
    done
    c1=$(cpu_ticks)
    printf '%s\n' "${times[@]}" | sort -n | awk -v p="$p" -v cpu="$(( (c1 - c0) * 1000 / hz ))" -v n="$REPS" '
        { t[NR] = $1 * 1000 }
        END { printf "%-34s %8.1f %9.1f %8.1f %8.1f\n", p, t[1], t[int((NR + 1) / 2)], t[NR], cpu / n }'
done
echo "web-bench.sh: load average $(cut -d' ' -f1-3 /proc/loadavg) at the end" >&2
