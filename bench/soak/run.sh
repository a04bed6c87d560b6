#!/usr/bin/env bash
# Soak (issue 20): `hearth serve` (release build) under SOAK_MINUTES of mixed traffic
# (bench/soak/driver.py says which), in front of the fake upstream (healthy, slow,
# scripted faults), two faulty upstreams the driver plays (drop mid-stream, hang
# up) and the embedded default model. Every SOAK_INTERVAL seconds it samples the
# process's RSS and open fds, /metrics' hearth_tasks_alive and
# hearth_connections_open, and a fixed probe request's p50/p99; then judges:
#   RSS slope after warm-up (the first 20%) under 1 MiB per 10 minutes,
#   no fd and no live-task growth (read at quiet points after warm-up and at the end),
#   p99 at the end within 20% of the start,
#   healthy requests answered,
# printing PASS/FAIL for each and exiting non-zero on a FAIL.
# Writes bench/out/soak.csv, bench/out/soak.md (the tables) and bench/soak/soak.png
# (RSS and p99 over time).
# Usage: bash bench/soak/run.sh   (SOAK_MINUTES=4 bash bench/soak/run.sh: a short one)
# Env: SOAK_MINUTES (30), SOAK_INTERVAL (60 s; a twelfth of the run when that is
# shorter, at least 10 s), SOAK_RATE (30 requests/s besides the probe and the
# embedded model), SOAK_PROBES_PER_S (5), SOAK_WORKERS (16), MODEL (the default GGUF),
# KEEP=1 (keep the work folder: logs, config).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/bench/out
mkdir -p "$OUT"
WORK=$(mktemp -d)
# shellcheck disable=SC2317 # run by the trap
cleanup() {
  local pids
  mapfile -t pids < <(jobs -p)
  [ "${#pids[@]}" = 0 ] || kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "work folder kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

SOAK_MINUTES=${SOAK_MINUTES:-30}
if [ -z "${SOAK_INTERVAL:-}" ]; then
  SOAK_INTERVAL=$(python3 -c "import sys; m = float(sys.argv[1]); print(max(10, min(60, int(m * 60 / 12))))" "$SOAK_MINUTES")
fi
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -f "$MODEL" ] || make "$MODEL"

# The driver's venv, pinned, beside the project's other caches.
VENV=$HOME/.cache/hearth/soak-venv
REQS='aiohttp==3.14.5 matplotlib==3.11.2'
if [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$REQS" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  # shellcheck disable=SC2086 # one word per requirement
  "$VENV/bin/pip" install --quiet --disable-pip-version-check $REQS
  echo "$REQS" > "$VENV/.requirements"
fi

cargo build --release --locked --bin hearth --bin fake-upstream >/dev/null
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
HEARTH=$TARGET/release/hearth
FAKE=$TARGET/release/fake-upstream
. bench/lib.sh

# The faulty upstream's script: a cycle of faults, long enough for the whole run
# (after it, the fake answers normally). Stalls outlive first_byte_timeout_secs.
python3 - "$WORK/faults.json" <<'PY'
import json, sys
cycle = [{"status": 500}, {"status": 503}, {"status": 429}, {"stall": True},
         {"text": "late answer", "delay_ms": 1500}, "fine answer", {"status": 502}]
json.dump({"*": cycle * 20000}, open(sys.argv[1], "w"))
PY

UP=$(free_port); SLOW=$(free_port); FAULTS=$(free_port); DROP=$(free_port); HANGUP=$(free_port); PORT=$(free_port)
"$FAKE" --port "$UP" > "$WORK/up.log" 2>&1 &
"$FAKE" --port "$SLOW" --chunks 40 --chunk-delay-ms 50 > "$WORK/slow.log" 2>&1 &
"$FAKE" --port "$FAULTS" --script "$WORK/faults.json" > "$WORK/faults.log" 2>&1 &
"$VENV/bin/python" bench/soak/driver.py faults --drop-port "$DROP" --hangup-port "$HANGUP" > "$WORK/faulty.log" 2>&1 &

upstream() { # NAME PORT EXTRA
  printf '[[models]]\nname = "%s"\nbackend = "upstream"\nbase_url = "http://127.0.0.1:%s/v1"\nmax_concurrency = 256\nmax_queue = 256\n%s' "$1" "$2" "${3:-}"
}
{
  printf '[server]\nlisten = "127.0.0.1:%s"\n[storage]\ndata_dir = "%s/data"\n' "$PORT" "$WORK"
  printf '[log]\nstdout = false\nlevel = "warn"\n'
  # Faults must reach the clients, not take the models out of service.
  printf '[health]\nfailure_threshold = 1000000\n'
  printf '[[models]]\nname = "smollm2-135m"\nbackend = "embedded"\npath = "%s"\ncontext = 2048\nparallel = 2\nmax_queue = 8\n' "$ROOT/$MODEL"
  upstream up "$UP"
  upstream up-slow "$SLOW"
  upstream up-faults "$FAULTS" $'retries = 0\nfirst_byte_timeout_secs = 2\n'
  upstream up-drop "$DROP" $'retries = 0\n'
  upstream up-hangup "$HANGUP" $'retries = 0\n'
} > "$WORK/hearth.toml"

"$HEARTH" serve --config "$WORK/hearth.toml" > "$WORK/hearth.log" 2>&1 &
HEARTH_PID=$!
for _ in $(seq 1 300); do
  curl -fsS "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1 && break
  kill -0 "$HEARTH_PID" 2>/dev/null || break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$PORT/ready" >/dev/null || { cat "$WORK/hearth.log" >&2; exit 1; }

echo "soak: $SOAK_MINUTES min, a sample every $SOAK_INTERVAL s, hearth pid $HEARTH_PID on port $PORT" >&2
status=0
"$VENV/bin/python" bench/soak/driver.py soak --base "http://127.0.0.1:$PORT" --pid "$HEARTH_PID" \
  --minutes "$SOAK_MINUTES" --interval "$SOAK_INTERVAL" --out "$OUT" --png "$ROOT/bench/soak/soak.png" || status=$?
kill -0 "$HEARTH_PID" 2>/dev/null || { echo "soak: hearth exited during the run" >&2; tail -50 "$WORK/hearth.log" >&2; status=1; }
exit "$status"
