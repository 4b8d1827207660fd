#!/usr/bin/env python3
"""worker.py - a runner worker process in Python 3, standard library only.

Reads one job per line on stdin and writes one answer per line on stdout (see "Worker
processes" in README.md). Put the job's logic in handle(). Configure it as
    worker: ["python3", "examples/workers/worker.py"]
"""
import json
import sys
import threading


def handle(job, cancelled):
    """Runs one job: return normally = done, raise = failed attempt. job["args"] is the
    parsed args; long work should check cancelled (a threading.Event) and give up."""
    args = job["args"] if isinstance(job["args"], dict) else {}
    if cancelled.wait(args.get("sleep_ms", 0) / 1000):
        raise RuntimeError("cancelled")
    if "fail" in args:
        raise RuntimeError(str(args["fail"]))


def run(job, cancelled):
    try:
        handle(job, cancelled)
        answer = {"id": job["id"], "ok": True}
    except Exception as e:  # any failure of the job is its failed attempt
        answer = {"id": job["id"], "error": f"{type(e).__name__}: {e}"}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


def main():
    # The job runs on a thread so that this loop can read a {"cancel": id} meanwhile.
    running, cancel = None, {}
    for line in sys.stdin:
        msg = json.loads(line)
        if "cancel" in msg:
            if msg["cancel"] in cancel:  # a stale cancel (job already answered) is skipped
                cancel[msg["cancel"]].set()
            continue
        if running:
            running.join()
        cancel = {msg["id"]: threading.Event()}
        running = threading.Thread(target=run, args=(msg, cancel[msg["id"]]))
        running.start()
    if running:  # EOF on stdin: finish the job in hand, then exit
        running.join()


if __name__ == "__main__":
    main()
