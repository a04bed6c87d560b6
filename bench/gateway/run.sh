#!/usr/bin/env bash
# Gateway benchmark: the same load, in one run, against
#   direct   the upstream itself (nginx serving a canned completion: never the bottleneck)
#   hearth   Hearth in front of it
#   nginx    nginx proxy_pass in front of it (the practical floor for a proxy)
#   litellm  LiteLLM proxy (one worker) in front of it (what users pick today)
#   axum-min the least proxy built on the libraries Hearth started from (hearth-testkit's
#            min-proxy: axum + hyper-util's pooled client + tokio, one event loop per
#            core as `hearth serve` runs; no parsing, auth, limits, logs or metrics),
#            to tell the libraries' cost from Hearth's own
# for non-streaming and streaming requests: throughput at saturation (wrk, 64
# connections), p50/p99 latency at a paced ~1,000 req/s, Hearth's CPU time per
# request, and Hearth's RSS idle and with 1,000 open streams.
# Each figure is the median of ROUNDS (5) interleaved rounds of DUR (5s) runs. The
# ratios to nginx are medians of per-round ratios: Hearth and nginx run back to back
# in each round, so a slow spell of this shared VM (throughput here swings by a
# third within a minute, for every target alike) falls on both.
# Usage: bash bench/gateway/run.sh [--no-litellm]   (writes bench/out/gateway.md)
#        HEARTH_BIN=/path/to/hearth bash bench/gateway/run.sh   measures that build instead
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/bench/out; mkdir -p "$OUT"
WORK=$(mktemp -d)
cleanup() {
  for c in upstream proxy; do
    [ -f "$WORK/$c.pid" ] && nginx -c "$WORK/$c.conf" -s stop 2>/dev/null
  done
  kill $(jobs -p) 2>/dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
DUR=${DUR:-5s}
ROUNDS=${ROUNDS:-5}
LITELLM=1; [ "${1:-}" = "--no-litellm" ] && LITELLM=0

for p in wrk nginx; do command -v $p >/dev/null || { apt-get install -y -qq wrk nginx-light >/dev/null; break; }; done
cargo build --release --locked --bin hearth --bin fake-upstream --bin min-proxy >/dev/null
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
# HEARTH_BIN: another build of hearth to measure (an older commit, side by side).
HEARTH=${HEARTH_BIN:-$TARGET/release/hearth}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ports
UP=18101; UPS=18102; NX=18111; NXS=18112; HE=18121; HEL=18122; LL=18131; SLOW=18141; MIN=18151; MINS=18152

source "$ROOT/bench/lib.sh"
source "$ROOT/bench/gateway/common.sh"

# Two nginx instances, as two programs would be: the upstream (one worker, serving
# canned answers) and the proxy in front of it (one worker per core, as Hearth runs
# one event loop per core). Run as one instance, the proxy shared its worker with
# the upstream and was held to one core for both jobs: 30k req/s instead of 40k+
# here, a baseline that flattered every proxy compared with it.
canned_upstream_conf "$WORK" $UP $UPS > "$WORK/upstream.conf"
cat > "$WORK/proxy.conf" <<NGX
worker_processes auto;
pid $WORK/proxy.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream up  { server 127.0.0.1:$UP;  keepalive 128; }
  upstream ups { server 127.0.0.1:$UPS; keepalive 128; }
  server { listen 127.0.0.1:$NX;  location / { proxy_pass http://up;  proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server { listen 127.0.0.1:$NXS; location / { proxy_pass http://ups; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; } }
}
NGX
nginx -c "$WORK/upstream.conf" -e "$WORK/nginx-error.log"
nginx -c "$WORK/proxy.conf" -e "$WORK/nginx-error.log"

"$TARGET/release/min-proxy" $MIN "http://127.0.0.1:$UP/v1/chat/completions" &
"$TARGET/release/min-proxy" $MINS "http://127.0.0.1:$UPS/v1/chat/completions" &
"$TARGET/release/fake-upstream" $SLOW --chunks 600 --chunk-delay-ms 1000 > "$WORK/slow.log" &

hearth_toml "127.0.0.1:$HE" "$WORK/data" "canned=http://127.0.0.1:$UP/v1" \
  "canned-stream=http://127.0.0.1:$UPS/v1" "slow=http://127.0.0.1:$SLOW/v1" > "$WORK/hearth.toml"
# Every gateway checks a client key, as it would in production; nginx checks none.
KEY=sk-bench-$(python3 -c 'import secrets; print(secrets.token_hex(24))')
HEARTH_API_KEYS=$KEY "$HEARTH" serve --config "$WORK/hearth.toml" > "$WORK/hearth.log" 2>&1 &
HPID=$!
# The same with its default access log (one JSON line per request to data_dir/logs);
# the peers run with theirs off (nginx access_log off, LiteLLM at ERROR), as does `hearth`.
sed -e 's/^level = "warn"/level = "info"/' -e "s/:$HE\"/:$HEL\"/" -e "s|/data\"|/data-log\"|" "$WORK/hearth.toml" > "$WORK/hearth-log.toml"
HEARTH_API_KEYS=$KEY "$HEARTH" serve --config "$WORK/hearth-log.toml" > "$WORK/hearth-log.log" 2>&1 &

if [ $LITELLM = 1 ]; then
  VENV=$ROOT/.venv-bench
  [ -x "$VENV/bin/litellm" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install --quiet 'litellm[proxy]==1.106.2'; }
  cat > "$WORK/litellm.yaml" <<YAML
model_list:
  - model_name: canned
    litellm_params: {model: openai/canned, api_base: "http://127.0.0.1:$UP/v1", api_key: "x"}
  - model_name: canned-stream
    litellm_params: {model: openai/canned, api_base: "http://127.0.0.1:$UPS/v1", api_key: "x"}
litellm_settings: {telemetry: false}
YAML
  LITELLM_MASTER_KEY=$KEY LITELLM_LOG=ERROR "$VENV/bin/litellm" --config "$WORK/litellm.yaml" --host 127.0.0.1 --port $LL --num_workers 1 > "$WORK/litellm.log" 2>&1 &
fi

wait_up() { for _ in $(seq 1 300); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.2; done; echo "no answer from $1" >&2; return 1; }
wait_up "http://127.0.0.1:$HE/health"
wait_up "http://127.0.0.1:$HEL/health"
rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$HPID/status; }
IDLE0=$(rss)
[ $LITELLM = 1 ] && wait_up "http://127.0.0.1:$LL/health/liveliness"

body() { printf '{"model":"%s","messages":[{"role":"user","content":"Say hello"}]%s}' "$1" "$2"; }
lua() { # $1 body, $2 pacing delay ms (0 = none)
  cat <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
wrk.body = '$1'
$( [ "$2" != 0 ] && echo "function delay() return $2 end" )
LUA
}
cpu_ticks() { awk '{print $14 + $15}' /proc/$HPID/stat; }

declare -A URL=( [direct]="http://127.0.0.1:$UP" [hearth]="http://127.0.0.1:$HE" [hearth+log]="http://127.0.0.1:$HEL" [axum-min]="http://127.0.0.1:$MIN" [nginx]="http://127.0.0.1:$NX" [litellm]="http://127.0.0.1:$LL" )
declare -A URLS=( [direct]="http://127.0.0.1:$UPS" [hearth]="http://127.0.0.1:$HE" [hearth+log]="http://127.0.0.1:$HEL" [axum-min]="http://127.0.0.1:$MINS" [nginx]="http://127.0.0.1:$NXS" [litellm]="http://127.0.0.1:$LL" )
TARGETS="direct hearth nginx hearth+log axum-min"; [ $LITELLM = 1 ] && TARGETS="$TARGETS litellm"

RES="$OUT/gateway.md"
{
  echo "| mode | target | req/s at saturation (wrk -c64 -d$DUR, median of $ROUNDS) | p50 ms @ ~1k req/s | p99 ms @ ~1k req/s | achieved req/s |"
  echo "| --- | --- | ---: | ---: | ---: | ---: |"
} > "$RES"
med() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
HCPU=""
declare -A SAT P99 RUNS
for mode in non-streaming streaming; do
  if [ $mode = streaming ]; then extra=',"stream":true'; model=canned-stream; else extra=''; model=canned; fi
  lua "$(body $model "$extra")" 0 > "$WORK/sat.lua"
  # 10 connections, each pausing 10 ms between requests: about 1,000 req/s offered.
  lua "$(body $model "$extra")" 10 > "$WORK/paced.lua"
  ticks=0; reqs=0
  # Rounds interleave the targets, so a slow spell of the VM (they happen here) falls
  # on all of them rather than on one; each figure is the median over the rounds. In
  # each round the saturation runs go back to back (the latency runs after them), and
  # Hearth and nginx swap places every other round, so neither always follows the other.
  for round in $(seq 1 "$ROUNDS"); do
    order=$TARGETS
    [ $((round % 2)) = 0 ] && order=$(echo "$TARGETS" | sed 's/hearth nginx/nginx hearth/')
    for t in $order; do
      if [ $mode = streaming ]; then base=${URLS[$t]}; else base=${URL[$t]}; fi
      c=64; [ $t = litellm ] && c=16
      before=$(cpu_ticks)
      wrk -t2 -c$c -d$DUR -s "$WORK/sat.lua" "$base/v1/chat/completions" > "$WORK/sat.txt"
      after=$(cpu_ticks)
      RUNS[$mode/$t/sat]+=" $(rps < "$WORK/sat.txt")"
      if [ $t = hearth ]; then
        ticks=$((ticks + after - before)); reqs=$((reqs + $(awk '/requests in/ {print $1}' "$WORK/sat.txt")))
      fi
      echo "$mode round $round $t: ${RUNS[$mode/$t/sat]##* } req/s" >&2
    done
    for t in $order; do
      [ $t = litellm ] && continue
      if [ $mode = streaming ]; then base=${URLS[$t]}; else base=${URL[$t]}; fi
      wrk -t2 -c10 -d$DUR --latency -s "$WORK/paced.lua" "$base/v1/chat/completions" > "$WORK/paced.txt"
      read -r p50 p99 < <(lat < "$WORK/paced.txt")
      RUNS[$mode/$t/p50]+=" $p50"; RUNS[$mode/$t/p99]+=" $p99"; RUNS[$mode/$t/ach]+=" $(rps < "$WORK/paced.txt")"
    done
  done
  HCPU="$HCPU| $mode | $(python3 -c "print(f'{$ticks/$(getconf CLK_TCK)*1e6/$reqs:.1f}')") µs |\n"
  for t in $TARGETS; do
    sat=$(echo "${RUNS[$mode/$t/sat]}" | med)
    if [ $t = litellm ]; then p="n/a (saturates far below 1k) | n/a"; ach="";
    else
      p="$(echo "${RUNS[$mode/$t/p50]}" | med) | $(echo "${RUNS[$mode/$t/p99]}" | med)"
      ach=$(echo "${RUNS[$mode/$t/ach]}" | med)
      P99[$mode/$t]=$(echo "${RUNS[$mode/$t/p99]}" | med)
    fi
    echo "| $mode | $t | $sat | $p | $ach |" >> "$RES"
    SAT[$mode/$t]=$sat
  done
done

IDLE=$(rss)
cat > "$WORK/streams.py" <<'PY'
import asyncio, sys
port, key = int(sys.argv[1]), sys.argv[2].encode()
body = b'{"model":"slow","stream":true,"messages":[{"role":"user","content":"hold"}]}'
req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
       + b"Authorization: Bearer " + key + b"\r\nContent-Length: "
       + str(len(body)).encode() + b"\r\n\r\n" + body)
