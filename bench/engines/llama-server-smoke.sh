#!/usr/bin/env bash
# Smoke test of llama.cpp's llama-server as Hearth's `llama-server` preset runs it:
# spawn it on the default GGUF, poll GET /health until 200 (printing the time to
# ready and what /health said while loading), then /v1/models, a chat completion
# and a streamed one. Prints `key: value` lines; exits non-zero on any failure.
#
# Usage: bash bench/engines/llama-server-smoke.sh
# Env: LLAMA_SERVER (binary; default: `make -s llama-server-path`, which builds it
#      the first time), MODEL (default models/SmolLM2-135M-Instruct.Q4_1.gguf),
#      THREADS (-t; default: llama-server's own, one per physical core: on a
#      machine busy with other work, fewer is much faster), CTX (-c, default 2048),
#      PARALLEL (-np, default 2), ALIAS (--alias, as Hearth passes the model name;
#      default smollm2), READY_TIMEOUT (seconds, default 120).
set -euo pipefail
cd "$(dirname "$0")/../.."

MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
CTX=${CTX:-2048}
PARALLEL=${PARALLEL:-2}
READY_TIMEOUT=${READY_TIMEOUT:-120}
LLAMA_SERVER=${LLAMA_SERVER:-$(make -s llama-server-path)}
[ -f "$MODEL" ] || make -s "$MODEL"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
log=$(mktemp "${TMPDIR:-/tmp}/llama-server-smoke.XXXXXX")
args=(-m "$MODEL" -c "$CTX" -np "$PARALLEL" --port "$port" --host 127.0.0.1 --alias "${ALIAS:-smollm2}")
if [ -n "${THREADS:-}" ]; then args+=(-t "$THREADS"); fi

fail() { echo "FAIL: $*" >&2; echo "--- llama-server log (last 30 lines) ---" >&2; tail -n 30 "$log" >&2; exit 1; }

echo "binary: $LLAMA_SERVER"
echo "$("$LLAMA_SERVER" --version 2>&1 | grep -m1 '^version' || echo 'version: ?')"
echo "command: $LLAMA_SERVER ${args[*]}"
t0=$(date +%s.%N) s0=$SECONDS
"$LLAMA_SERVER" "${args[@]}" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log" "$log.health"' EXIT

# Readiness as Hearth polls it: connection refused, then (while the model
# loads) 503, then 200. Keep the first non-200 answer to show what it says.
loading=""
while :; do
  kill -0 "$pid" 2>/dev/null || fail "llama-server exited before it was ready"
  code=$(curl -s -o "$log.health" -w '%{http_code}' "$base/health" || true)
  if [ "$code" = 200 ]; then break; fi
  if [ "$code" != 000 ] && [ -z "$loading" ]; then loading="$code $(head -c 200 "$log.health")"; fi
  if [ $((SECONDS - s0)) -ge "$READY_TIMEOUT" ]; then fail "not ready after ${READY_TIMEOUT}s"; fi
  sleep 0.05
done
t1=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "time_to_ready_s: %.2f\n", b - a }'
echo "health_ready: $(cat "$log.health")"
echo "health_while_loading: ${loading:-(never seen: ready at the first answer)}"
rm -f "$log.health"
echo "rss_at_ready_mib: $(( $(awk '/^VmRSS/ {print $2}' "/proc/$pid/status") / 1024 ))"

models=$(curl -sf "$base/v1/models") || fail "GET /v1/models"
echo "models: $(echo "$models" | python3 -c 'import json,sys; print([m["id"] for m in json.load(sys.stdin)["data"]])')"

body='{"model":"x","messages":[{"role":"user","content":"Say hi"}],"max_tokens":8}'
chat=$(curl -sf "$base/v1/chat/completions" -H 'Content-Type: application/json' -d "$body") ||
  fail "POST /v1/chat/completions"
answer=$(echo "$chat" | python3 -c '
import json, sys
r = json.load(sys.stdin)
c = r["choices"][0]
assert c["message"]["role"] == "assistant" and isinstance(c["message"]["content"], str), r
print(repr(c["message"]["content"]), "finish_reason=" + str(c["finish_reason"]), "usage=" + json.dumps(r.get("usage")))
') || fail "chat answer has no choices[0].message: $chat"
echo "chat: $answer"

stream=$(curl -sfN "$base/v1/chat/completions" -H 'Content-Type: application/json' \
  -d "${body%\}},\"stream\":true}") || fail "POST /v1/chat/completions stream"
n_data=$(grep -c '^data: ' <<<"$stream" || true)
grep -qx 'data: \[DONE\]' <<<"$(tr -d '\r' <<<"$stream")" || fail "stream has no data: [DONE]"
text=$(echo "$stream" | python3 -c '
import json, sys
text = ""
for line in sys.stdin:
    line = line.strip()
    if line.startswith("data: {"):
        for c in json.loads(line[6:]).get("choices", []):
            text += (c.get("delta") or {}).get("content") or ""
print(repr(text))
') || fail "stream chunks are not chat.completion.chunk JSON"
echo "stream: $n_data data: lines, ends with [DONE], text $text"

echo "rss_after_requests_mib: $(( $(awk '/^VmRSS/ {print $2}' "/proc/$pid/status") / 1024 ))"
echo "os_threads: $(awk '/^Threads/ {print $2}' "/proc/$pid/status")"
echo "n_threads: $(grep -m1 -o -E 'n_threads = [0-9]+' "$log" | grep -o -E '[0-9]+$' || echo '?') (of $(nproc) CPUs)"
echo "slots: $(grep -m1 -o -E 'n_slots = [0-9]+, n_ctx_slot = [0-9]+' "$log" || echo '?')"

# Hearth stops it with SIGTERM (SIGKILL after stop_timeout).
t2=$(date +%s.%N)
kill -TERM "$pid"
wait "$pid" || true
awk -v a="$t2" -v b="$(date +%s.%N)" 'BEGIN { printf "sigterm_to_exit_s: %.2f\n", b - a }'
echo "OK"
