#!/usr/bin/env bash
# bench/engine: the embedded engine against its ceiling and a common alternative,
# on the same GGUF, prompts and thread count:
#   (a) Hearth serving over HTTP (`hearth serve`, streaming /v1/chat/completions)
#   (b) a raw loop over llama-cpp-2 (examples/raw_decode.rs), 1, 4 and 8 sequences per batch
#   (c) llama.cpp's Python server (llama-cpp-python[server], built from source)
# and, on Hearth alone:
#   (d) a request arriving mid-stream: with STREAMS streams decoding, one request
#       with a large JSON-schema grammar, then one prompt too long for the context;
#       the running streams' max/p99 gap between tokens while it arrives vs not
# Results go to bench/out/engine/ and markdown tables to stdout.
#
# Usage: bash bench/engine/run.sh            (all four)
#        PARTS="a b" bash bench/engine/run.sh (a subset)
# Env: MODEL (default models/SmolLM2-135M-Instruct.Q4_1.gguf), THREADS (default:
# physical cores), TOKENS (decoded per stream, default 128), LLAMA_CPP_PYTHON
# (pip spec, default llama-cpp-python[server]==0.3.36), STREAMS (running streams in
# (d), default 4), ARRIVAL_TOKENS (decoded per stream in (d), default 512: enough to
# outlast the arrival), SERVE_BIN (a prebuilt hearth binary for (a) and (d), e.g. an
# older commit's to compare with; default: build this tree).
set -euo pipefail
cd "$(dirname "$0")/../.."

MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
PHYS=$(lscpu -p=CORE,SOCKET 2>/dev/null | grep -v '^#' | sort -u | wc -l)
THREADS=${THREADS:-${PHYS:-$(nproc)}}
TOKENS=${TOKENS:-128}
PARTS=${PARTS:-a b c d}
STREAMS=${STREAMS:-4}
ARRIVAL_TOKENS=${ARRIVAL_TOKENS:-512}
OUT=bench/out/engine
TARGET=${CARGO_TARGET_DIR:-target}
LLAMA_CPP_PYTHON=${LLAMA_CPP_PYTHON:-"llama-cpp-python[server]==0.3.36"}
mkdir -p "$OUT"
[ -f "$MODEL" ] || make "$MODEL"
echo "model $MODEL, $THREADS threads, $TOKENS tokens per stream" >&2

. bench/lib.sh

if [[ " $PARTS " == *" b "* ]]; then
  echo "== (b) raw llama-cpp-2 loop" >&2
  cargo build --release -q -p hearth-engine --example raw_decode
  "$TARGET/release/examples/raw_decode" "$MODEL" "$THREADS" "$TOKENS" | tee "$OUT/raw.jsonl" >&2
fi

# serve_hearth OUT_JSON CLIENT_ARGS...: starts `hearth serve` on a free port, runs
# client.py against it with CLIENT_ARGS, writes its JSON to OUT_JSON.
serve_hearth() {
  local json=$1 bin=${SERVE_BIN:-$TARGET/release/hearth}
  shift
  PORT=$(free_port)
  cat > "$OUT/hearth.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
[storage]
data_dir = "$OUT/data"
[[models]]
name = "smollm2-135m"
backend = "embedded"
path = "$PWD/$MODEL"
context = 8192
parallel = 8
threads = $THREADS
max_queue = 64
TOML
  "$bin" serve --config "$OUT/hearth.toml" >"$OUT/hearth.log" 2>&1 &
  PID=$!
  if wait_ready "http://127.0.0.1:$PORT/ready" "$PID"; then
    python3 bench/engine/client.py --url "http://127.0.0.1:$PORT/v1" --model smollm2-135m \
      --label hearth --pid "$PID" "$@" | tee "$json" >&2
    stop "$PID"
  else
    stop "$PID"
    echo "hearth serve did not become ready; see $OUT/hearth.log" >&2
    exit 1
  fi
}

if [[ " $PARTS " == *" a "* || " $PARTS " == *" d "* ]] && [ -z "${SERVE_BIN:-}" ]; then
  cargo build --release -q --bin hearth
fi

if [[ " $PARTS " == *" a "* ]]; then
  echo "== (a) Hearth over HTTP" >&2
  serve_hearth "$OUT/hearth.json" --tokens "$TOKENS"
fi

if [[ " $PARTS " == *" c "* ]]; then
  echo "== (c) llama-cpp-python server" >&2
  VENV=$OUT/venv-llama-cpp-python
  ensure_llama_cpp_python "$VENV" "$LLAMA_CPP_PYTHON"
  PORT=$(free_port)
  "$VENV/bin/python" -m llama_cpp.server --model "$MODEL" --n_threads "$THREADS" --n_threads_batch "$THREADS" \
    --n_ctx 8192 --n_batch 512 --interrupt_requests False --host 127.0.0.1 --port "$PORT" >"$OUT/llama-cpp-python.log" 2>&1 &
  PID=$!
  if wait_ready "http://127.0.0.1:$PORT/v1/models" "$PID"; then
    python3 bench/engine/client.py --url "http://127.0.0.1:$PORT/v1" --model "$MODEL" \
      --label llama-cpp-python --pid "$PID" --tokens "$TOKENS" | tee "$OUT/llama-cpp-python.json" >&2
  else
    echo "llama-cpp-python's server did not start (see $OUT/llama-cpp-python.log)" >&2
  fi
  stop "$PID"
fi

if [[ " $PARTS " == *" d "* ]]; then
  echo "== (d) Hearth: a request arriving mid-stream ($STREAMS streams)" >&2
  serve_hearth "$OUT/arrival.json" --measure arrival --streams "$STREAMS" --tokens "$ARRIVAL_TOKENS"
fi

python3 bench/engine/report.py "$OUT" "$THREADS" "$TOKENS" | tee "$OUT/table.md"
