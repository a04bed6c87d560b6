#!/usr/bin/env bash
# Instructions per request: how much user-space work Hearth (or min-proxy) does for
# one relayed request, counted by valgrind's callgrind. Unlike req/s on this shared
# VM, the count hardly moves between runs, so it tells a small saving from noise.
# The load: wrk, 8 connections, against an nginx upstream with a canned answer;
# counters are zeroed after a warm-up and read after 6 s.
# Usage: bash bench/gateway/instructions.sh [hearth|min-proxy] [stream]
#   (prints the count and writes bench/out/callgrind.<target>.<mode>, which
#   `callgrind_annotate --inclusive=yes` reads)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
TARGET_NAME=${1:-hearth}
MODE=${2:-whole}
OUT=$ROOT/bench/out; mkdir -p "$OUT"
WORK=$(mktemp -d)
cleanup() {
  [ -f "$WORK/up.pid" ] && nginx -c "$WORK/up.conf" -s stop 2>/dev/null
  kill $(jobs -p) 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
for p in wrk nginx valgrind; do
  command -v $p >/dev/null || apt-get install -y -qq wrk nginx-light valgrind >/dev/null
done
cargo build --release --locked --bin hearth --bin min-proxy >/dev/null
BIN=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release

UP=18301; PORT=18311
source "$ROOT/bench/gateway/common.sh"
if [ "$MODE" = stream ]; then ANSWER=$SSE; TYPE=text/event-stream; EXTRA=',"stream":true'; else ANSWER=$CHAT; TYPE=application/json; EXTRA=''; fi
cat > "$WORK/up.conf" <<NGX
worker_processes 1;
pid $WORK/up.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { default_type $TYPE; return 200 '$ANSWER'; } }
}
NGX
nginx -c "$WORK/up.conf" -e "$WORK/nginx-error.log"
hearth_toml "127.0.0.1:$PORT" "$WORK/data" "canned=http://127.0.0.1:$UP/v1" > "$WORK/hearth.toml"
cat > "$WORK/load.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"canned","messages":[{"role":"user","content":"Say hello"}]$EXTRA}'
LUA
case $TARGET_NAME in
  hearth) CMD=("$BIN/hearth" serve --config "$WORK/hearth.toml") ;;
  min-proxy) CMD=("$BIN/min-proxy" $PORT "http://127.0.0.1:$UP/v1/chat/completions") ;;
  *) echo "usage: $0 [hearth|min-proxy] [stream]" >&2; exit 2 ;;
esac
valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p" --dump-instr=no "${CMD[@]}" > "$WORK/vg.log" 2>&1 &
VP=$!
for _ in $(seq 1 200); do
  curl -s -o /dev/null -X POST "http://127.0.0.1:$PORT/v1/chat/completions" && break
  sleep 0.3
done
URL=http://127.0.0.1:$PORT/v1/chat/completions
wrk -t1 -c8 -d3s -s "$WORK/load.lua" "$URL" > /dev/null
callgrind_control -z $VP > /dev/null
N=$(wrk -t1 -c8 -d6s -s "$WORK/load.lua" "$URL" | awk '/requests in/ {print $1}')
callgrind_control -d $VP > /dev/null
kill -INT $VP
for _ in $(seq 1 50); do kill -0 $VP 2>/dev/null || break; sleep 0.1; done
kill -KILL $VP 2>/dev/null || true; wait $VP 2>/dev/null || true
DUMP=$(ls -t "$WORK"/cg.*.1 | head -1)
cp "$DUMP" "$OUT/callgrind.$TARGET_NAME.$MODE"
TOTAL=$(awk '/^summary:|^totals:/ {print $2; exit}' "$DUMP")
echo "$TARGET_NAME ($MODE answers): $((TOTAL / N)) instructions per request ($N requests; profile in bench/out/callgrind.$TARGET_NAME.$MODE)"
