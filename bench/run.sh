#!/usr/bin/env bash
# `make bench`: every benchmark, one after another. Each writes its table to
# bench/out/ and prints it; copy the tables, with the command, into bench/RESULTS.md.
# Run one part alone with `bash bench/<part>/run.sh`. The soak runs last and longest
# (SOAK_MINUTES, 30 by default: `SOAK_MINUTES=5 make bench` for a short one).
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
for part in gateway ratelimit scaleout engine embeddings grammar engines sandbox jobs web upgrade soak; do
  script=bench/$part/run.sh
  [ -f "$script" ] || continue
  echo "== bench/$part"
  bash "$script" || { echo "bench/$part failed" >&2; status=1; }
  if [ "$part" = gateway ]; then
    echo "== bench/gateway/instructions.sh (instructions per request)"
    for args in "hearth" "hearth stream" "min-proxy"; do
      bash bench/gateway/instructions.sh $args || { echo "instructions.sh $args failed" >&2; status=1; }
    done
    echo "== bench/gateway/budget.sh (a key's token budget: its cost, and no token lost)"
    bash bench/gateway/budget.sh || { echo "bench/gateway/budget.sh failed" >&2; status=1; }
  fi
done
exit $status
