#!/usr/bin/env bash
# Upgrade benchmark (issue 19), each figure beside its baseline in the same command:
#   lost     requests that failed while `hearth deploy apply` upgraded a running
#            Hearth under steady load (wrk, 8 connections), by handover (the
#            default: `systemctl reload`, SIGUSR2, the socket passed to the new
#            process) beside a plain restart (stop, then start) under the same
#            load. Twice: a new connection per request, and keep-alive connections.
#   ready    seconds from `hearth deploy apply` to its end (staged, switched,
#            restarted, a new process answering /ready 200), median of ROUNDS.
#   size     the release tarball apply uploads, and the binary in it.
# The host is this machine (`target = "local"`, installed under a temporary root);
# a small notify listener plays systemd's part (it learns the new main pid).
# Usage: bash bench/upgrade/run.sh   (writes bench/out/upgrade.md)
# Env: ROUNDS (3), DUR (8, seconds of load per upgrade).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/bench/out; mkdir -p "$OUT"
WORK=$(mktemp -d)
cleanup() {
  [ -f "$WORK/main.pid" ] && kill "$(cat "$WORK/main.pid")" 2>/dev/null
  kill $(jobs -p) 2>/dev/null; sleep 0.5; [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-8}

command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
cargo build --release --locked --bin hearth --bin fake-upstream >/dev/null
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
HEARTH=$TARGET/release/hearth
FAKE=$TARGET/release/fake-upstream
. bench/lib.sh

UP=$(free_port); PORT=$(free_port)
"$FAKE" --port "$UP" > /dev/null 2>&1 &
HOSTROOT=$WORK/root
mkdir -p "$HOSTROOT"
cat > "$WORK/hearth.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
workers = 1
[storage]
data_dir = "$WORK/data"
[log]
stdout = false
level = "warn"
[[models]]
name = "m"
backend = "upstream"
base_url = "http://127.0.0.1:$UP/v1"
max_concurrency = 4096
max_queue = 4096
TOML

# Releases: the same binary under successive versions.
N=$(( 4 * ROUNDS + 1 ))
for i in $(seq 0 "$N"); do
  v=1.0.$i; d=$WORK/build/hearth-$v
  mkdir -p "$d/bin"; cp "$HEARTH" "$d/bin/hearth"
  tar -czf "$WORK/hearth-$v-x86_64-unknown-linux-gnu.tar.gz" -C "$WORK/build" "hearth-$v"
done
TARBALL_BYTES=$(stat -c %s "$WORK/hearth-1.0.0-x86_64-unknown-linux-gnu.tar.gz")
BINARY_BYTES=$(stat -c %s "$HEARTH")

# systemd's part: the main pid, updated from MAINPID= notifications.
python3 - "$WORK/notify" "$WORK/main.pid" <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1])
while True:
    for line in s.recv(256).decode().splitlines():
        if line.startswith("MAINPID="):
            tmp = sys.argv[2] + ".tmp"; open(tmp, "w").write(line[8:]); os.rename(tmp, sys.argv[2])
PY
until [ -S "$WORK/notify" ]; do sleep 0.05; done

start() {
  NOTIFY_SOCKET=$WORK/notify "$HOSTROOT/opt/hearth/current/bin/hearth" serve --config "$WORK/hearth.toml" >> "$WORK/hearth.log" 2>&1 &
  echo $! > "$WORK/main.pid"
}
# The two ways `apply` restarts the service.
cat > "$WORK/reload.sh" <<SH
#!/bin/sh
pid=\$(cat "$WORK/main.pid" 2>/dev/null)
if [ -n "\$pid" ] && kill -0 "\$pid" 2>/dev/null; then kill -USR2 "\$pid"; else exit 9; fi
SH
cat > "$WORK/restart.sh" <<SH
#!/bin/sh
pid=\$(cat "$WORK/main.pid" 2>/dev/null)
if [ -n "\$pid" ]; then kill "\$pid" 2>/dev/null; while kill -0 "\$pid" 2>/dev/null; do sleep 0.01; done; fi
NOTIFY_SOCKET=$WORK/notify "$HOSTROOT/opt/hearth/current/bin/hearth" serve --config "$WORK/hearth.toml" >> "$WORK/hearth.log" 2>&1 &
echo \$! > "$WORK/main.pid"
SH
chmod +x "$WORK/reload.sh" "$WORK/restart.sh"

