#!/bin/sh
# exec_pidfile.sh - publishes its pid in $PIDFILE (atomically), then becomes `sleep 30`.
# With EXEC_IGNORE_TERM set, SIGTERM is ignored (and stays ignored across the exec).
if [ -n "$EXEC_IGNORE_TERM" ]; then
    trap '' TERM
fi
echo $$ > "$PIDFILE.tmp"
mv "$PIDFILE.tmp" "$PIDFILE"
exec sleep 30
