#!/usr/bin/env bash
# memcheck.sh - valgrind memcheck over a short workload of the real runner binary.
#
#   scripts/memcheck.sh
#
# Builds build-memcheck/runner (-O0 -g; MEMCHECK_BUILD overrides the directory) and runs,
# each under
#   valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=1
#            --trace-children=no
# `runner migrate`, `runner enqueue`, `runner status`, and `runner run` working 200 jobs
# (half exec, half sql, a few failing and retried) until SIGTERM. The forked sentinel is
# checked too (it is the same program; exec'd job processes are not traced). Prints each
# process's error and leak summary and exits 1 on any error or definitely-lost byte, or
# when the workload itself went wrong.
#
# The server is tests/with-postgres.sh's throwaway one, or a fresh database (dropped
# afterwards) in RUNNER_TEST_DATABASE_URL when that is set. Environment: MEMCHECK_BUILD,
# MEMCHECK_KEEP=1 (keep the work directory), MEMCHECK_JOBS (default 200).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

me=memcheck
keep=${MEMCHECK_KEEP:-}
# shellcheck source=scripts/workload-lib.sh
. "$root/scripts/workload-lib.sh"

# Without a server: run this script again inside tests/with-postgres.sh.
if [ -z "${RUNNER_TEST_DATABASE_URL:-}" ]; then
    exec tests/with-postgres.sh "$0" "$@"
fi

build=${MEMCHECK_BUILD:-build-memcheck}
njobs=${MEMCHECK_JOBS:-200}
if ! [[ "$njobs" =~ ^[0-9]+$ ]] || [ "$njobs" -lt 10 ]; then
    die "MEMCHECK_JOBS must be a number >= 10"
fi
for tool in meson ninja valgrind; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install $tool)"
done

find_psql

if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" -Dwerror=true -Dbuildtype=debug -Dtests=false >/dev/null
fi
ninja -C "$build" runner >/dev/null
bin="$root/$build/runner"

workload_start

# vg NAME: the valgrind command line for one runner command; one log per process
# (vg-NAME.<pid>). Forked job children log until they exec (those logs have no summary).
vg() {
    vgcmd=(valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite
        --error-exitcode=1 --trace-children=no --num-callers=30
        --log-file="$work/vg-$1.%p" "$bin")
}

"$psql_bin" "$base_url" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null
db_created=1

vg migrate
"${vgcmd[@]}" --database-url "$url" migrate >"$work/migrate.log" 2>&1 || {
    cat "$work/migrate.log" >&2
    fail "runner migrate under valgrind"
}

cat >"$work/runner.yaml" <<'EOF'
worker:
  concurrency: 8
  poll_interval: 100ms
  lease: 30s
  heartbeat: 1s
shutdown:
  grace: 5s
  kill_after: 1s
log:
  level: info
kinds:
  mc_exec:
    command: ["/bin/sh", "-c", "cat >/dev/null; echo \"job $RUNNER_JOB_ID\""]
  mc_sql:
    sql: "SELECT $1::jsonb, $2::bigint"
  mc_flaky:
    command: ["/bin/sh", "-c", "echo oops >&2; [ \"$RUNNER_JOB_ATTEMPT\" -ge 2 ]"]
    max_attempts: 3
    backoff: {base: 10ms, max: 50ms}
  mc_bad_sql:
    sql: "SELECT 1/0"
    max_attempts: 2
    backoff: {base: 10ms, max: 50ms}
  mc_slow:
    command: ["sleep", "60"]
EOF

start=$(date +%s)
vg run
"${vgcmd[@]}" --config "$work/runner.yaml" --database-url "$url" run >"$work/runner.log" 2>&1 &
runner_pid=$!
wait_sql 120 "SELECT count(*) = 1 FROM runner.instances WHERE state = 'running'" ||
    fail "the instance did not register within 120 s"

vg enqueue
"${vgcmd[@]}" --database-url "$url" enqueue mc_exec '{"via": "cli"}' >/dev/null \
    2>"$work/enqueue.log" || fail "runner enqueue under valgrind"
sql "SELECT count(runner.enqueue(CASE WHEN g % 2 = 0 THEN 'mc_sql' ELSE 'mc_exec' END,
                                 jsonb_build_object('n', g)))
       FROM generate_series(1, $((njobs - 5))) g" >/dev/null
sql "SELECT count(runner.enqueue(k)) FROM unnest(ARRAY['mc_flaky', 'mc_flaky', 'mc_bad_sql', 'mc_bad_sql']) k" >/dev/null
wait_sql 300 "SELECT count(*) = 0 FROM runner.jobs WHERE state NOT IN ('completed', 'failed')" ||
    fail "$(sql "SELECT count(*) FROM runner.jobs WHERE state NOT IN ('completed', 'failed')") jobs unfinished after 300 s"
[ "$(sql "SELECT count(*) FROM runner.jobs WHERE state = 'completed'")" = $((njobs - 2)) ] ||
    fail "expected $((njobs - 2)) completed jobs and the 2 mc_bad_sql failed"
vg status
"${vgcmd[@]}" --database-url "$url" status >"$work/status.out" 2>&1 ||
    fail "runner status under valgrind"

# SIGTERM while one job outlives the grace period: cancelled, released, exit 0
id=$(sql "SELECT runner.enqueue('mc_slow')")
wait_sql 60 "SELECT state = 'running' FROM runner.jobs WHERE id = $id" || fail "job $id never ran"
kill -TERM "$runner_pid"
for ((i = 0; i < 1200; i++)); do
    kill -0 "$runner_pid" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$runner_pid" 2>/dev/null && fail "runner still running 120 s after SIGTERM"
status=0
wait "$runner_pid" || status=$?
runner_pid=""
[ "$(sql "SELECT state FROM runner.jobs WHERE id = $id")" = available ] ||
    fail "the slow job was not released at the shutdown deadline"
note "workload done in $(($(date +%s) - start)) s; runner exit status $status"

# The sentinel may still be writing its log for a moment after the runner exits.
sleep 1
errors=0
definite=0
execd=0
for f in "$work"/vg-*; do
    [ -e "$f" ] || continue
    e=$(sed -nE 's/.*ERROR SUMMARY: ([0-9,]+) errors.*/\1/p' "$f" | tr -d , | tail -n 1)
    d=$(sed -nE 's/.*definitely lost: ([0-9,]+) bytes.*/\1/p' "$f" | tr -d , | tail -n 1)
    if [ -z "$e" ]; then
        # a job child, forked under valgrind, left it at execve (--trace-children=no): its
        # log holds only the header
        if ! grep -qvE '^==[0-9]+== (Memcheck, a memory error detector|Copyright|Using Valgrind|Command:|Parent PID:|$)' "$f"; then
            execd=$((execd + 1))
            continue
        fi
        echo "== $(basename "$f"): no summary"
        cat "$f"
        errors=$((errors + 1))
        continue
    fi
    echo "== $(basename "$f"): errors $e, definitely lost ${d:-0} bytes"
    if [ "$e" -ne 0 ] || [ "${d:-0}" -ne 0 ]; then
        cat "$f"
    fi
    errors=$((errors + e))
    definite=$((definite + ${d:-0}))
done
echo "memcheck: jobs=$njobs processes_checked=$(($(find "$work" -name 'vg-*' | wc -l) - execd)) job_children_skipped=$execd errors=$errors definitely_lost_bytes=$definite runner_exit=$status elapsed_s=$(($(date +%s) - start))"
[ "$status" -eq 0 ] || fail "runner run exited $status (valgrind --error-exitcode=1: errors)"
[ "$errors" -eq 0 ] && [ "$definite" -eq 0 ]