async def one(conns):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(req); await w.drain()
    data = b""
    while b"data: " not in data:
        more = await asyncio.wait_for(r.read(4096), 30)
        data += more
        if not more or (b"\r\n\r\n" in data and not data.startswith(b"HTTP/1.1 200")):
            sys.exit(f"stream refused: {data[:300]!r}")
    conns.append(w)
async def main():
    conns = []
    for i in range(0, 1000, 100):
        await asyncio.gather(*(one(conns) for _ in range(100)))
    print(len(conns), flush=True)
    await asyncio.sleep(float(5))
    for w in conns: w.close()
asyncio.run(main())
PY
python3 "$WORK/streams.py" "$HE" "$KEY" > "$WORK/streams.txt" &
SPID=$!
for _ in $(seq 1 600); do [ -s "$WORK/streams.txt" ] && break; kill -0 $SPID 2>/dev/null || break; sleep 0.1; done
[ -s "$WORK/streams.txt" ] || { echo "the 1,000 streams did not open" >&2; exit 1; }
sleep 1
OPEN=$(head -1 "$WORK/streams.txt")
PEAK=$(rss)   # while the streams are open
wait $SPID
{
  echo
  echo "| Hearth | value |"
  echo "| --- | ---: |"
  echo "| RSS idle at start | $IDLE0 MiB |"
  echo "| RSS idle after the load runs | $IDLE MiB |"
  echo "| RSS with $OPEN open streams | $PEAK MiB |"
  printf "$HCPU" | sed 's/^| \(.*\) | \(.*\) |$/| CPU time per request, \1 | \2 |/'
  echo
  echo "Targets: throughput >= 0.75x nginx's; p99 added over direct <= 1 ms at ~1k req/s; RSS <= 150 MiB with 1,000 open streams."
  for mode in non-streaming streaming; do
    python3 -c "
import statistics as st
h, n, m = [[float(x) for x in r.split()] for r in ('${RUNS[$mode/hearth/sat]}', '${RUNS[$mode/nginx/sat]}', '${RUNS[$mode/axum-min/sat]}')]
hp, dp, mp = [[float(x) for x in r.split()] for r in ('${RUNS[$mode/hearth/p99]}', '${RUNS[$mode/direct/p99]}', '${RUNS[$mode/axum-min/p99]}')]
ratio = lambda a, b: st.median(x / y for x, y in zip(a, b))
added = lambda a, b: st.median(x - y for x, y in zip(a, b))
rounds = ' '.join(f'{x / y:.2f}' for x, y in zip(h, n))
print(f'- $mode: Hearth {ratio(h, n):.2f}x nginx throughput (per round: {rounds}); {ratio(h, m):.2f}x axum-min, which is {ratio(m, n):.2f}x nginx; p99 added over direct {added(hp, dp):.2f} ms (axum-min {added(mp, dp):.2f} ms)')"
  done
  echo "- RSS with $OPEN open streams: $PEAK MiB"
} >> "$RES"
cat "$RES"
