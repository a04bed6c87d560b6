#!/usr/bin/env bash
# What a key's token budget costs: the same load, in one run, against two Hearth
# servers in front of the canned nginx upstream (bench/gateway/common.sh):
#   plain    the client's key has no limits
#   budget   the client's key has a budget it never reaches (budget_tokens, a day),
#            so every request is checked against it and every answer's tokens are
#            counted and written to the server's SQLite file
# Saturation (wrk -t2 -c64 for DUR) for non-streaming and streaming requests, ROUNDS
# rounds that alternate which server goes first; medians, and the median of the
# per-round ratios budget/plain. Then the budget server is stopped (SIGTERM: it
# writes what it still holds) and the tokens in its key_usage table must equal the
# tokens it settled (its hearth_key_tokens_total): none lost under load. (The canned
# stream has no usage chunk, as an upstream that ignores `stream_options` sends
# none: the streaming rows measure the check alone.)
# Usage: bash bench/gateway/budget.sh        (writes bench/out/gateway-budget.md)
#        HEARTH_BIN=/path/to/hearth bash bench/gateway/budget.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/bench/out; mkdir -p "$OUT"
WORK=$(mktemp -d)
cleanup() {
  [ -f "$WORK/upstream.pid" ] && nginx -c "$WORK/upstream.conf" -s stop 2>/dev/null
  kill $(jobs -p) 2>/dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
DUR=${DUR:-5s}
ROUNDS=${ROUNDS:-5}

for p in wrk nginx; do command -v $p >/dev/null || { apt-get install -y -qq wrk nginx-light >/dev/null; break; }; done
cargo build --release --locked --bin hearth >/dev/null
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
HEARTH=${HEARTH_BIN:-$TARGET/release/hearth}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

source "$ROOT/bench/lib.sh"
source "$ROOT/bench/gateway/common.sh"

UP=$(free_port); UPS=$(free_port); PLAIN=$(free_port); BUDGET=$(free_port)
canned_upstream_conf "$WORK" $UP $UPS > "$WORK/upstream.conf"
nginx -c "$WORK/upstream.conf" -e "$WORK/nginx-error.log"

KEY=sk-bench-$(python3 -c 'import secrets; print(secrets.token_hex(24))')
for which in plain budget; do
  port=$PLAIN; [ $which = budget ] && port=$BUDGET
  hearth_toml "127.0.0.1:$port" "$WORK/data-$which" "canned=http://127.0.0.1:$UP/v1" \
    "canned-stream=http://127.0.0.1:$UPS/v1" > "$WORK/$which.toml"
  printf '[[keys]]\nname = "bench"\nkey_env = "BENCH_KEY"\n' >> "$WORK/$which.toml"
  [ $which = budget ] && printf 'budget_tokens = 1000000000000\nbudget_period = "day"\n' >> "$WORK/$which.toml"
  BENCH_KEY=$KEY "$HEARTH" serve --config "$WORK/$which.toml" > "$WORK/$which.log" 2>&1 &
  echo $! > "$WORK/$which.pid"
  wait_ready "http://127.0.0.1:$port/health" "$(cat "$WORK/$which.pid")" || { echo "hearth ($which) did not start: $(cat "$WORK/$which.log")" >&2; exit 1; }
done

body() { printf '{"model":"%s","messages":[{"role":"user","content":"Say hello"}]%s}' "$1" "$2"; }
lua() {
  cat <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
wrk.body = '$1'
LUA
}
med() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

RES="$OUT/gateway-budget.md"
{
  echo "| mode | plain req/s | budget req/s | budget / plain (median of per-round ratios) |"
  echo "| --- | ---: | ---: | ---: |"
} > "$RES"
ANSWERED=0
for mode in non-streaming streaming; do
  if [ $mode = streaming ]; then extra=',"stream":true'; model=canned-stream; else extra=''; model=canned; fi
  lua "$(body $model "$extra")" > "$WORK/sat.lua"
  declare -A R=( [plain]="" [budget]="" ); ratios=""
  for round in $(seq 1 "$ROUNDS"); do
    order="plain budget"; [ $((round % 2)) = 0 ] && order="budget plain"
    declare -A now=()
    for which in $order; do
      port=$PLAIN; [ $which = budget ] && port=$BUDGET
      out=$(wrk -t2 -c64 -d"$DUR" -s "$WORK/sat.lua" "http://127.0.0.1:$port/v1/chat/completions")
      if grep -q "Non-2xx" <<<"$out"; then echo "$which answered errors: $out" >&2; exit 1; fi
      now[$which]=$(rps <<<"$out")
      R[$which]="${R[$which]} ${now[$which]}"
      if [ $which = budget ] && [ $mode = non-streaming ]; then
        ANSWERED=$((ANSWERED + $(awk '/requests in/ {print $1}' <<<"$out")))
      fi
    done
    ratios="$ratios $(python3 -c "print(round(${now[budget]} / ${now[plain]}, 3))")"
    echo "$mode round $round: plain ${now[plain]}, budget ${now[budget]} req/s" >&2
  done
  echo "| $mode | $(med <<<"${R[plain]}") | $(med <<<"${R[budget]}") | $(med <<<"$ratios") |" >> "$RES"
done

# The tokens the budget server settled (its own metric), then, once it is stopped
# (it writes what it holds), what its database counted: the same, none lost.
SETTLED=$(curl -fsS -H "Authorization: Bearer $KEY" "http://127.0.0.1:$BUDGET/metrics" |
  awk '/^hearth_key_tokens_total\{.*key="bench"/ {s += $NF} END {printf "%d", s}')
stop "$(cat "$WORK/budget.pid")"
COUNTED=$(python3 -c "
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(c.execute('SELECT COALESCE(SUM(tokens), 0) FROM key_usage WHERE key = ?', ('bench',)).fetchone()[0])" "$WORK/data-budget/hearth.db")
{
  echo ""
  echo "Tokens settled (hearth_key_tokens_total): $SETTLED; counted in key_usage after the stop: $COUNTED (wrk saw $ANSWERED non-streaming answers: $((13 * ANSWERED)) tokens, the rest were in flight at the end of a run)."
} >> "$RES"
cat "$RES"
[ "$SETTLED" -gt 0 ] && [ "$COUNTED" = "$SETTLED" ] || { echo "the budget's count lost tokens" >&2; exit 1; }
