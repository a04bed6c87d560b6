#!/usr/bin/env bash
# Jobs benchmark (issue 12), each figure beside its baseline in the same command:
#   overhead  Hearth's own time per job: from submit to the job's end, minus the time
#             its sandboxed programs ran (the critic's check and the script). The
#             models are the fake upstream answering at once, so the model steps'
#             whole time (prompt building, the router, the HTTP round trip, storing
#             the reply) counts as Hearth's. Median of JOBS jobs, run one at a time.
#   run step  the run step's sandbox (wall time from the sandbox's start to the
#             script's end, and the step as a whole: input folder, sandbox, artifacts
#             stored) beside a bare `python3` run of the same script on the same venv
#             (fresh HOME and MPLCONFIGDIR, as the sandbox gives), one bare run after
#             each job.
# Usage: bash bench/jobs/run.sh   (writes bench/out/jobs.md)
# Env: JOBS (20), HEARTH_SANDBOX_VENV (the venv `make sandbox-venv` builds).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/bench/out; mkdir -p "$OUT"
WORK=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; sleep 0.3; [ -n "${KEEP:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT
JOBS=${JOBS:-20}
VENV=${HEARTH_SANDBOX_VENV:-$ROOT/.venv-sandbox}
[ -x "$VENV/bin/ruff" ] || { echo "no sandbox venv at $VENV: run \`make sandbox-venv\`" >&2; exit 1; }
VENV=$(realpath "$VENV")

cargo build --release --locked --bin hearth --bin fake-upstream >/dev/null
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
HEARTH=$TARGET/release/hearth
FAKE=$TARGET/release/fake-upstream
. bench/lib.sh

# The script the code model "writes": a matplotlib chart of the numbers, as a real
# job would. INPUT/OUTPUT are the sandbox's folders; the bare run gets its own.
cat > "$WORK/script.py" <<'PY'
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

IN = os.environ.get("BENCH_INPUT", "/input")
OUT = os.environ.get("BENCH_OUTPUT", "/output")
assert os.path.getsize(os.path.join(IN, "input.png")) > 0
values = [3, 1, 4, 1, 5, 9, 2, 6]
fig, ax = plt.subplots(figsize=(4, 3))
ax.bar(range(len(values)), values)
ax.set_title("numbers from the image")
fig.savefig(os.path.join(OUT, "chart.png"))
with open(os.path.join(OUT, "values.json"), "w") as f:
    json.dump(values, f)
print("chart written")
PY

python3 - "$WORK" "$JOBS" <<'PY'
import json, struct, sys, zlib
work, jobs = sys.argv[1], int(sys.argv[2]) + 1  # one warm-up job
code = open(f"{work}/script.py").read()
script = {
    "vision": ["A bar chart of eight numbers: 3 1 4 1 5 9 2 6."] * jobs,
    "planner": ["1. Read the numbers. 2. Plot them as bars. 3. Save chart.png and values.json."] * jobs,
    "coder": [f"Here is the script:\n\n```python\n{code}```\n"] * jobs,
}
json.dump(script, open(f"{work}/script.json", "w"))
# A 64x64 grey PNG.
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
raw = b"".join(b"\x00" + b"\x80" * 64 for _ in range(64))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 0, 0, 0, 0)) \
    + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
open(f"{work}/input.png", "wb").write(png)
PY

UP=$(free_port); PORT=$(free_port)
"$FAKE" --port "$UP" --script "$WORK/script.json" > "$WORK/fake.log" 2>&1 &
cat > "$WORK/hearth.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
[storage]
data_dir = "$WORK/data"
[sandbox]
venv = "$VENV"
[log]
stdout = false
level = "warn"
[[models]]
name = "vision"
backend = "upstream"
base_url = "http://127.0.0.1:$UP/v1"
vision = true
[[models]]
name = "planner"
backend = "upstream"
base_url = "http://127.0.0.1:$UP/v1"
[[models]]
name = "coder"
backend = "upstream"
base_url = "http://127.0.0.1:$UP/v1"
[jobs]
vision_model = "vision"
reasoning_model = "planner"
code_model = "coder"
concurrency = 1
TOML
"$HEARTH" serve --config "$WORK/hearth.toml" > "$WORK/hearth.log" 2>&1 &
for _ in $(seq 1 200); do
  curl -fsS "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$PORT/ready" >/dev/null || { cat "$WORK/hearth.log" >&2; exit 1; }

python3 - "$WORK" "$PORT" "$JOBS" "$VENV" "$OUT/jobs.md" <<'PY'
import json, os, platform, shutil, statistics, subprocess, sys, tempfile, time, urllib.request, uuid
work, port, n, venv, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
base = f"http://127.0.0.1:{port}"
image = open(f"{work}/input.png", "rb").read()

