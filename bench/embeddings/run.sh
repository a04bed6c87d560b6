#!/usr/bin/env bash
# bench/embeddings: embeddings per second, Hearth's embedded engine against
# llama.cpp's own servers on the same GGUF (all-MiniLM-L6-v2, F16) and threads:
#   hearth            `hearth serve` with the model as `kind = "embedding"`
#   llama-server      llama.cpp's C++ server (`make llama-server`), --embeddings
#   llama-cpp-python  llama-cpp-python[server], built from source (PARTS has "python")
# each asked for 1 input per request (CLIENTS1 clients at once, default 4) and 32
# inputs per request (CLIENTS32, default 1), for EMBED_SECONDS each (default 20). Every
# request carries new sentences; the first vector of each server is compared
# (cosine), so a fast wrong answer cannot pass. Tables go to stdout, JSON to
# bench/out/embeddings/.
#
# Usage: bash bench/embeddings/run.sh
#        PARTS="hearth llama-server" bash bench/embeddings/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

MODEL=${MODEL:-models/all-MiniLM-L6-v2.F16.gguf}
PHYS=$(lscpu -p=CORE,SOCKET 2>/dev/null | grep -v '^#' | sort -u | wc -l)
THREADS=${THREADS:-${PHYS:-$(nproc)}}
SECONDS_EACH=${EMBED_SECONDS:-20}
CLIENTS1=${CLIENTS1:-4}
CLIENTS32=${CLIENTS32:-1}
PARTS=${PARTS:-hearth llama-server python}
LLAMA_CPP_PYTHON=${LLAMA_CPP_PYTHON:-"llama-cpp-python[server]==0.3.36"}
OUT=bench/out/embeddings
mkdir -p "$OUT"
[ -f "$MODEL" ] || make "$MODEL"
echo "model $MODEL, $THREADS threads, ${SECONDS_EACH}s per run" >&2

. bench/lib.sh

# measure LABEL URL MODEL_NAME PID: both shapes, one JSON line each (progress
# on stderr without the probe vector).
measure() {
  local batch clients
  for batch in 1 32; do
    clients=$CLIENTS1
    [ "$batch" = 32 ] && clients=$CLIENTS32
    python3 bench/embeddings/client.py --url "$2" --model "$3" --label "$1" \
      --batch "$batch" --clients "$clients" --seconds "$SECONDS_EACH" >>"$OUT/results.jsonl"
    tail -n 1 "$OUT/results.jsonl" | python3 -c 'import json,sys; r=json.load(sys.stdin); r.pop("probe"); print(r)' >&2
  done
  ps -o rss= -p "$4" | awk -v l="$1" '{printf "{\"label\":\"%s\",\"rss_mib\":%.1f}\n", l, $1/1024}' >>"$OUT/rss.jsonl"
}

: >"$OUT/results.jsonl"
: >"$OUT/rss.jsonl"

if [[ " $PARTS " == *" hearth "* ]]; then
  echo "== hearth" >&2
  cargo build --release -q --bin hearth
  serve_hearth "$OUT" "[[models]]
name = \"minilm\"
kind = \"embedding\"
path = \"$PWD/$MODEL\"
parallel = 32
threads = $THREADS"
  measure hearth "http://127.0.0.1:$PORT/v1" minilm "$PID"
  stop "$PID"
fi

if [[ " $PARTS " == *" llama-server "* ]]; then
  echo "== llama-server" >&2
  BIN=$(make -s --no-print-directory llama-server-path)
  PORT=$(free_port)
  # One context of 512 tokens per slot, as many slots as Hearth decodes at once.
  "$BIN" -m "$MODEL" --embeddings --pooling mean -t "$THREADS" -tb "$THREADS" \
    -c $((512 * 32)) -np 32 -b 512 -ub 512 --host 127.0.0.1 --port "$PORT" >"$OUT/llama-server.log" 2>&1 &
  PID=$!
  wait_ready "http://127.0.0.1:$PORT/health" "$PID" || { stop "$PID"; echo "llama-server did not start: $OUT/llama-server.log" >&2; exit 1; }
  measure llama-server "http://127.0.0.1:$PORT/v1" minilm "$PID"
  stop "$PID"
fi

if [[ " $PARTS " == *" python "* ]]; then
  echo "== llama-cpp-python" >&2
  VENV=bench/out/engine/venv-llama-cpp-python
  ensure_llama_cpp_python "$VENV" "$LLAMA_CPP_PYTHON"
  PORT=$(free_port)
  "$VENV/bin/python" -m llama_cpp.server --model "$MODEL" --embedding True --n_threads "$THREADS" \
    --n_threads_batch "$THREADS" --n_ctx 512 --n_batch 512 --n_ubatch 512 --host 127.0.0.1 --port "$PORT" \
    >"$OUT/llama-cpp-python.log" 2>&1 &
  PID=$!
  if wait_ready "http://127.0.0.1:$PORT/v1/models" "$PID"; then
    measure llama-cpp-python "http://127.0.0.1:$PORT/v1" "$MODEL" "$PID"
  else
    echo "llama-cpp-python's server did not start (see $OUT/llama-cpp-python.log)" >&2
  fi
  stop "$PID"
fi

python3 - "$OUT" <<'PY'
import json, math, sys
out = sys.argv[1]
rows = [json.loads(l) for l in open(f"{out}/results.jsonl")]
rss = {r["label"]: r["rss_mib"] for r in map(json.loads, open(f"{out}/rss.jsonl"))}
def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
base = next((r for r in rows if r["label"] == "hearth"), rows[0])
print("| server | inputs per request | clients | embeddings/s | vs hearth | p50 ms | p99 ms | RSS MiB | cosine with hearth |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in rows:
    h = next((x for x in rows if x["label"] == "hearth" and x["batch"] == r["batch"]), None)
    ratio = f'{r["embeddings_per_s"] / h["embeddings_per_s"]:.2f}' if h else "-"
    print(f'| {r["label"]} | {r["batch"]} | {r["clients"]} | {r["embeddings_per_s"]} | {ratio} | {r["p50_ms"]} | {r["p99_ms"]} | {rss.get(r["label"], "-")} | {cos(r["probe"], base["probe"]):.6f} |')
PY