VERSION=0
apply() { # restart-script -> prints seconds
  local v=1.0.$VERSION; VERSION=$((VERSION + 1))
  local tb=$WORK/hearth-$v-x86_64-unknown-linux-gnu.tar.gz
  printf '[host]\nname = "bench"\ntarget = "local"\n[hearth]\ntls = "off"\nlisten = "127.0.0.1:%s"\n[release]\nversion = "%s"\nurl = "https://example.invalid/hearth-%s-x86_64-unknown-linux-gnu.tar.gz"\nsha256 = "%s"\n' \
    "$PORT" "$v" "$v" "$(sha256sum "$tb" | cut -d' ' -f1)" > "$WORK/deploy.toml"
  local t0; t0=$(date +%s.%N)
  "$HEARTH" deploy apply -m "$WORK/deploy.toml" --tarball "$tb" --root "$HOSTROOT" \
    --restart "$1" --health-url "http://127.0.0.1:$PORT/ready" --timeout 60s >> "$WORK/apply.log" 2>&1 \
    || { echo "apply failed:" >&2; tail -20 "$WORK/apply.log" >&2; exit 1; }
  awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN {printf "%.2f\n", a - b}' 
}

# The first install, started by hand (as the installer's `systemctl start`).
apply "$WORK/restart.sh" > /dev/null

cat > "$WORK/chat.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":8}'
LUA
# load MODE(close|keepalive) RESTART-SCRIPT: wrk for DUR s with one apply in the middle;
# appends "requests lost" to $WORK/lost-..., apply seconds to $WORK/ready-...
load() {
  local hdr=(); [ "$1" = close ] && hdr=(-H "Connection: close")
  local name; name=$(basename "$2" .sh)
  wrk -t2 -c8 -d"${DUR}s" "${hdr[@]}" -s "$WORK/chat.lua" "http://127.0.0.1:$PORT/v1/chat/completions" > "$WORK/wrk.txt" &
  local w=$!
  sleep $(( DUR / 3 ))
  apply "$2" >> "$WORK/ready-$name.txt"
  wait "$w"
  local total errors non2xx
  total=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
  errors=$(awk '/Socket errors/ {gsub(",",""); print $4+$6+$8+$10}' "$WORK/wrk.txt")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk.txt")
  echo "$total $(( ${errors:-0} + ${non2xx:-0} ))" >> "$WORK/lost-$1-$name.txt"
}
for r in $(seq "$ROUNDS"); do
  for mode in close keepalive; do
    order="reload restart"; [ $((r % 2)) = 0 ] && order="restart reload"
    for m in $order; do load "$mode" "$WORK/$m.sh"; done
  done
done

sum() { awk '{t+=$1; l+=$2} END {printf "%d of %d", l, t}' "$1"; }
{
  echo "## Upgrades under load: handover vs restart ($(date -u +%F), $(nproc) cores, ROUNDS=$ROUNDS, ${DUR} s of wrk -c8 per upgrade)"
  echo
  echo "| | handover (\`systemctl reload\`, the default) | restart (stop, then start) |"
  echo "|---|---|---|"
  echo "| requests lost, a new connection per request | $(sum "$WORK/lost-close-reload.txt") | $(sum "$WORK/lost-close-restart.txt") |"
  echo "| requests lost, keep-alive connections | $(sum "$WORK/lost-keepalive-reload.txt") | $(sum "$WORK/lost-keepalive-restart.txt") |"
  echo "| \`apply\` to ready, s (median of $((2 * ROUNDS))) | $(median < "$WORK/ready-reload.txt") | $(median < "$WORK/ready-restart.txt") |"
  echo
  echo "Release tarball: $(( TARBALL_BYTES / 1024 / 1024 )) MiB ($TARBALL_BYTES bytes), binary $(( BINARY_BYTES / 1024 / 1024 )) MiB (release build of this machine, \`cargo build --release\`)."
} | tee "$OUT/upgrade.md"
