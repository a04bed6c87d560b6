"""What the client-library suites share: the fake upstream and `hearth serve`
started as processes on free loopback ports, a wait until every model is
loaded, and the loop that runs the tests, stops the processes and removes the
folders made for them.

Environment: HEARTH_BIN, FAKE_UPSTREAM_BIN (the debug binaries `make test-sdk`
builds)."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import traceback
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_fake_upstream(procs, script=None):
    """Starts the fake upstream (with `script`, a path: its replies by model
    name); returns its base URL (`http://…/v1`)."""
    args = [os.environ["FAKE_UPSTREAM_BIN"]] + (["--script", script] if script else [])
    fake = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    procs.append(fake)
    line = fake.stdout.readline().strip()
    assert line.startswith("listening on "), line
    return line.split(" ", 2)[2]


# Folders the suites made, removed by `stop` once the processes have ended.
_made = []


def mkdtemp(prefix):
    """A temporary folder that `stop` removes at the end."""
    path = tempfile.mkdtemp(prefix=prefix)
    _made.append(path)
    return path


def start_hearth(procs, models_toml, prefix, key=None, extra_toml=""):
    """`hearth serve` with `models_toml` (and `extra_toml`: keys…), a data folder
    of its own, its log off stdout; returns (base URL, data folder) once every
    model is loaded (embedded models load in the background)."""
    tmp = mkdtemp(prefix)
    config = os.path.join(tmp, "hearth.toml")
    with open(config, "w") as f:
        f.write(f'[storage]\ndata_dir = "{tmp}/data"\n\n[log]\nstdout = false\n\n{extra_toml}\n{models_toml}')
    port = free_port()
    procs.append(subprocess.Popen(
        [os.environ["HEARTH_BIN"], "serve", "--config", config, "--listen", f"127.0.0.1:{port}"]
    ))
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    deadline = time.time() + 120
    states = None
    while time.time() < deadline:
        try:
            req = urllib.request.Request(base + "/v1/models", headers=headers)
            with urllib.request.urlopen(req, timeout=2) as r:
                states = [m["status"] for m in json.load(r)["data"]]
            if all(s == "ready" for s in states):
                return base, tmp
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"hearth did not load its models in 120 s: {states}")


def stop(procs):
    """Ends the processes, last started first, then removes the folders made
    for them."""
    for p in reversed(procs):
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    while _made:
        shutil.rmtree(_made.pop(), ignore_errors=True)


def run(label, tests, procs):
    """Runs each test, prints ok/FAIL, stops the processes; returns the exit code."""
    passed = failed = 0
    try:
        for fn in tests:
            try:
                fn()
                passed += 1
                print(f"ok   {fn.__name__}")
            except Exception:
                failed += 1
                print(f"FAIL {fn.__name__}")
                traceback.print_exc()
    finally:
        stop(procs)
    print(f"{label}: {passed} passed, {failed} failed")
    return 1 if failed else 0
