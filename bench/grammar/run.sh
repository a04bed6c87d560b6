#!/usr/bin/env bash
# bench/grammar: what a JSON-schema grammar (structured outputs) costs the
# embedded engine's decode speed: the same prompt with and without
# `response_format: json_schema`, alternated, on one `hearth serve` (release).
# Env: MODEL (default the SmolLM2 GGUF), TOKENS per answer (256), ROUNDS (6).
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lib.sh
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
PHYS=$(lscpu -p=CORE,SOCKET 2>/dev/null | grep -v '^#' | sort -u | wc -l)
THREADS=${THREADS:-${PHYS:-$(nproc)}}
OUT=bench/out/grammar
mkdir -p "$OUT"
[ -f "$MODEL" ] || make "$MODEL"
cargo build --release -q --bin hearth
serve_hearth "$OUT" "[[models]]
name = \"m\"
path = \"$PWD/$MODEL\"
context = 2048
parallel = 1
threads = $THREADS
tools = \"pass\""
python3 bench/grammar/client.py --url "http://127.0.0.1:$PORT/v1" --model m \
  --tokens "${TOKENS:-256}" --rounds "${ROUNDS:-6}" | tee "$OUT/results.jsonl" >&2
stop "$PID"
python3 - "$OUT/results.jsonl" <<'PY'
import json, sys
rows = {r["kind"]: r for r in map(json.loads, open(sys.argv[1]))}
free = rows["free"]["decode_tps_median"]
print("| answer | rounds | tokens (median) | decode tok/s (median) | vs free | TTFT ms (median) |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for k, r in rows.items():
    print(f'| {k} | {r["rounds"]} | {r["tokens_median"]} | {r["decode_tps_median"]} | {r["decode_tps_median"] / free:.2f} | {r["ttft_ms_median"]} |')
PY
