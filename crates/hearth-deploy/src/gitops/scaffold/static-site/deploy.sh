#!/bin/sh
# Starts this release of the site in place of the one running. Hearth runs it
# from the release folder with DEPLOY_RELEASE, DEPLOY_RELEASE_DIR, DEPLOY_DATA_DIR
# (kept across releases) and the secrets service.toml names; on a failed health
# check it runs the previous release's deploy.sh again.
set -eu

port=8701
pid_file="$DEPLOY_DATA_DIR/server.pid"

if [ -f "$pid_file" ]; then
  old=$(cat "$pid_file")
  kill "$old" 2>/dev/null || true
  i=0
  while kill -0 "$old" 2>/dev/null && [ "$i" -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
  done
  rm -f "$pid_file"
fi

# nohup and its own log: the server outlives this script and the CI job.
nohup python3 -m http.server "$port" --bind 127.0.0.1 \
  --directory "$DEPLOY_RELEASE_DIR/www" >>"$DEPLOY_DATA_DIR/server.log" 2>&1 &
echo "$!" >"$pid_file"
echo "static-site $DEPLOY_RELEASE serving on 127.0.0.1:$port (pid $!)"
