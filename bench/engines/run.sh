#!/usr/bin/env bash
# Managed engines benchmark ([models.launch]), each figure beside its baseline, run
# in the same command:
#   latency  one Hearth, two models on the same fake upstream program (release
#            fake-upstream): `byhand` started by this script, `managed` started by
#            Hearth. Throughput at saturation (wrk -c32) and p50/p99 at a paced
#            ~500 req/s, interleaved rounds. A managed engine is the same upstream
#            path, so the ratio should be 1.
#   ready    seconds from `hearth serve` to /ready 200 with the llama-server preset
#            on the default GGUF, beside llama-server started by hand to /health 200
#            (median of ROUNDS).
#   rss      Hearth's RSS and threads with 3 managed llama-servers (all ready),
#            beside Hearth routing to the same 3 servers started by hand.
# Usage: bash bench/engines/run.sh   (writes bench/out/engines.md)
# Env: ROUNDS (5), DUR (5s), THREADS (llama-server -t, default 1).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/bench/out; mkdir -p "$OUT"
WORK=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null; sleep 0.5; [ -n "${KEEP:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT
ROUNDS=${ROUNDS:-5}
DUR=${DUR:-5s}
THREADS=${THREADS:-1}
MODEL=$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf

command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
[ -f "$MODEL" ] || make -s "models/SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA_SERVER=$(make -s --no-print-directory llama-server-path)
cargo build --release --locked --bin hearth --bin fake-upstream >/dev/null
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
HEARTH=$TARGET/release/hearth
FAKE=$TARGET/release/fake-upstream
. bench/lib.sh
now() { date +%s.%N; }
wait_200() { # url timeout_s
  local deadline=$(( $(date +%s) + $2 ))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "timeout waiting for $1" >&2; return 1; }
    sleep 0.02
  done
}
# hearth_start NAME CONFIG: starts Hearth on CONFIG in the background; sets HPID.
hearth_start() {
  "$HEARTH" serve --config "$2" > "$WORK/$1.log" 2>&1 &
  HPID=$!
}
header() { printf '[server]\nlisten = "127.0.0.1:%s"\nworkers = 1\n[storage]\ndata_dir = "%s"\n[log]\nstdout = false\nlevel = "warn"\n[health]\nprobe_interval_secs = 60\n' "$1" "$2"; }

echo "## latency: managed vs by hand (same fake upstream program)"
UP=$(free_port); HE=$(free_port)
"$FAKE" --port "$UP" > /dev/null 2>&1 &
{
  header "$HE" "$WORK/lat"
  printf '[[models]]\nname = "byhand"\nbackend = "upstream"\nbase_url = "http://127.0.0.1:%s/v1"\nmax_concurrency = 4096\nmax_queue = 4096\n' "$UP"
  printf '[[models]]\nname = "managed"\nbackend = "upstream"\nmax_concurrency = 4096\nmax_queue = 4096\n[models.launch]\ncommand = ["%s", "--port", "{port}"]\n' "$FAKE"
} > "$WORK/lat.toml"
hearth_start lat "$WORK/lat.toml"
wait_200 "http://127.0.0.1:$HE/ready" 30
wait_200 "http://127.0.0.1:$UP/v1/models" 30
lua() { # model pacing_ms
  cat <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"$1","messages":[{"role":"user","content":"hi"}],"max_tokens":8}'
LUA
  [ "$2" = 0 ] || printf 'function delay() return %s end\n' "$2"
}
for m in byhand managed; do lua $m 0 > "$WORK/sat-$m.lua"; lua $m 20 > "$WORK/paced-$m.lua"; done
for r in $(seq "$ROUNDS"); do
  order="byhand managed"; [ $((r % 2)) = 0 ] && order="managed byhand"
  for m in $order; do
    wrk -t2 -c32 -d"$DUR" -s "$WORK/sat-$m.lua" "http://127.0.0.1:$HE/v1/chat/completions" \
      | awk '/Requests\/sec/ {print $2}' >> "$WORK/sat-$m.txt"
  done
  for m in $order; do
    wrk -t2 -c10 -d"$DUR" --latency -s "$WORK/paced-$m.lua" "http://127.0.0.1:$HE/v1/chat/completions" > "$WORK/p.txt"
    awk '$1=="50%" {print $2}' "$WORK/p.txt" >> "$WORK/p50-$m.txt"
    awk '$1=="99%" {print $2}' "$WORK/p.txt" >> "$WORK/p99-$m.txt"
  done
done
ms() { sed -E 's/([0-9.]+)us/\1 0.001/; s/([0-9.]+)ms/\1 1/; s/([0-9.]+)s$/\1 1000/' | awk '{print $1*$2}'; }
row_lat() {
  printf '| %s | %.0f | %.3f | %.3f |\n' "$1" "$(median < "$WORK/sat-$1.txt")" \
    "$(ms < "$WORK/p50-$1.txt" | median)" "$(ms < "$WORK/p99-$1.txt" | median)"
}
ratio=$(paste "$WORK/sat-managed.txt" "$WORK/sat-byhand.txt" | awk '{print $1/$2}' | median)
kill "$HPID"; wait "$HPID" 2>/dev/null || true

