#!/bin/sh
# Healthy when the site answers 200 on its port.
set -eu
python3 -c '
import sys, urllib.request
with urllib.request.urlopen("http://127.0.0.1:8701/", timeout=3) as r:
    sys.exit(0 if r.status == 200 else 1)
'
