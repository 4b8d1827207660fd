#!/usr/bin/env bash
# browser-test.sh - the dashboard's browser test: tests/browser/test_web.py drives a real
# `runner web` with headless Chromium (Debian: chromium, chromium-driver, python3-selenium)
# against a throwaway PostgreSQL (tests/with-postgres.sh, or RUNNER_TEST_DATABASE_URL).
# Screenshots go to RUNNER_BROWSER_SHOTS (default build/browser-shots/). Bounded: the
# whole run is killed after RUNNER_BROWSER_TIMEOUT seconds (default 300).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

export RUNNER_BIN=${RUNNER_BIN:-$root/build/runner}
export RUNNER_BROWSER_SHOTS=${RUNNER_BROWSER_SHOTS:-$root/build/browser-shots}
[ -x "$RUNNER_BIN" ] || { echo "browser-test.sh: $RUNNER_BIN not built (ninja -C build)" >&2; exit 1; }
for tool in chromium chromedriver openssl psql; do
    command -v "$tool" >/dev/null 2>&1 ||
        { echo "browser-test.sh: $tool not found (apt-get install chromium chromium-driver python3-selenium)" >&2; exit 1; }
done
# Debian's python3 (not a pyenv or venv one) has python3-selenium
python=/usr/bin/python3
[ -x "$python" ] || python=python3
"$python" -c 'import selenium' 2>/dev/null ||
    { echo "browser-test.sh: python3-selenium is not installed for $python" >&2; exit 1; }

exec timeout --kill-after=10 "${RUNNER_BROWSER_TIMEOUT:-300}" \
    tests/with-postgres.sh "$python" tests/browser/test_web.py
