#!/bin/sh
# Stops the site when its folder leaves the repository: `hearth deploy apply`
# runs the current release's stop.sh (same variables as deploy.sh), records the
# removal in the history, and leaves no release current.
set -eu

pid_file="$DEPLOY_DATA_DIR/server.pid"
if [ -f "$pid_file" ]; then
  kill "$(cat "$pid_file")" 2>/dev/null || true
  rm -f "$pid_file"
fi
echo "static-site stopped"
