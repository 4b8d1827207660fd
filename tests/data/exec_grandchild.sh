#!/bin/sh
# exec_grandchild.sh - leaves a grandchild that ignores SIGTERM (its pid in $PIDFILE),
# then waits for it: SIGTERM kills this shell, only a group SIGKILL kills the grandchild.
sh -c 'trap "" TERM; echo $$ > "$PIDFILE.tmp"; mv "$PIDFILE.tmp" "$PIDFILE"; exec sleep 30' &
wait