echo "## ready: hearth serve with the llama-server preset vs llama-server by hand"
for r in $(seq "$ROUNDS"); do
  P=$(free_port)
  t0=$(now)
  "$LLAMA_SERVER" -m "$MODEL" --host 127.0.0.1 --port "$P" --alias smol -c 2048 -np 1 -t "$THREADS" > "$WORK/ls.log" 2>&1 &
  LPID=$!
  wait_200 "http://127.0.0.1:$P/health" 120
  awk -v a="$(now)" -v b="$t0" 'BEGIN {print a - b}' >> "$WORK/ready-byhand.txt"
  kill "$LPID"; wait "$LPID" 2>/dev/null || true

  HE=$(free_port)
  {
    header "$HE" "$WORK/ready$r"
    printf '[[models]]\nname = "smol"\nbackend = "upstream"\nmax_concurrency = 1\ncontext_length = 2048\n[models.launch]\npreset = "llama-server"\nprogram = "%s"\nmodel = "%s"\nextra_args = ["-t", "%s"]\n' "$LLAMA_SERVER" "$MODEL" "$THREADS"
  } > "$WORK/ready.toml"
  t0=$(now)
  hearth_start ready "$WORK/ready.toml"
  wait_200 "http://127.0.0.1:$HE/ready" 120
  awk -v a="$(now)" -v b="$t0" 'BEGIN {print a - b}' >> "$WORK/ready-hearth.txt"
  # The supervisor's own figure, from spawn to ready (its note in the engine's log).
  sed -nE 's/.* hearth ready in ([0-9.]+) s$/\1/p' "$WORK/ready$r"/logs/engines/smol.*.log >> "$WORK/ready-spawn.txt"
  kill "$HPID"; wait "$HPID" 2>/dev/null || true
done

echo "## rss: Hearth with 3 managed llama-servers vs 3 started by hand"
rss() { awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
threads() { awk '/^Threads/ {print $2}' "/proc/$1/status"; }
HE=$(free_port)
{
  header "$HE" "$WORK/rss-managed"
  for i in 1 2 3; do
    printf '[[models]]\nname = "smol%s"\nbackend = "upstream"\nmax_concurrency = 1\ncontext_length = 1024\n[models.launch]\npreset = "llama-server"\nprogram = "%s"\nmodel = "%s"\nextra_args = ["-t", "%s"]\n' "$i" "$LLAMA_SERVER" "$MODEL" "$THREADS"
  done
} > "$WORK/rss-managed.toml"
hearth_start rssm "$WORK/rss-managed.toml"
wait_200 "http://127.0.0.1:$HE/ready" 120
sleep 2
rss_managed=$(rss "$HPID"); thr_managed=$(threads "$HPID")
kill "$HPID"; wait "$HPID" 2>/dev/null || true
HE=$(free_port)
{
  header "$HE" "$WORK/rss-byhand"
  for i in 1 2 3; do
    P=$(free_port)
    "$LLAMA_SERVER" -m "$MODEL" --host 127.0.0.1 --port "$P" --alias "smol$i" -c 1024 -np 1 -t "$THREADS" > "$WORK/ls$i.log" 2>&1 &
    wait_200 "http://127.0.0.1:$P/health" 120
    printf '[[models]]\nname = "smol%s"\nbackend = "upstream"\nbase_url = "http://127.0.0.1:%s/v1"\n' "$i" "$P"
  done
} > "$WORK/rss-byhand.toml"
hearth_start rssb "$WORK/rss-byhand.toml"
wait_200 "http://127.0.0.1:$HE/ready" 30
sleep 2
rss_byhand=$(rss "$HPID"); thr_byhand=$(threads "$HPID")
kill "$HPID"; wait "$HPID" 2>/dev/null || true

{
  echo "### Managed engines ($(date -u +%F), $(nproc) cores, \`bash bench/engines/run.sh\`, ROUNDS=$ROUNDS DUR=$DUR)"
  echo
  echo "| model (one Hearth, 1 event loop) | req/s at saturation (wrk -c32, median) | p50 ms @ ~500 req/s | p99 ms @ ~500 req/s |"
  echo "| --- | ---: | ---: | ---: |"
  row_lat byhand
  row_lat managed
  echo
  echo "Throughput managed / by hand (median of per-round ratios): $(printf '%.3f' "$ratio")"
  echo
  for m in byhand managed; do
    echo "Per round, $m: req/s $(paste -sd' ' "$WORK/sat-$m.txt"); p99 $(paste -sd' ' "$WORK/p99-$m.txt")"
    echo
  done
  echo
  echo "| start (llama-server, default GGUF, -t $THREADS) | seconds to ready (median of $ROUNDS) |"
  echo "| --- | ---: |"
  printf '| llama-server by hand, to /health 200 | %.2f |\n' "$(median < "$WORK/ready-byhand.txt")"
  printf '| hearth serve with the preset, to /ready 200 | %.2f |\n' "$(median < "$WORK/ready-hearth.txt")"
  printf '| of which the engine, from spawn to ready (as the supervisor logged it) | %.2f |\n' "$(median < "$WORK/ready-spawn.txt")"
  echo
  echo "| Hearth routing to 3 llama-servers | Hearth RSS MiB | Hearth threads |"
  echo "| --- | ---: | ---: |"
  echo "| started by hand (plain upstreams) | $rss_byhand | $thr_byhand |"
  echo "| managed by Hearth | $rss_managed | $thr_managed |"
} | tee "$OUT/engines.md"
