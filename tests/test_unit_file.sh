#!/usr/bin/env bash
# test_unit_file.sh - checks dist/runner.service with systemd-analyze, and the sysusers.d
# entry with systemd-sysusers, without a running systemd (root in a container is fine).
#
#   test_unit_file.sh BUILT_UNIT SYSUSERS_FILE      (RUNNER_BIN: the built binary)
#
# `systemd-analyze verify` insists that ExecStart's binary exists, so it checks a copy
# whose ExecStart names the binary just built instead of the install path. It exits 0 on
# mere warnings (an unknown key, a bad value "ignoring"), so any output at all fails the
# test; two broken copies show that this environment reports such problems at all.
set -euo pipefail

unit=${1:?usage: test_unit_file.sh BUILT_UNIT SYSUSERS_FILE}
sysusers=$(realpath "${2:?usage: test_unit_file.sh BUILT_UNIT SYSUSERS_FILE}")
bin=${RUNNER_BIN:?RUNNER_BIN is not set}

fail() {
    echo "test_unit_file: $*" >&2
    exit 1
}

for tool in systemd-analyze systemd-sysusers; do
    command -v "$tool" >/dev/null 2>&1 ||
        fail "$tool not found: install the Debian package systemd (dev.sh and .ci/run do)"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/runner-unit.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/ok" "$tmp/bad" "$tmp/missing" "$tmp/root"

# verify DIR: systemd-analyze verify on DIR/runner.service (the file name is the unit
# name, so every copy lives in its own directory). Documentation=man:runner(1) is not
# looked up (--man=no): the page is not installed where man would find it.
verify() {
    (cd "$1" && systemd-analyze verify --man=no ./runner.service) >"$1/out" 2>&1
}

grep -q "^ExecStart=/.*/runner --config /etc/runner/runner.yaml run$" "$unit" ||
    fail "$unit: ExecStart is not the configured binary with --config /etc/runner/runner.yaml run"
sed "s|^ExecStart=[^ ]*|ExecStart=$bin|" "$unit" >"$tmp/ok/runner.service"
grep -q "^ExecStart=$bin " "$tmp/ok/runner.service" || fail "could not substitute ExecStart"

if ! verify "$tmp/ok" || [ -s "$tmp/ok/out" ]; then
    cat "$tmp/ok/out" >&2
    fail "systemd-analyze verify found problems in $unit"
fi

# the checker is live: a bad value and an unknown key are reported ...
sed -e 's/^Type=notify$/Type=notified/' -e 's/^\[Install\]$/[Install]\nWantedByy=multi-user.target/' \
    "$tmp/ok/runner.service" >"$tmp/bad/runner.service"
verify "$tmp/bad" || true
grep -q "notified" "$tmp/bad/out" && grep -q "WantedByy" "$tmp/bad/out" ||
    fail "systemd-analyze verify did not report a bad Type= and an unknown key: $(cat "$tmp/bad/out")"
# ... and so is a missing binary, which is why the copy names the built one
sed "s|^ExecStart=[^ ]*|ExecStart=$tmp/no-such-runner|" "$unit" >"$tmp/missing/runner.service"
if verify "$tmp/missing"; then
    fail "systemd-analyze verify accepted an ExecStart binary that does not exist"
fi

# the settings the shutdown protocol and the README rely on
for want in Type=notify NotifyAccess=main KillMode=mixed KillSignal=SIGTERM Restart=always \
    NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes User=runner; do
    grep -qx "$want" "$unit" || fail "$unit lacks $want"
done
stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s$/\1/p' "$unit")
# shutdown.grace 20 s + shutdown.kill_after 5 s + 1.5 s to the last-resort exit + 2 s
[ -n "$stop" ] && [ "$stop" -ge 29 ] || fail "TimeoutStopSec=${stop:-?} is below the default shutdown budget (28.5 s)"
watchdog=$(sed -n 's/^WatchdogSec=\([0-9]*\)s$/\1/p' "$unit")
[ -n "$watchdog" ] && [ "$watchdog" -ge 2 ] || fail "WatchdogSec= missing or too short"

# the sandbox stays tight: systemd's own exposure score (0..100 here) at most 3.5
(cd "$tmp/ok" && systemd-analyze security --offline=yes --threshold=35 ./runner.service) \
    >"$tmp/security" 2>&1 || {
    grep -E "Overall|✗" "$tmp/security" >&2 || cat "$tmp/security" >&2
    fail "the unit's sandbox is weaker than it was (exposure above 3.5)"
}

# the sysusers.d entry creates the user and group the unit runs as, with its home the
# StateDirectory=
mkdir -p "$tmp/root/etc"
systemd-sysusers --root="$tmp/root" "$sysusers" >"$tmp/sysusers.out" 2>&1 ||
    fail "systemd-sysusers rejected $sysusers: $(cat "$tmp/sysusers.out")"
grep -q '^runner:x:[0-9]*:[0-9]*:[^:]*:/var/lib/runner:' "$tmp/root/etc/passwd" ||
    fail "$sysusers did not create the user runner with home /var/lib/runner"
grep -q '^runner:' "$tmp/root/etc/group" || fail "$sysusers did not create the group runner"
grep -qx 'StateDirectory=runner' "$unit" && grep -qx 'WorkingDirectory=/var/lib/runner' "$unit" ||
    fail "$unit: StateDirectory/WorkingDirectory do not match the user's home"
echo "test_unit_file: $unit verified"
