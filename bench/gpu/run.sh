#!/usr/bin/env bash
# The GPU benchmark: the CUDA build of hearth on a lent GPU machine, measured on the GPU
# and on that machine's CPU side by side, with a ~1B-parameter llama-architecture model
# generated there with random weights (speed does not depend on what weights say).
#
#   bench/gpu/run.sh pack       here: the stripped CUDA build (make build-cuda) and the
#                               `gguf` package, xz-compressed into bench/out/gpu/ (the
#                               device tool carries at most 64 MiB a call, working tree
#                               included); SmolLM2 (98 MB) split into parts for `stage`.
#                               Prints the device-tool calls to make.
#   bench/gpu/run.sh stage      there: keeps the carried model parts in /tmp/hearth-gpu for
#                               the next call (a warm machine keeps its files ~30 s idle)
#   bench/gpu/run.sh            there: the benchmark (what it could not do, it says); the
#                               results go to $OUT (gpu-bench.md, one JSON per run)
#   bench/gpu/run.sh selftest   here (make test): the same run on this machine's CPU with
#                               the CPU build, the tiny model and short counts
#
# On the GPU machine it uses that machine's own CUDA 13 cuBLAS (`find` for
# libcublasLt.so.13: PyTorch's under /opt/torch/.venv), never a carried one (cuBLASLt is
# 542 MB), and the driver's libcuda.so.1. The CPU side runs the same binary with
# CUDA_VISIBLE_DEVICES= (no GPU visible, so not even prompt processing reaches it), which
# is also the fall-back path a CUDA build takes on a host without a GPU.
#
# What it measures (bench/gpu/measure.py, per model and device): time to first token,
# decode tokens/s at 1, 8 and 32 concurrent streams, prefill tokens/s of a 2,048-token
# prompt, and GPU memory (the model's placement in /v1/models, nvidia-smi's used memory).
#
# Environment: GPU_BENCH_SIZE (1b), GPU_BENCH_TYPE (q8_0), GPU_BENCH_STREAMS (1,8,32),
# GPU_BENCH_TOKENS_GPU (128), GPU_BENCH_TOKENS_CPU (32), GPU_BENCH_PREFILL (2048),
# GPU_BENCH_DEADLINE (seconds this run may take, 500: under the tool's 600 s a call),
# HEARTH_GPU_BENCH_BIN (a hearth binary instead of the packed one), GPU_BENCH_PYTHON.
set -uo pipefail
cd "$(dirname "$0")/../.."

mode=${1:-run}
packed=bench/out/gpu
work=${GPU_BENCH_WORK:-/tmp/hearth-gpu}
out=${OUT:-$work/out}
started=$SECONDS
deadline=${GPU_BENCH_DEADLINE:-500}
notes=()

log() { echo "gpu-bench: $*" >&2; }
note() { notes+=("$*"); log "could not: $*"; }
left() { echo $((deadline - (SECONDS - started))); }

