#!/usr/bin/env bash
# Rate limits counted in Redis vs in the process: the same Hearth build and load,
# side by side in one run, against the canned nginx upstream of bench/gateway.
#   local   [limits] backend = "local"  (token buckets in the process)
#   redis   [limits] backend = "redis"  (Lua scripts on a private redis-server on
#           loopback, as a replica would use a Redis next to it; the admissions and
#           settlements that arrive together share one script call)
# Both serve one key whose limits are far above the load (so every request pays for
# the check and none is refused: refusals would be cheaper and flatter the result).
# Throughput at saturation (wrk -c64), non-streaming, median of ROUNDS interleaved
# rounds of DUR; the ratio is the median of per-round ratios.
# Target: redis >= 0.8x local.
# Usage: bash bench/ratelimit/run.sh   (writes bench/out/ratelimit.md)
#        HEARTH_BIN=/path/to/hearth bash bench/ratelimit/run.sh   measures that build
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
source bench/lib.sh
source bench/gateway/common.sh
OUT=$ROOT/bench/out; mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  [ -f "$WORK/upstream.pid" ] && nginx -c "$WORK/upstream.conf" -s stop 2>/dev/null
  for p in "${PIDS[@]}"; do stop "$p"; done
  rm -rf "$WORK"
}
trap cleanup EXIT
DUR=${DUR:-5s}
ROUNDS=${ROUNDS:-5}

for p in wrk nginx redis-server; do
  command -v $p >/dev/null || { apt-get install -y -qq wrk nginx-light redis-server >/dev/null; break; }
done
# HEARTH_BIN: measure that build of hearth instead of building this checkout's.
if [ -z "${HEARTH_BIN:-}" ]; then
  cargo build --release --locked --bin hearth >/dev/null
  TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  HEARTH_BIN=$TARGET/release/hearth
fi

UP=$(free_port); UPS=$(free_port)
canned_upstream_conf "$WORK" "$UP" "$UPS" > "$WORK/upstream.conf"
nginx -c "$WORK/upstream.conf" -e "$WORK/nginx-error.log"

RP=$(free_port)
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" --logfile "$WORK/redis.log" &
PIDS+=($!)
RPID=$!
for _ in $(seq 1 100); do redis-cli -p "$RP" ping >/dev/null 2>&1 && break; sleep 0.1; done

KEY=sk-bench-$(python3 -c 'import secrets; print(secrets.token_hex(24))')
declare -A PORT HPID
for backend in local redis; do
  PORT[$backend]=$(free_port)
  {
    hearth_toml "127.0.0.1:${PORT[$backend]}" "$WORK/data-$backend" "canned=http://127.0.0.1:$UP/v1"
    printf '[limits]\nbackend = "%s"\n' "$backend"
    [ "$backend" = redis ] && printf 'redis_url = "redis://127.0.0.1:%s"\non_redis_error = "closed"\n' "$RP"
    printf '[[keys]]\nname = "bench"\nkey_env = "BENCH_KEY"\nrpm = 1000000000\ntpm = 1000000000000\n'
  } > "$WORK/$backend.toml"
  BENCH_KEY=$KEY "$HEARTH_BIN" serve --config "$WORK/$backend.toml" > "$WORK/$backend.log" 2>&1 &
  PIDS+=($!)
  HPID[$backend]=$!
  wait_ready "http://127.0.0.1:${PORT[$backend]}/ready" "${PIDS[-1]}" || { cat "$WORK/$backend.log" >&2; exit 1; }
done

cat > "$WORK/sat.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
wrk.body = '{"model":"canned","messages":[{"role":"user","content":"Say hello"}]}'
LUA
# A request through each, checked: 200 and the quota headers (the limiter ran).
for backend in local redis; do
  curl -fsS -D "$WORK/h.txt" -o /dev/null -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d '{"model":"canned","messages":[{"role":"user","content":"hi"}]}' "http://127.0.0.1:${PORT[$backend]}/v1/chat/completions"
  grep -qi '^x-ratelimit-remaining-requests' "$WORK/h.txt" || { echo "$backend: no quota headers" >&2; exit 1; }
done

# CPU time (user + system, in clock ticks) of a process so far.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A RUNS TICKS REQS
for round in $(seq 1 "$ROUNDS"); do
  order="local redis"; [ $((round % 2)) = 0 ] && order="redis local"
  for backend in $order; do
    h0=$(ticks "${HPID[$backend]}"); r0=$(ticks "$RPID")
    wrk -t2 -c64 -d"$DUR" -s "$WORK/sat.lua" "http://127.0.0.1:${PORT[$backend]}/v1/chat/completions" > "$WORK/sat.txt"
    h1=$(ticks "${HPID[$backend]}"); r1=$(ticks "$RPID")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/sat.txt")
    [ -z "$non2xx" ] || { echo "$backend: $non2xx answers were not 2xx" >&2; exit 1; }
    RUNS[$backend]+=" $(rps < "$WORK/sat.txt")"
    TICKS[$backend]=$(( ${TICKS[$backend]:-0} + h1 - h0 ))
    TICKS[$backend-redis]=$(( ${TICKS[$backend-redis]:-0} + r1 - r0 ))
    REQS[$backend]=$(( ${REQS[$backend]:-0} + $(awk '/requests in/ {print $1}' "$WORK/sat.txt") ))
    echo "round $round $backend: ${RUNS[$backend]##* } req/s" >&2
  done
done
HZ=$(getconf CLK_TCK)
CMDS=$(redis-cli -p "$RP" info commandstats | awk -F'[:=,]' '/cmdstat_evalsha/ {print $3}')

RES="$OUT/ratelimit.md"
python3 - "${RUNS[local]}" "${RUNS[redis]}" "$CMDS" \
  "${TICKS[local]} ${REQS[local]} ${TICKS[redis]} ${REQS[redis]} ${TICKS[redis-redis]} $HZ" > "$RES" <<'PY'
import statistics as st, sys
l, r = ([float(x) for x in a.split()] for a in sys.argv[1:3])
tl, nl, tr, nr, trr, hz = (float(x) for x in sys.argv[4].split())
us = lambda t, n: t / hz * 1e6 / n
ratios = [b / a for a, b in zip(l, r)]
print("| limits counted | req/s at saturation (median) | per round |")
print("| --- | ---: | --- |")
print(f"| in the process (local) | {st.median(l):.0f} | {' '.join(f'{x:.0f}' for x in l)} |")
print(f"| in Redis | {st.median(r):.0f} | {' '.join(f'{x:.0f}' for x in r)} |")
print()
calls = float(sys.argv[3] or 0)
per_call = f" ({nr / calls:.1f} requests per call)" if calls else ""
print(f"Redis-backed / local: {st.median(ratios):.2f}x (per round: {' '.join(f'{x:.2f}' for x in ratios)}); target >= 0.8x. "
      f"Script calls run by Redis: {calls:.0f}{per_call}.")
print()
print("| CPU time per request | µs |")
print("| --- | ---: |")
print(f"| Hearth, limits local | {us(tl, nl):.1f} |")
print(f"| Hearth, limits in Redis | {us(tr, nr):.1f} |")
print(f"| redis-server (its scripts and connections) | {us(trr, nr):.1f} |")
PY
cat "$RES"