def submit():
    b = uuid.uuid4().hex
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"numbers.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + image + \
           (f"\r\n--{b}\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nplot these numbers"
            f"\r\n--{b}--\r\n").encode()
    req = urllib.request.Request(f"{base}/api/jobs", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={b}"})
    with urllib.request.urlopen(req) as r:
        assert r.status == 201, r.status
        return json.load(r)["id"]

def wait(job_id):
    while True:
        with urllib.request.urlopen(f"{base}/api/jobs/{job_id}") as r:
            v = json.load(r)
        if v["status"] in ("succeeded", "failed", "cancelled"):
            return v
        time.sleep(0.02)

def bare():
    """The same script, bare python3 on the same venv, fresh HOME and MPLCONFIGDIR."""
    d = tempfile.mkdtemp(dir=work)
    os.makedirs(f"{d}/in"); os.makedirs(f"{d}/out"); os.makedirs(f"{d}/home")
    shutil.copy(f"{work}/input.png", f"{d}/in/input.png")
    env = {"PATH": "/usr/bin:/bin", "HOME": f"{d}/home", "MPLCONFIGDIR": f"{d}/home/.matplotlib",
           "BENCH_INPUT": f"{d}/in", "BENCH_OUTPUT": f"{d}/out"}
    t = time.perf_counter()
    subprocess.run([f"{venv}/bin/python3", f"{work}/script.py"], env=env, check=True,
                   stdout=subprocess.DEVNULL, cwd=d)
    ms = (time.perf_counter() - t) * 1000
    assert os.path.getsize(f"{d}/out/chart.png") > 0
    shutil.rmtree(d)
    return ms

rows = []
for i in range(n + 1):
    v = wait(submit())
    assert v["status"] == "succeeded", (v["status"], v.get("error"))
    steps = {s["kind"]: s for s in v["steps"]}
    assert [s["kind"] for s in v["steps"]] == ["vision", "plan", "code", "critic", "run"], v["steps"]
    assert {f["name"] for f in v["files"] if f["role"] == "artifact"} == {"chart.png", "values.json"}, v["files"]
    usage = {k: json.loads(steps[k]["detail"])["usage"]["wall_ms"] for k in ("critic", "run")}
    total = v["finished_at"] - v["created_at"]
    sandbox = usage["critic"] + usage["run"]
    model_steps = sum(steps[k]["duration_ms"] for k in ("vision", "plan", "code"))
    row = dict(total=total, sandbox=sandbox, overhead=total - sandbox, model_steps=model_steps,
               critic_sandbox=usage["critic"], run_sandbox=usage["run"],
               run_step=steps["run"]["duration_ms"], critic_step=steps["critic"]["duration_ms"],
               queued=(v["started_at"] or v["created_at"]) - v["created_at"],
               gaps=total - sum(s["duration_ms"] for s in v["steps"]), bare=bare())
    if i > 0:  # the first is a warm-up (page cache, the fake's first connection)
        rows.append(row)

med = lambda k: statistics.median(r[k] for r in rows)
lo = lambda k: min(r[k] for r in rows)
hi = lambda k: max(r[k] for r in rows)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
lines = [
    f"Jobs: {n} jobs one after another (after one warm-up), each vision → plan → code → critic → run,",
    f"the models played by the fake upstream answering at once, the real sandbox; {os.cpu_count()} CPUs ({cpu}).",
    "",
    "| per job, ms | median | min | max |",
    "|---|---:|---:|---:|",
]
for k, label in [
    ("total", "submit → end (the job's own timestamps)"),
    ("sandbox", "sandboxed programs (critic check + script, sandbox wall time)"),
    ("overhead", "**Hearth's overhead** (total − sandbox; target ≤ 50)"),
    ("model_steps", "of which: the three model steps (fake upstream answers at once)"),
    ("gaps", "of which: between steps (queue, store, step changes)"),
    ("critic_step", "critic step as a whole"),
    ("run_step", "run step as a whole (input folder, sandbox, artifacts stored)"),
]:
    lines.append(f"| {label} | {med(k):.0f} | {lo(k):.0f} | {hi(k):.0f} |")
lines += [
    "",
    "| the script (matplotlib bar chart, PNG + JSON out) | median ms | min | max |",
    "|---|---:|---:|---:|",
    f"| bare `python3 script.py` (same venv, fresh HOME/MPLCONFIGDIR) | {med('bare'):.0f} | {lo('bare'):.0f} | {hi('bare'):.0f} |",
    f"| in the sandbox (run step's sandbox wall time) | {med('run_sandbox'):.0f} | {lo('run_sandbox'):.0f} | {hi('run_sandbox'):.0f} |",
    f"| run step as a whole | {med('run_step'):.0f} | {lo('run_step'):.0f} | {hi('run_step'):.0f} |",
    "",
    f"Run step start-up cost beside bare python3: sandbox {med('run_sandbox') - med('bare'):+.0f} ms, "
    f"whole step {med('run_step') - med('bare'):+.0f} ms (medians; {med('run_step') / med('bare'):.2f}x).",
]
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
print(text)
ok = med("overhead") <= 50
print(f"overhead target (≤ 50 ms): {'met' if ok else 'MISSED'}")
sys.exit(0 if ok else 1)
PY
