#!/usr/bin/env bash
# tsan.sh - ThreadSanitizer over the threaded parts: the runner binary built with
# -fsanitize=thread works a real workload against a throwaway PostgreSQL.
#
#   scripts/tsan.sh
#
# criterion does not start under TSan ("could not initialize inheritable arena"), so the
# tests cannot run there; instead this builds build-tsan/runner (TSAN_BUILD overrides the
# directory) and drives one instance with 20 workers through
#   1. 2,000 no-op jobs, half sql (SELECT 1), half exec (true), enqueued in one statement
#      plus one through `runner enqueue`; half way through, every backend of the runner is
#      terminated once (reconnects while the workers are busy);
#   2. runner.cancel_job() on a running exec job (NOTIFY to the owner, child stopped);
#   3. a SIGTERM drain with all 20 workers busy: 18 short jobs finish within the grace
#      period, two longer ones are cancelled at the deadline and released; exit 0.
# Every TSan report (all processes, halt_on_error=0) is printed at the end; the script
# exits 1 when there was any or when the workload itself went wrong.
#
# The server is tests/with-postgres.sh's throwaway one, or a fresh database (dropped
# afterwards) in RUNNER_TEST_DATABASE_URL when that is set. Environment: TSAN_BUILD,
# TSAN_KEEP=1 (keep the work directory), TSAN_JOBS (default 2000).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

me=tsan
keep=${TSAN_KEEP:-}
# shellcheck source=scripts/workload-lib.sh
. "$root/scripts/workload-lib.sh"

# Without a server: run this script again inside tests/with-postgres.sh.
if [ -z "${RUNNER_TEST_DATABASE_URL:-}" ]; then
    exec tests/with-postgres.sh "$0" "$@"
fi

build=${TSAN_BUILD:-build-tsan}
njobs=${TSAN_JOBS:-2000}
if ! [[ "$njobs" =~ ^[0-9]+$ ]] || [ "$njobs" -lt 2 ]; then
    die "TSAN_JOBS must be a number >= 2"
fi
for tool in meson ninja; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done

find_psql

if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" -Dwerror=true -Db_sanitize=thread -Db_lundef=false -Dbuildtype=debug \
        -Dtests=false >/dev/null
fi
ninja -C "$build" runner >/dev/null
bin="$root/$build/runner"

workload_start

"$psql_bin" "$base_url" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null
db_created=1

export TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 log_path=$work/tsan"
"$bin" --database-url "$url" migrate >"$work/migrate.log" 2>&1 || {
    cat "$work/migrate.log" >&2
    fail "runner migrate"
}

cat >"$work/runner.yaml" <<'EOF'
worker:
  concurrency: 20
  poll_interval: 100ms
  lease: 30s
  heartbeat: 1s
shutdown:
  grace: 3s
  kill_after: 1s
log:
  level: warn
kinds:
  nop_sql:
    sql: "SELECT 1"
  nop_exec:
    command: ["true"]
  short:
    command: ["sleep", "2"]
  slow:
    command: ["sleep", "60"]
EOF

start=$(date +%s)
"$bin" --config "$work/runner.yaml" --database-url "$url" run >"$work/runner.log" 2>&1 &
runner_pid=$!
wait_sql 60 "SELECT count(*) = 1 FROM runner.instances WHERE state = 'running'" ||
    fail "the instance did not register within 60 s"

# 1. the no-op jobs
sql "SELECT count(runner.enqueue(CASE WHEN g % 2 = 0 THEN 'nop_sql' ELSE 'nop_exec' END))
       FROM generate_series(1, $((njobs - 1))) g" >/dev/null
"$bin" --database-url "$url" enqueue nop_sql '{"via": "cli"}' >/dev/null 2>>"$work/enqueue.log" ||
    fail "runner enqueue"
# half way, cut the runner's connections (control loop and handler pool) once: the
# reconnect paths run while the workers are busy
wait_sql 120 "SELECT count(*) >= $((njobs / 2)) FROM runner.jobs WHERE state = 'completed'" ||
    fail "half of the jobs not completed after 120 s"
cut=$(sql "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name LIKE 'runner%'")
note "terminated $cut runner backends half way"
wait_sql 300 "SELECT count(*) = $njobs FROM runner.jobs WHERE state = 'completed'" ||
    fail "$(sql "SELECT count(*) FROM runner.jobs WHERE state = 'completed'") of $njobs jobs completed after 300 s"
note "$njobs no-op jobs completed in $(($(date +%s) - start)) s"

# 2. cancel_job on a running job
id=$(sql "SELECT runner.enqueue('slow')")
wait_sql 30 "SELECT state = 'running' FROM runner.jobs WHERE id = $id" || fail "job $id never ran"
[ "$(sql "SELECT runner.cancel_job($id)")" = t ] || fail "cancel_job($id) returned false"
wait_sql 30 "SELECT state = 'cancelled' FROM runner.jobs WHERE id = $id" ||
    fail "job $id not cancelled 30 s after cancel_job"
note "job $id cancelled"

# 3. SIGTERM drain: 18 short jobs (2 s) finish within the grace period (3 s), 2 slow ones
# are cancelled at the deadline and released
sql "SELECT count(runner.enqueue(CASE WHEN g <= 2 THEN 'slow' ELSE 'short' END))
       FROM generate_series(1, 20) g" >/dev/null
wait_sql 30 "SELECT count(*) = 20 FROM runner.jobs WHERE state = 'running'" ||
    fail "the 20 drain jobs did not all start"
kill -TERM "$runner_pid"
status=0
for ((i = 0; i < 600; i++)); do
    kill -0 "$runner_pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$runner_pid" 2>/dev/null; then
    fail "runner still running 60 s after SIGTERM (grace 3 s, kill_after 1 s)"
fi
wait "$runner_pid" || status=$?
runner_pid=""
# TSan exits 66 after reporting; the reports are counted below
[ "$status" -eq 0 ] || [ "$status" -eq 66 ] || fail "runner exited $status after SIGTERM"
[ "$(sql "SELECT count(*) FROM runner.jobs WHERE kind = 'short' AND state = 'completed'")" = 18 ] ||
    fail "short jobs not all completed during the grace period"
[ "$(sql "SELECT count(*) FROM runner.jobs WHERE kind = 'slow' AND state = 'available'
            AND attempt = 0 AND errors::text LIKE '%interrupted by shutdown%'")" = 2 ] ||
    fail "slow jobs not released at the deadline"
[ "$(sql "SELECT count(*) FROM runner.instances WHERE state = 'stopped'")" = 1 ] ||
    fail "instance not recorded as stopped"
note "SIGTERM drain: exit $status"

reports=0
for f in "$work"/tsan.*; do
    [ -e "$f" ] || continue
    n=$(grep -c '^WARNING: ThreadSanitizer' "$f" || true)
    reports=$((reports + n))
    echo "==== $f"
    cat "$f"
done
echo "tsan: jobs=$njobs reports=$reports runner_exit=$status elapsed_s=$(($(date +%s) - start))"
[ "$reports" -eq 0 ] || exit 1
