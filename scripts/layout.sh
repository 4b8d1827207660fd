#!/usr/bin/env bash
# layout.sh - the README's list of sources, made from each file's purpose line.
#
#   scripts/layout.sh           check: README.md lists every runner/*.c and include/*.h
#                               with the purpose its first comment gives (exit 1 if not)
#   scripts/layout.sh --write   rewrite that list in README.md
#
# The list sits between the lines <!-- sources --> and <!-- /sources --> of README.md's
# Layout section. A file's purpose is the first sentence of its opening comment, after
# "NAME - ". scripts/lint.sh runs the check, so the README cannot drift from the code.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode=${1:-check}
case $mode in
check | --write) ;;
*) echo "usage: scripts/layout.sh [--write]" >&2; exit 2 ;;
esac

python3 - "$mode" <<'PY'
import glob, re, sys
mode = sys.argv[1]

def purpose(path):
    text = open(path, encoding="utf-8").read()
    m = re.match(r"/\*\s*(\S+)\s+-\s+(.*?)(\*/|\n\s*\*\s*\n)", text, re.S)
    if not m:
        sys.exit(f"layout.sh: {path} does not open with /* NAME - purpose */")
    words = " ".join(l.strip().lstrip("*").strip() for l in m.group(2).splitlines())
    # the first sentence: up to a period that ends a word and is followed by space or end
    s = re.split(r"(?<=[a-z0-9)\"'`])\.(\s|$)", words, maxsplit=1)[0].strip()
    return s.rstrip(".")

files = sorted(glob.glob("include/*.h")) + sorted(glob.glob("runner/*.c"))
width = max(len(f) for f in files) + 2
block = "```\n" + "".join(f"{f.ljust(width)}{purpose(f)}\n" for f in files) + "```\n"
readme = open("README.md", encoding="utf-8").read()
m = re.search(r"(<!-- sources -->\n)(.*?)(<!-- /sources -->)", readme, re.S)
if not m:
    sys.exit("layout.sh: README.md has no <!-- sources --> ... <!-- /sources --> block")
if mode == "--write":
    open("README.md", "w", encoding="utf-8").write(readme[: m.start(2)] + block + readme[m.end(2):])
elif m.group(2) != block:
    sys.stderr.write("layout.sh: README.md's list of sources differs from the files' purpose "
                     "lines; run scripts/layout.sh --write\n")
    sys.exit(1)
PY
