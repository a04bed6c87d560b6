#!/usr/bin/env bash
# Scale-out, measured side by side in one run:
#   history   the chat UI's two heaviest reads, on SQLite (data_dir) and on a private
#             PostgreSQL (database_url), same build and data: the conversation list
#             (GET /api/hearth/conversations, a page of 50 of 200) and one conversation
#             of 500 messages (GET /api/hearth/conversations/{id}); wrk -c16, req/s and
#             p50/p99.
#   replicas  /v1/chat/completions (the canned nginx upstream of bench/gateway) through
#             an nginx load balancer in front of three Hearth replicas sharing the
#             Postgres, and the same balancer in front of one of them; wrk -c64.
# Each figure is the median of ROUNDS (3) interleaved rounds of DUR (5s). Postgres runs
# with its default durability (fsync on), as a real one would; SQLite with Hearth's
# (WAL, synchronous=NORMAL).
# Usage: bash bench/scaleout/run.sh   (writes bench/out/scaleout.md)
#        HEARTH_BIN=/path/to/hearth bash bench/scaleout/run.sh   measures that build
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
source bench/lib.sh
source bench/gateway/common.sh
OUT=$ROOT/bench/out; mkdir -p "$OUT"
WORK=$(mktemp -d)
chmod 755 "$WORK"
PIDS=()
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  for p in "${PIDS[@]}"; do stop "$p"; done
  for c in upstream lb1 lb3; do [ -f "$WORK/$c.pid" ] && nginx -c "$WORK/$c.conf" -s stop 2>/dev/null; done
  [ -f "$WORK/pg/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
DUR=${DUR:-5s}
ROUNDS=${ROUNDS:-3}

for p in wrk nginx; do command -v $p >/dev/null || { apt-get install -y -qq wrk nginx-light >/dev/null; break; }; done
[ -n "$PGBIN" ] || apt-get install -y -qq postgresql >/dev/null
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
if [ -z "${HEARTH_BIN:-}" ]; then
  cargo build --release --locked --bin hearth --bin fake-upstream >/dev/null
  TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  HEARTH_BIN=$TARGET/release/hearth
  FAKE_BIN=$TARGET/release/fake-upstream
fi
FAKE_BIN=${FAKE_BIN:-$(dirname "$HEARTH_BIN")/fake-upstream}

# A private PostgreSQL (as the postgres user when run as root: it refuses root).
PGPORT=$(free_port)
mkdir -p "$WORK/pg"; [ "$(id -u)" = 0 ] && chown postgres "$WORK/pg"
as_pg "$PGBIN/initdb" -D "$WORK/pg" -U hearth --auth=trust >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/log" -w \
  -o "-p $PGPORT -k $WORK/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U hearth -d postgres -qc 'CREATE DATABASE hearth' >/dev/null
DB=postgres://hearth@127.0.0.1:$PGPORT/hearth

FAKE=$(free_port)
"$FAKE_BIN" "$FAKE" > "$WORK/fake.log" 2>&1 &
PIDS+=($!)
UP=$(free_port); UPS=$(free_port)
canned_upstream_conf "$WORK" "$UP" "$UPS" > "$WORK/upstream.conf"
nginx -c "$WORK/upstream.conf" -e "$WORK/nginx-error.log"

# serve NAME [database_url]: a release hearth with the fake (chat) and canned models.
declare -A PORT
serve() {
  local name=$1 db=${2:-}
  PORT[$name]=$(free_port)
  {
    printf 'default_model = "chat"\n'
    hearth_toml "127.0.0.1:${PORT[$name]}" "$WORK/data-$name" "chat=http://127.0.0.1:$FAKE/v1" "canned=http://127.0.0.1:$UP/v1"
  } > "$WORK/$name.toml"
  # database_url through the environment (hearth_toml writes the [storage] table).
  env ${db:+HEARTH_DATABASE_URL=$db} "$HEARTH_BIN" serve --config "$WORK/$name.toml" > "$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  wait_ready "http://127.0.0.1:${PORT[$name]}/ready" "${PIDS[-1]}" || { cat "$WORK/$name.log" >&2; exit 1; }
}
serve sqlite
serve postgres "$DB"

# The same history in each: 200 conversations of one exchange, and one of 500
# messages (250 exchanges), written through the API as the UI writes it.
seed() {
  python3 - "http://127.0.0.1:${PORT[$1]}" <<'PY'
import http.client, json, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
def call(method, path, body=None):
    c.request(method, path, body=json.dumps(body) if body is not None else None,
              headers={"Content-Type": "application/json"})
    r = c.getresponse(); data = r.read()
    assert r.status in (200, 201), (r.status, data[:300])
    return data
def conversation():
    return json.loads(call("POST", "/api/hearth/conversations", {}))["id"]
def say(cid, text):
    assert b'"type":"done"' in call("POST", f"/api/hearth/conversations/{cid}/messages", {"content": text})
for i in range(200):
    say(conversation(), f"question {i}")
big = conversation()
for i in range(250):
    say(big, f"message {i}: " + "words " * 20)
print(big)
PY
}
BIG_sqlite=$(seed sqlite)
BIG_postgres=$(seed postgres)


declare -A RUNS
for round in $(seq 1 "$ROUNDS"); do
  order="sqlite postgres"; [ $((round % 2)) = 0 ] && order="postgres sqlite"
  for store in $order; do
    big=BIG_$store
    for what in list conversation; do
      if [ $what = list ]; then path="/api/hearth/conversations?limit=50"; else path="/api/hearth/conversations/${!big}"; fi
      wrk -t2 -c16 -d"$DUR" --latency "http://127.0.0.1:${PORT[$store]}$path" > "$WORK/wrk.txt"
      read -r p50 p99 < <(lat < "$WORK/wrk.txt")
      RUNS[$store/$what/rps]+=" $(rps < "$WORK/wrk.txt")"
      RUNS[$store/$what/p50]+=" $p50"; RUNS[$store/$what/p99]+=" $p99"
      echo "round $round $store $what: ${RUNS[$store/$what/rps]##* } req/s" >&2
    done
  done
done

# Replicas: two more on the same Postgres, and two balancers (one over all three,
# one over the first alone), so both paths pay for the same proxy.
serve r2 "$DB"
serve r3 "$DB"
lb_conf() { # NAME PORT SERVERS...
  local name=$1 port=$2; shift 2
  {
    printf 'worker_processes 1;\npid %s/%s.pid;\nerror_log %s/nginx-error.log;\nevents { worker_connections 4096; }\nhttp {\n  access_log off;\n' "$WORK" "$name" "$WORK"
    printf '  upstream h {\n'; for s in "$@"; do printf '    server 127.0.0.1:%s;\n' "$s"; done; printf '    keepalive 64;\n  }\n'
    printf '  server { listen 127.0.0.1:%s; location / { proxy_pass http://h; proxy_http_version 1.1; proxy_set_header Connection ""; } }\n}\n' "$port"
  } > "$WORK/$name.conf"
  nginx -c "$WORK/$name.conf" -e "$WORK/nginx-error.log"
}
LB1=$(free_port); LB3=$(free_port)
lb_conf lb1 "$LB1" "${PORT[postgres]}"
lb_conf lb3 "$LB3" "${PORT[postgres]}" "${PORT[r2]}" "${PORT[r3]}"
cat > "$WORK/chat.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"canned","messages":[{"role":"user","content":"Say hello"}]}'
LUA
for round in $(seq 1 "$ROUNDS"); do
  order="lb1 lb3"; [ $((round % 2)) = 0 ] && order="lb3 lb1"
  for lb in $order; do
    port=$LB1; [ $lb = lb3 ] && port=$LB3
    wrk -t2 -c64 -d"$DUR" -s "$WORK/chat.lua" "http://127.0.0.1:$port/v1/chat/completions" > "$WORK/wrk.txt"
    RUNS[$lb]+=" $(rps < "$WORK/wrk.txt")"
    echo "round $round $lb: ${RUNS[$lb]##* } req/s" >&2
  done
done

RES="$OUT/scaleout.md"
med() { tr ' ' '\n' | grep -v '^$' | median; }
{
  echo "| read | store | req/s (wrk -c16, median of $ROUNDS) | p50 ms | p99 ms |"
  echo "| --- | --- | ---: | ---: | ---: |"
  for what in list conversation; do
    label="conversation list (50 of 200)"; [ $what = conversation ] && label="one conversation, 500 messages"
    for store in sqlite postgres; do
      echo "| $label | $store | $(echo "${RUNS[$store/$what/rps]}" | med) | $(echo "${RUNS[$store/$what/p50]}" | med) | $(echo "${RUNS[$store/$what/p99]}" | med) |"
    done
  done
  echo
  echo "| /v1/chat/completions through nginx | req/s (wrk -c64, median of $ROUNDS) | per round |"
  echo "| --- | ---: | --- |"
  echo "| one replica | $(echo "${RUNS[lb1]}" | med) | ${RUNS[lb1]} |"
  echo "| three replicas | $(echo "${RUNS[lb3]}" | med) | ${RUNS[lb3]} |"
  echo
  python3 -c "
import statistics as st
one = [float(x) for x in '${RUNS[lb1]}'.split()]; three = [float(x) for x in '${RUNS[lb3]}'.split()]
print(f'Three replicas / one: {st.median(b / a for a, b in zip(one, three)):.2f}x on $(nproc) cores (every process of the run shares them).')"
} > "$RES"
cat "$RES"
