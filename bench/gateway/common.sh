# Shared by run.sh and instructions.sh (sourced): the canned upstream answers and
# Hearth's configuration for them, so both measure the same thing.

# A canned chat completion, and a canned 4-event stream ending in [DONE] (with `\n`
# written as nginx's `return` takes it).
CHAT='{"id":"c1","object":"chat.completion","created":0,"model":"canned","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, this is a canned answer."},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":8,"total_tokens":13}}'
chunk() { printf 'data: {"id":"c1","object":"chat.completion.chunk","created":0,"model":"canned","choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}\\n\\n' "$1"; }
SSE="$(chunk 'Hello ')$(chunk 'there, ')$(chunk 'canned ')$(chunk 'stream.')data: [DONE]\\n\\n"

# hearth_toml LISTEN DATA_DIR NAME=BASE_URL...: a config with the access log off
# (as the peers run), probes every minute, and each upstream model unthrottled.
hearth_toml() {
  local listen=$1 data=$2 m
  shift 2
  printf '[server]\nlisten = "%s"\n[storage]\ndata_dir = "%s"\n' "$listen" "$data"
  printf '[log]\nstdout = false\nlevel = "warn"\n[health]\nprobe_interval_secs = 60\n'
  for m in "$@"; do
    printf '[[models]]\nname = "%s"\nbackend = "upstream"\nbase_url = "%s"\nmax_concurrency = 4096\nmax_queue = 4096\n' "${m%%=*}" "${m#*=}"
  done
}

# canned_upstream_conf WORK PORT STREAM_PORT: an nginx config (one worker, pid and
# error log in WORK) answering every request with the canned completion on PORT and
# the canned stream on STREAM_PORT.
canned_upstream_conf() {
  cat <<NGX
worker_processes 1;
pid $1/upstream.pid;
error_log $1/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$2;  location / { default_type application/json;  return 200 '$CHAT'; } }
  server { listen 127.0.0.1:$3; location / { default_type text/event-stream; return 200 '$SSE'; } }
}
NGX
}
