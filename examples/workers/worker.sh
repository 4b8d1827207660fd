#!/bin/sh
# worker.sh - a runner worker process in POSIX sh: reads one job per line on stdin and
# writes one answer per line on stdout (see "Worker processes" in README.md).
#
#   kinds:
#     hello:
#       worker: ["sh", "examples/workers/worker.sh"]
#       processes: 4
#
# Limitation: sh has no JSON parser, so this relies on the layout the runner promises
# for job lines: compact JSON with "id" first and "args" last,
#   {"id":42,"kind":"hello","queue":"default","attempt":1,"deadline_ms":null,"args":{...}}
# It finds the id and hands the args to handle() as JSON text, but it cannot read fields
# inside args reliably (pattern matching on the text, as below, is a sketch; use jq or
# a real language for more). Error texts it writes must not contain " or \.
# Jobs run one at a time in the foreground, so a {"cancel":id} is only read once the job
# has ended: then it is stale and skipped. A job that must stop on cancel needs a real
# language (see worker.py); here the runner's SIGTERM, then SIGKILL, does it.

# handle runs one job: $1 is the id, $2 the args as JSON text. Status 0 means done.
handle() {
    case $2 in
    *'"fail":true'*) return 3 ;;
    esac
    return 0
}

while IFS= read -r line; do
    case $line in
    '{"cancel":'*) continue ;;
    '{"id":'*) ;;
    *) echo "worker.sh: not a job line: $line" >&2; exit 1 ;;
    esac
    id=${line#'{"id":'}
    id=${id%%,*}
    args=${line#*,\"args\":}
    args=${args%\}}
    handle "$id" "$args"
    status=$?
    if [ "$status" -eq 0 ]; then
        printf '{"id":%s,"ok":true}\n' "$id"
    else
        printf '{"id":%s,"error":"handle failed with status %s"}\n' "$id" "$status"
    fi
done
# EOF on stdin: the runner wants us to exit.
exit 0
