#!/bin/sh
# Healthy when the site answers 200 on its port; one line saying why not.
set -eu
python3 -c '
import sys, urllib.request
try:
    with urllib.request.urlopen("http://127.0.0.1:8701/", timeout=3) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception as e:
    print(f"static-site is unhealthy: {e}")
    sys.exit(1)
'
