# Helpers the benchmark scripts share (sourced after they cd to the repository root).

# A free loopback TCP port.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_ready URL PID: until URL answers 2xx (5 minutes at most), or PID exits.
wait_ready() {
  for _ in $(seq 1 600); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.5
  done
  return 1
}

# stop PID: ends a server and waits for it.
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# The median of the numbers on stdin, one a line.
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# serve_hearth OUT MODELS_TOML: the release `hearth serve` on a free port with its
# data and log under OUT and the given [[models]]; sets PORT and PID once /ready
# answers, exits the script (saying where the log is) if it does not.
serve_hearth() {
  PORT=$(free_port)
  printf '[server]\nlisten = "127.0.0.1:%s"\n[storage]\ndata_dir = "%s/data"\n%s\n' "$PORT" "$1" "$2" >"$1/hearth.toml"
  "${CARGO_TARGET_DIR:-target}/release/hearth" serve --config "$1/hearth.toml" >"$1/hearth.log" 2>&1 &
  PID=$!
  wait_ready "http://127.0.0.1:$PORT/ready" "$PID" || { stop "$PID"; echo "hearth did not start: $1/hearth.log" >&2; exit 1; }
}

# p50 and p99 in ms, from `wrk --latency` output on stdin: "P50 P99".
lat() { # p50 and p99 in ms from wrk --latency
  awk '/ 50%/ {p50=$2} / 99%/ {p99=$2} END {print p50, p99}' | python3 -c '
import sys
def ms(v):
    for u, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if v.endswith(u): return float(v[:-len(u)]) * f
    return float("nan")
a, b = sys.stdin.read().split()
print(f"{ms(a):.2f} {ms(b):.2f}")'
}

# Requests per second, from wrk's output on stdin.
rps() { awk '/Requests\/sec/ {print int($2)}'; }

# ensure_llama_cpp_python VENV SPEC: llama-cpp-python's server in VENV, built from
# source unless VENV already has one built this way: llama.cpp's defaults (native
# CPU flags, as pip does), but without Intel's AMX tile instructions, which crashed
# llama.cpp on a Sapphire Rapids VM (see mk/llama-server.sh). The marker file tells
# such a build from one made before, which is rebuilt.
ensure_llama_cpp_python() {
  local venv=$1 spec=$2 flags=""
  if [ -f "$venv/.built-without-amx" ] && "$venv/bin/python" -c 'import llama_cpp.server' 2>/dev/null; then
    return
  fi
  [ "$(uname -m)" = x86_64 ] && flags="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  rm -rf "$venv"
  python3 -m venv "$venv"
  CMAKE_ARGS="-DCMAKE_C_FLAGS='$flags' -DCMAKE_CXX_FLAGS='$flags'" \
    "$venv/bin/pip" install -q --no-binary llama-cpp-python "$spec"
  touch "$venv/.built-without-amx"
}