pack() {
  set -e
  local bin stage size
  bin=$(bash mk/cuda.sh path)
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' RETURN
  mkdir -p "$packed" "$stage/bin" "$stage/pylib"
  strip -o "$stage/bin/hearth" "$bin"
  # The GPU machine has numpy and pyyaml; `gguf` (pure Python) travels.
  cp -r "$(.venv-embed/bin/python -c 'import gguf, os; print(os.path.dirname(gguf.__file__))')" "$stage/pylib/"
  log "compressing $(du -h "$stage/bin/hearth" | cut -f1) of stripped binary"
  tar -C "$stage" -cf - bin pylib | xz -9e -T0 >"$packed/hearth-cuda.tar.xz"
  sha256sum "$stage/bin/hearth" | cut -d' ' -f1 >"$packed/hearth.sha256"
  size=$(stat -c %s "$packed/hearth-cuda.tar.xz")
  log "$packed/hearth-cuda.tar.xz: $((size / 1024 / 1024)) MiB"
  [ "$size" -lt $((56 * 1024 * 1024)) ] ||
    log "warning: over 56 MiB, with the working tree it may not fit in one call (64 MiB)"
  local smol=models/SmolLM2-135M-Instruct.Q4_1.gguf parts=()
  rm -rf "$packed/models" && mkdir -p "$packed/models"
  if [ -f "$smol" ]; then
    split -b 40M -d "$smol" "$packed/models/$(basename "$smol").part-"
    sha256sum "$smol" | cut -d' ' -f1 >"$packed/models/$(basename "$smol").sha256"
    mapfile -t parts < <(cd "$packed/models" && ls ./*.part-*)
  fi
  echo "Device-tool calls (run's arguments):"
  local i=0
  for p in "${parts[@]}"; do
    i=$((i + 1))
    local carry="[\"$packed/models/${p#./}\"]"
    [ "$i" = 1 ] && carry="[\"$packed/models/${p#./}\", \"$packed/models/$(basename "$smol").sha256\"]"
    echo "  optional, SmolLM2 part $i: command='bash bench/gpu/run.sh stage' carry=$carry timeout_s=120"
  done
  echo "  the benchmark: command='bash bench/gpu/run.sh' carry=[\"$packed/hearth-cuda.tar.xz\", \"$packed/hearth.sha256\"] timeout_s=560"
}

# Model parts carried by this call, kept for the next; a model whose parts are all here
# (its sha256 matches) is put together.
stage() {
  mkdir -p "$work/parts" "$work/models"
  cp -f "$packed"/models/*.part-* "$packed"/models/*.sha256 "$work/parts/" 2>/dev/null || true
  local sum
  for sum in "$work"/parts/*.sha256; do
    [ -f "$sum" ] || continue
    local name
    name=$(basename "$sum" .sha256)
    [ -f "$work/models/$name" ] && continue
    cat "$work/parts/$name".part-* >"$work/models/$name.tmp" 2>/dev/null || continue
    if [ "$(sha256sum "$work/models/$name.tmp" | cut -d' ' -f1)" = "$(cat "$sum")" ]; then
      mv "$work/models/$name.tmp" "$work/models/$name"
      log "staged $name"
    else
      rm -f "$work/models/$name.tmp"
      log "$name: $(find "$work/parts" -name "$name.part-*" | wc -l) part(s) here so far"
    fi
  done
}

# A Python with numpy (and `gguf`, carried or installed).
python_bin() {
  local p
  for p in ${GPU_BENCH_PYTHON:-} /opt/torch/.venv/bin/python3 python3 .venv-embed/bin/python; do
    if PYTHONPATH="$work/pylib" "$p" -c 'import numpy, gguf' 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# serve LABEL MODEL_NAME GGUF GPU_LAYERS: starts hearth, waits until the model is ready;
# sets SERVER_PID and BASE.
serve() {
  local label=$1 name=$2 gguf=$3 layers=$4 port dir
  port=$(free_port)
  dir=$work/run-$label-$name
  rm -rf "$dir" && mkdir -p "$dir/data"
  cat >"$dir/hearth.toml" <<EOF
[server]
listen = "127.0.0.1:$port"
[storage]
data_dir = "$dir/data"
[[models]]
name = "$name"
backend = "embedded"
path = "$gguf"
context = 16384
parallel = 32
gpu_layers = $layers
EOF
  local env=()
  [ "$label" = cpu ] && env=(CUDA_VISIBLE_DEVICES=)
  env "${env[@]}" HEARTH_LOG=info "$BIN" serve -c "$dir/hearth.toml" >"$out/serve-$label-$name.log" 2>&1 &
  SERVER_PID=$!
  BASE=http://127.0.0.1:$port
  local i
  for i in $(seq 1 600); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      note "$label $name: hearth exited while starting (serve-$label-$name.log: $(tail -n 3 "$out/serve-$label-$name.log" | tr '\n' ' '))"
      return 1
    fi
    if curl -sf "$BASE/v1/models" 2>/dev/null | grep -q '"status":"ready"'; then
      log "$label $name: ready after $((i / 5)) s"
      return 0
    fi
    sleep 0.2
  done
  note "$label $name: not ready in 120 s"
  stop
  return 1
}

stop() {
  [ -n "${SERVER_PID:-}" ] || return 0
  kill "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  SERVER_PID=
}

gpu_used_mib() {
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -n 1 | tr -d ' '
}

# measure LABEL NAME GGUF GPU_LAYERS TOKENS
measure() {
  local label=$1 name=$2 gguf=$3 layers=$4 tokens=$5
  if [ "$(left)" -lt 60 ]; then
    note "$label $name: skipped, $(left) s left of the run's $deadline s"
    return
  fi
  local idle
  idle=$(gpu_used_mib)
  serve "$label" "$name" "$gguf" "$layers" || return
  local used
  used=$(gpu_used_mib)
  log "$label $name: nvidia-smi memory.used ${idle:-?} MiB before, ${used:-?} MiB loaded"
  timeout "$(($(left) - 15))" "$PY" bench/gpu/measure.py --base "$BASE" --model "$name" \
    --label "$label" --streams "${GPU_BENCH_STREAMS:-1,8,32}" --tokens "$tokens" \
    --prefill "${GPU_BENCH_PREFILL:-2048}" --out "$out/$label-$name.json" ||
    note "$label $name: measure.py failed or ran out of time (see above)"
  "$PY" - "$out/$label-$name.json" "${idle:-}" "${used:-}" <<'EOF' 2>/dev/null
import json, sys
p, idle, used = sys.argv[1:4]
r = json.load(open(p))
r["nvidia_smi_used_mib"] = {"before": int(idle) if idle else None, "loaded": int(used) if used else None}
json.dump(r, open(p, "w"), indent=1)
EOF
  if [ "$label" = cpu ] && [ "$layers" != 0 ]; then
    grep -q 'running on CPU' "$out/serve-$label-$name.log" &&
      log "cpu $name: the CUDA build's fall-back line: $(grep -m1 'running on CPU' "$out/serve-$label-$name.log" | cut -c1-240)"
  fi
  stop
}

summary() {
  "$PY" - "$out" "$@" <<'EOF'
import glob, json, os, sys
out, notes = sys.argv[1], sys.argv[2:]
rows = []
for p in sorted(glob.glob(os.path.join(out, "*.json"))):
    r = json.load(open(p))
    dec = {d["streams"]: d for d in r.get("decode", [])}
    def tok(n):
        d = dec.get(n, {})
        return "-" if "tok_s" not in d else f'{d["tok_s"]} ({d.get("per_stream_tok_s")}/stream)'
    pre = r.get("prefill") or {}
    pl = r.get("placement") or {}
    mem = pl.get("gpu_memory_bytes")
    smi = r.get("nvidia_smi_used_mib") or {}
    rows.append([r["model"], r["label"], pl.get("device", "?"),
                 str(r.get("ttft_s", "-")), tok(1), tok(8), tok(32),
                 f'{pre.get("tok_s", "-")} ({pre.get("prompt_tokens", "?")} tok, {pre.get("ttft_s", "?")} s)',
                 "-" if mem is None else f"{mem / 2**20:.0f} MiB",
                 "-" if smi.get("loaded") is None else f'{smi["loaded"] - (smi.get("before") or 0)} MiB'])
head = ["model", "run", "device", "TTFT s", "decode tok/s x1", "x8", "x32",
        "prefill tok/s", "GPU memory (hearth)", "GPU memory (nvidia-smi)"]
lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
lines += ["| " + " | ".join(r) + " |" for r in rows]
if notes:
    lines += ["", "Could not:"] + [f"- {n}" for n in notes]
text = "\n".join(lines)
print(text)
open(os.path.join(out, "gpu-bench.md"), "w").write(text + "\n")
EOF
}

run() {
  mkdir -p "$work" "$out"
  stage
  if [ -n "${HEARTH_GPU_BENCH_BIN:-}" ]; then
    BIN=$HEARTH_GPU_BENCH_BIN
  elif [ -f "$packed/hearth-cuda.tar.xz" ]; then
    if [ ! -x "$work/bin/hearth" ] ||
      [ "$(sha256sum "$work/bin/hearth" | cut -d' ' -f1)" != "$(cat "$packed/hearth.sha256" 2>/dev/null)" ]; then
      xz -dc "$packed/hearth-cuda.tar.xz" | tar -C "$work" -xf - || { log "cannot unpack the build"; exit 1; }
    fi
    BIN=$work/bin/hearth
  else
    log "no $packed/hearth-cuda.tar.xz: run 'bash bench/gpu/run.sh pack' here and carry it"
    exit 1
  fi
  log "$(uname -m), $(nproc) CPUs, glibc $(ldd --version 2>/dev/null | head -n 1 | grep -o '[0-9.]*$')"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total,memory.used --format=csv 2>&1 | sed 's/^/gpu-bench: /' >&2
  else
    note "no nvidia-smi: no GPU here, the GPU side is not measured"
  fi
  # The host's CUDA 13 cuBLAS; the CUDA runtime is linked into the binary.
  local lt=""
  if ! "$BIN" --version >/dev/null 2>&1; then
    lt=$(find /opt /usr /root /home -name libcublasLt.so.13 2>/dev/null | head -n 1)
    [ -n "$lt" ] || lt=$(timeout 60 find / -xdev -name libcublasLt.so.13 2>/dev/null | head -n 1)
    if [ -n "$lt" ]; then
      LD_LIBRARY_PATH="$(dirname "$lt")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      export LD_LIBRARY_PATH
      log "cuBLAS 13 from $(dirname "$lt")"
    fi
  fi
  if ! "$BIN" --version >&2; then
    log "hearth does not start: $(ldd "$BIN" 2>&1 | grep 'not found' | tr '\n' ' ')"
    exit 1
  fi
  "$BIN" doctor 2>/dev/null | grep -E '^ *(ok|WARN|FAIL) +(build|gpu) ' | sed 's/^/gpu-bench: doctor: /' >&2
  PY=$(python_bin) || { log "no Python with numpy and gguf"; exit 1; }
  export PYTHONPATH="$work/pylib${PYTHONPATH:+:$PYTHONPATH}"
  command -v curl >/dev/null || { log "no curl"; exit 1; }

  local size=${GPU_BENCH_SIZE:-1b} type=${GPU_BENCH_TYPE:-q8_0}
  local name=synthetic-$size-$type model=$work/models/synthetic-$size-$type.gguf
  mkdir -p "$work/models"
  if [ ! -f "$model" ]; then
    "$PY" bench/gpu/make_model.py "$model" --size "$size" --type "$type" >&2 ||
      { note "make_model.py failed"; model=""; }
  fi
  local gpu=1
  nvidia-smi -L >/dev/null 2>&1 || gpu=0
  local models=()
  [ -n "$model" ] && models+=("$name=$model")
  local m
  for m in "$work"/models/*.gguf; do
    [ -f "$m" ] && [ "$m" != "$model" ] && models+=("$(basename "$m" .gguf | tr 'A-Z.' 'a-z-')=$m")
  done
  [ -e "$work/models/SmolLM2-135M-Instruct.Q4_1.gguf" ] ||
    note "SmolLM2 not measured: its GGUF (98 MB) is over what one call carries; stage its parts first (run.sh pack prints the calls)"
  for m in "${models[@]}"; do
    if [ "$gpu" = 1 ]; then
      measure gpu "${m%%=*}" "${m#*=}" 999 "${GPU_BENCH_TOKENS_GPU:-128}"
    fi
    measure cpu "${m%%=*}" "${m#*=}" 999 "${GPU_BENCH_TOKENS_CPU:-32}"
  done
  summary "${notes[@]}"
  log "done in $((SECONDS - started)) s; results in $out"
}

# Short counts on this machine's CPU: checks the script, measure.py and make_model.py
# before a lent GPU's minutes are spent on them.
selftest() {
  local bin=${HEARTH_GPU_BENCH_BIN:-${CARGO_TARGET_DIR:-target}/debug/hearth}
  [ -x "$bin" ] || { echo "selftest: no hearth binary at $bin (cargo build --bin hearth)" >&2; exit 1; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  HEARTH_GPU_BENCH_BIN=$bin GPU_BENCH_WORK=$tmp OUT=$tmp/out GPU_BENCH_SIZE=tiny \
    GPU_BENCH_TYPE=q8_0 GPU_BENCH_STREAMS=1,4 GPU_BENCH_TOKENS_CPU=8 GPU_BENCH_PREFILL=256 \
    GPU_BENCH_PYTHON=${GPU_BENCH_PYTHON:-.venv-embed/bin/python} GPU_BENCH_DEADLINE=120 \
    bash "$0" run
  local r=$tmp/out/cpu-synthetic-tiny-q8_0.json
  [ -f "$r" ] || { echo "selftest: no $r" >&2; exit 1; }
  .venv-embed/bin/python - "$r" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["placement"]["device"] == "cpu", r
assert all("tok_s" in d and d["tok_s"] for d in r["decode"]), r["decode"]
assert [d["streams"] for d in r["decode"]] == [1, 4], r["decode"]
assert r["prefill"]["prompt_tokens"] >= 200, r["prefill"]
assert isinstance(r["ttft_s"], float), r
print("selftest: ok:", json.dumps(r["decode"]))
EOF
}

case $mode in
  pack) pack ;;
  stage) stage ;;
  run) run ;;
  selftest) selftest ;;
  *) log "unknown mode '$mode' (pack, stage, run, selftest)"; exit 2 ;;
esac
