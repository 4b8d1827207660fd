# workload-lib.sh - shared by scripts/memcheck.sh and scripts/tsan.sh: a fresh database
# for one workload, its cleanup, and small helpers. Source it after setting
#   me    the script's short name (messages, temp dir and database names)
#   keep  1 to keep the work directory after a successful run
# shellcheck shell=bash disable=SC2154 # me and keep come from the sourcing script

die() {
    echo "$me.sh: $*" >&2
    exit 2
}
note() {
    echo "$me.sh: $*" >&2
}
fail() {
    echo "$me.sh: FAILED: $*" >&2
    echo "---- runner log (last 60 lines)" >&2
    tail -n 60 "$work/runner.log" >&2 || true
    exit 1
}

# find_psql sets psql_bin: psql on PATH or beside the test server's pg_ctl.
find_psql() {
    psql_bin=psql
    if ! command -v psql >/dev/null 2>&1; then
        psql_bin="$(dirname "${RUNNER_TEST_PGCTL:-/usr/bin/pg_ctl}")/psql"
        [ -x "$psql_bin" ] || die "psql not found"
    fi
}

# workload_start makes the work directory, names a fresh database on the server of
# RUNNER_TEST_DATABASE_URL (url) and installs the cleanup on exit.
workload_start() {
    work=$(mktemp -d "${TMPDIR:-/tmp}/runner-$me.XXXXXX")
    db="runner_${me}_$$"
    base_url=$RUNNER_TEST_DATABASE_URL
    runner_pid=""
    db_created=0
    url=$(with_db "$db")
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# with_db prints the URL of database $1 on the server of $base_url.
with_db() {
    if [[ "$base_url" =~ ^(postgres(ql)?://[^/?]*)(/[^?]*)?(\?.*)?$ ]]; then
        printf '%s/%s%s' "${BASH_REMATCH[1]}" "$1" "${BASH_REMATCH[4]}"
    else
        printf '%s dbname=%s' "$base_url" "$1"
    fi
}

sql() {
    "$psql_bin" "$url" -X -q -tA -v ON_ERROR_STOP=1 -c "$1"
}

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$runner_pid" ] && kill -0 "$runner_pid" 2>/dev/null; then
        kill -KILL "$runner_pid" 2>/dev/null || true
        wait "$runner_pid" 2>/dev/null || true
    fi
    if [ "$db_created" = 1 ]; then
        "$psql_bin" "$base_url" -X -q -v ON_ERROR_STOP=1 \
            -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    if [ "$keep" = 1 ] || [ "$status" -ne 0 ]; then
        note "kept $work"
    else
        rm -rf "$work"
    fi
    exit "$status"
}

# wait_sql waits at most $1 seconds until the query $2 returns t.
wait_sql() {
    local limit=$1 query=$2 i
    for ((i = 0; i < limit * 10; i++)); do
        if [ "$(sql "$query" 2>/dev/null || true)" = t ]; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

