#!/bin/sh
# workerproc_test.sh - a worker for tests/test_workerproc.c. What it does with a job is
# chosen by the job's args, {"do":"<behaviour>"}. It logs "<id> <version> <pid>" for each
# job and "exit <pid>" when it leaves on EOF to $WORKER_LOG; VERSION may be set by a
# wrapper that sources this file.
: "${VERSION:=1}"

note() {
    if [ -n "$WORKER_LOG" ]; then echo "$*" >>"$WORKER_LOG"; fi
}
ok() {
    printf '{"id":%s,"ok":true}\n' "$id"
}

while IFS= read -r line; do
    case $line in '{"cancel":'*) continue ;; esac
    id=${line#'{"id":'}
    id=${id%%,*}
    args=${line#*,\"args\":}
    note "$id $VERSION $$"
    case $args in
    *'"do":"ok"'*) ok ;;
    *'"do":"echo"'*) note "line $line"; ok ;;
    *'"do":"error"'*) printf '{"id":%s,"error":"it failed"}\n' "$id" ;;
    *'"do":"retry"'*) printf '{"id":%s,"error":"try later","retry_in_ms":1234}\n' "$id" ;;
    *'"do":"discard"'*) printf '{"id":%s,"error":"hopeless","discard":true}\n' "$id" ;;
    *'"do":"answer_cancel"'*)
        IFS= read -r next
        case $next in '{"cancel":'"$id"'}') printf '{"id":%s,"error":"stopped"}\n' "$id" ;; esac ;;
    *'"do":"hang"'*) sleep 60 ;;
    *'"do":"hang_with_child"'*) sleep 60 & note "child $!"; wait ;;
    *'"do":"hang_hard"'*) trap '' TERM; sleep 60 ;;
    *'"do":"crash"'*) echo "boom on job $id" >&2; exit 3 ;;
    *'"do":"garbage"'*) echo "this is not json" ;;
    *'"do":"wrong_id"'*) printf '{"id":%s,"ok":true}\n' "$((id + 1))" ;;
    *'"do":"long"'*) head -c 1100000 /dev/zero | tr '\0' x; echo ;;
    *'"do":"stderr"'*) echo "note from job $id" >&2; ok ;;
    *'"do":"sleep"'*) sleep 0.3; ok ;;
    *'"do":"two_answers"'*) ok; ok ;;
    *'"do":"exit_after"'*) ok; exit 0 ;;
    *'"do":"not_object"'*) echo '[1, 2]' ;;
    *) printf '{"id":%s,"error":"unknown behaviour"}\n' "$id" ;;
    esac
done
note "exit $$"
