#!/usr/bin/env bash
# `make logscan`: no test key in any log a test run wrote (issue 20: "keys never
# logged, including in panic messages and error bodies").
#
# The cargo tests of `make unit` run with LOGSCAN_ROOT=ROOT: the in-process
# servers of crates/hearth-server/tests log (DEBUG, and panic messages) to files
# under ROOT/hearth-server/, and the CLI tests keep the logs of the `hearth serve`
# they ran (its log folder and its stdout) under ROOT/hearth-cli/. This greps them
# all for
#   - every test key: each `sk-...` literal in the tests' sources and the testkit
#     (a test key that does not start with `sk-` is not looked for), and
#   - anything shaped like a key (`sk-` and 4 more key characters, not inside a
#     word), so a key made at run time is caught as well,
# and fails naming file and line. It also fails when ROOT holds no log of either
# kind: a scan of nothing would pass by seeing nothing.
# Usage: bash mk/logscan.sh ROOT
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:?usage: mk/logscan.sh LOG_ROOT}

if [ ! -d "$root" ]; then
  echo "logscan: $root does not exist: run the cargo tests first (make unit sets LOGSCAN_ROOT)" >&2
  exit 1
fi
for part in hearth-server hearth-cli; do
  if [ -z "$(find "$root/$part" -type f -size +0c -print -quit 2>/dev/null)" ]; then
    echo "logscan: no log under $root/$part: the tests wrote none there (is LOGSCAN_ROOT passed on? did the helpers in crates/$part/tests stop keeping logs?)" >&2
    exit 1
  fi
done

keys=$(mktemp)
trap 'rm -f "$keys"' EXIT
grep -rhoE --include='*.rs' 'sk-[A-Za-z0-9_-]{4,}' crates/*/tests crates/hearth-testkit/src | sort -u > "$keys"
if [ ! -s "$keys" ]; then
  echo "logscan: found no test keys (sk-...) in crates/*/tests: the scan would look for nothing" >&2
  exit 1
fi

files=$(find "$root" -type f | wc -l)
bytes=$(du -sk "$root" | cut -f1)
status=0
# Known keys, anywhere in a line (a key glued to other text is still a leak).
if grep -rnF -f "$keys" "$root"; then
  echo "logscan: a test key is in the logs above (file:line:text)" >&2
  status=1
fi
# Anything shaped like a key.
if grep -rnE '(^|[^A-Za-z0-9_])sk-[A-Za-z0-9_-]{4,}' "$root"; then
  echo "logscan: something shaped like a key (sk-...) is in the logs above (file:line:text)" >&2
  status=1
fi
if [ "$status" = 0 ]; then
  echo "logscan: $(wc -l < "$keys") test keys, none in $files log files ($bytes KiB) under $root"
fi
exit "$status"
