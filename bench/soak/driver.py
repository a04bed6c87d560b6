"""The soak's traffic, samples and verdict (bench/soak/run.sh runs it).

  driver.py faults --drop-port P --hangup-port Q
      Two faulty upstreams the fake-upstream binary cannot script: one streams two
      chunks and closes the connection (a drop mid-stream), one reads the request
      and closes without answering (a hangup).
  driver.py soak --base URL --pid PID --minutes M --interval S --out DIR --png FILE
      Mixed traffic against Hearth for M minutes; every S seconds a sample of the
      Hearth process (RSS, open fds), its /metrics (live tasks, open connections)
      and the latency of a fixed probe request; then the verdict.

The traffic, from a fixed number of paced workers (SOAK_RATE requests/s in all):
whole answers and streams from a healthy upstream, streams whose client goes away
mid-stream, an upstream that fails (500, 503, 429, stalls past the first-byte
timeout, answers late), one that drops mid-stream and one that hangs up, the UI's
history (create a conversation, post a message and read its streamed reply, list,
read, delete), and one request at a time to the embedded model. A fixed probe (a
whole answer from the healthy upstream) runs PROBES_PER_S times a second apart.

Growth is judged on quiet points: after warm-up and at the end, the traffic stops,
the driver's own connections close, in-flight work ends (the stall's first-byte
timeout), and the fds and live tasks are read; the end may exceed the start by a
small slack (pooled upstream connections come and go).
"""

import argparse
import asyncio
import csv
import json
import os
import random
import sys
import time

OK_STATUS = 200


# ---- the faulty upstreams ----------------------------------------------------


async def read_request(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return head.split(b" ", 2)[0]


def chunk(text):
    event = json.dumps(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "faulty",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
        }
    )
    data = f"data: {event}\n\n".encode()
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def serve_faulty(kind, port):
    async def handle(reader, writer):
        try:
            method = await read_request(reader)
            if method == b"GET":  # health probes: GET /v1/models
                body = b'{"object":"list","data":[]}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
            elif kind == "drop":
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n" + chunk("partial ") + chunk("answer ")
                )
                await writer.drain()
                await asyncio.sleep(0.05)
            # hangup: nothing written
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)


async def faults_main(args):
    servers = [await serve_faulty("drop", args.drop_port), await serve_faulty("hangup", args.hangup_port)]
    print(f"faulty upstreams on {args.drop_port} (drop) and {args.hangup_port} (hangup)", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


# ---- the traffic --------------------------------------------------------------


def chat(model, stream, text="hello", max_tokens=None):
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]}
    if max_tokens:
        body["max_tokens"] = max_tokens
    return body


class Stats:
    def __init__(self):
        self.counts = {}  # kind -> [requests, unexpected]
        self.probe_ms = []
        self.unexpected_examples = []

    def record(self, kind, expected, detail=""):
        c = self.counts.setdefault(kind, [0, 0])
        c[0] += 1
        if not expected:
            c[1] += 1
            if len(self.unexpected_examples) < 20:
                self.unexpected_examples.append(f"{kind}: {detail}"[:300])


class Traffic:
    def __init__(self, aiohttp, base, stats, embedded_model):
        self.aiohttp = aiohttp
        self.base = base
        self.stats = stats
        self.embedded = embedded_model
        self.session = None
        self.conversations = []

    def open(self):
        self.session = self.aiohttp.ClientSession(
            connector=self.aiohttp.TCPConnector(limit=128),
            timeout=self.aiohttp.ClientTimeout(total=30),
        )

    async def close(self):
        if self.session:
            await self.session.close()
            self.session = None

    async def post(self, path, body, timeout=None):
        kw = {"json": body}
        if timeout:
            kw["timeout"] = self.aiohttp.ClientTimeout(total=timeout)
        return self.session.post(self.base + path, **kw)

    # Each op returns (kind, expected?, detail).
    async def whole(self):
        async with await self.post("/v1/chat/completions", chat("up", False)) as r:
            body = await r.read()
            return "whole", r.status == OK_STATUS and b"choices" in body, r.status

    async def stream(self):
        async with await self.post("/v1/chat/completions", chat("up", True)) as r:
            body = await r.read()
            return "stream", r.status == OK_STATUS and body.rstrip().endswith(b"[DONE]"), r.status

    async def disconnect(self):
        r = await (await self.post("/v1/chat/completions", chat("up-slow", True)))
        try:
            ok = r.status == OK_STATUS
            await r.content.readany()  # the first chunk, then the client goes away
        finally:
            r.close()  # closes the connection: Hearth must cancel the upstream stream
        return "disconnect", ok, r.status

    async def fault(self):
        stream = random.random() < 0.5
        try:
            async with await self.post("/v1/chat/completions", chat("up-faults", stream), timeout=6) as r:
                await r.read()
                # Any answer is expected: the upstream's faults pass through as errors.
                return "fault", r.status < 600, r.status
        except TimeoutError:
            return "fault", False, "client timeout (a stall outlived first_byte_timeout_secs)"

    async def drop(self):
        async with await self.post("/v1/chat/completions", chat("up-drop", True)) as r:
            body = await r.read()
            # A stream cut after its first bytes ends in an SSE error event.
            ok = (r.status == OK_STATUS and b"error" in body) or r.status >= 500
            return "drop", ok, f"{r.status} {body[-200:]!r}"

    async def hangup(self):
        async with await self.post("/v1/chat/completions", chat("up-hangup", random.random() < 0.5)) as r:
            await r.read()
            return "hangup", r.status >= 500, r.status

    async def ui(self):
        api = "/api/hearth/conversations"
        if len(self.conversations) < 20 or random.random() < 0.3:
            async with await self.post(api, {"model": "up", "title": "soak"}) as r:
                v = await r.json()
                if r.status != 201:
                    return "ui", False, f"create {r.status} {v}"
                self.conversations.append(v["id"])
        cid = random.choice(self.conversations)
        async with await self.post(f"{api}/{cid}/messages", {"content": "hello there"}) as r:
            body = await r.read()
            if r.status != OK_STATUS:
                return "ui", False, f"message {r.status} {body[:200]!r}"
        async with self.session.get(f"{self.base}{api}?limit=20") as r:
            await r.read()
            if r.status != OK_STATUS:
                return "ui", False, f"list {r.status}"
        async with self.session.get(f"{self.base}{api}/{cid}") as r:
            await r.read()
            if r.status != OK_STATUS:
                return "ui", False, f"show {r.status}"
        # Keep the history bounded, as a user who deletes old conversations would.
        if len(self.conversations) > 40:
            old = self.conversations.pop(0)
            async with self.session.delete(f"{self.base}{api}/{old}") as r:
                await r.read()
                if r.status >= 300:
                    return "ui", False, f"delete {r.status}"
        return "ui", True, ""

    async def embedded_one(self):
        stream = random.random() < 0.5
        body = chat(self.embedded, stream, "Say hello.", max_tokens=16)
        async with await self.post("/v1/chat/completions", body, timeout=60) as r:
            await r.read()
            return "embedded", r.status == OK_STATUS, r.status

    async def probe(self):
        t = time.perf_counter()
        async with await self.post("/v1/chat/completions", chat("up", False, "probe")) as r:
            await r.read()
            ok = r.status == OK_STATUS
        ms = (time.perf_counter() - t) * 1000
        return ms, ok


MIX = [("whole", 25), ("stream", 30), ("disconnect", 10), ("fault", 15), ("drop", 5), ("hangup", 5), ("ui", 10)]


async def worker(traffic, stop, interval):
    ops = [name for name, _ in MIX]
    weights = [w for _, w in MIX]
    next_at = time.monotonic() + random.random() * interval
    while not stop.is_set():
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        next_at += interval
        if stop.is_set():
            break
        op = random.choices(ops, weights)[0]
        try:
            kind, ok, detail = await getattr(traffic, op)()
        except Exception as e:  # noqa: BLE001 - a transport error is a result to count
            kind, ok, detail = op, False, f"{type(e).__name__}: {e}"
        traffic.stats.record(kind, ok, detail)
        # A worker fallen behind does not burst to catch up.
        next_at = max(next_at, time.monotonic())


async def embedded_loop(traffic, stop):
    while not stop.is_set():
        try:
            kind, ok, detail = await traffic.embedded_one()
        except Exception as e:  # noqa: BLE001
            kind, ok, detail = "embedded", False, f"{type(e).__name__}: {e}"
        traffic.stats.record(kind, ok, detail)
        await asyncio.sleep(1.0)


async def probe_loop(traffic, stop, per_s):
    next_at = time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        next_at = max(next_at + 1.0 / per_s, time.monotonic())
        try:
            ms, ok = await traffic.probe()
            traffic.stats.record("probe", ok, "probe failed")
            if ok:
                traffic.stats.probe_ms.append(ms)
        except Exception as e:  # noqa: BLE001
            traffic.stats.record("probe", False, f"{type(e).__name__}: {e}")


# ---- samples ------------------------------------------------------------------


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


async def metrics(aiohttp, base):
    """The gauges of /metrics this soak reads; a missing one is None (an older build)."""
    want = {"hearth_tasks_alive": None, "hearth_connections_open": None, "hearth_in_flight": None}
    async with aiohttp.ClientSession() as s, s.get(base + "/metrics") as r:
        text = await r.text()
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in want:
            want[name] = (want[name] or 0) + float(line.rsplit(" ", 1)[1])
    return want


def pct(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, round(q * (len(v) - 1)))]


def slope_per_10min(points):
    """Least-squares slope of (t_s, y) in y per 10 minutes."""
    n = len(points)
    if n < 2:
        return float("nan")
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (y - my) for t, y in points) / den * 600 if den else float("nan")


async def quiet_point(aiohttp, base, pid, traffic, settle_s):
    """Fds and live tasks with no traffic: the driver's connections closed, in-flight
    work ended."""
    await traffic.close()
    await asyncio.sleep(settle_s)
    m = await metrics(aiohttp, base)
    return {"fds": fds(pid), "tasks": m["hearth_tasks_alive"], "connections": m["hearth_connections_open"]}


async def soak_main(args):
    import aiohttp

    rate = float(os.environ.get("SOAK_RATE", "30"))
    probes_per_s = float(os.environ.get("SOAK_PROBES_PER_S", "5"))
    workers = int(os.environ.get("SOAK_WORKERS", "16"))
    stats = Stats()
    traffic = Traffic(aiohttp, args.base, stats, args.embedded_model)
    total_s = args.minutes * 60
    interval = args.interval
    warmup_s = max(interval, round(total_s * 0.2 / interval) * interval)
    settle_s = 4.0  # past the faulty model's first_byte_timeout_secs (2)

    rows = []
    start = time.monotonic()
    quiet = {}

    async def run_phase(until_s):
        traffic.open()
        stop = asyncio.Event()
        tasks = [asyncio.create_task(worker(traffic, stop, workers / rate)) for _ in range(workers)]
        tasks.append(asyncio.create_task(embedded_loop(traffic, stop)))
        tasks.append(asyncio.create_task(probe_loop(traffic, stop, probes_per_s)))
        while (now := time.monotonic() - start) < until_s - 1e-6:
            next_sample = (int(now / interval) + 1) * interval
            await asyncio.sleep(max(0.0, min(next_sample, until_s) - (time.monotonic() - start)))
            t = time.monotonic() - start
            if t + 1e-6 < next_sample:
                continue
            probe = stats.probe_ms
            stats.probe_ms = []
            m = await metrics(aiohttp, args.base)
            counts = {k: tuple(v) for k, v in stats.counts.items()}
            row = {
                "t_s": round(t),
                "rss_mib": round(rss_mib(args.pid), 2),
                "fds": fds(args.pid),
                "tasks_alive": m["hearth_tasks_alive"],
                "connections_open": m["hearth_connections_open"],
                "in_flight": m["hearth_in_flight"],
                "probes": len(probe),
                "p50_ms": round(pct(probe, 0.5), 2),
                "p99_ms": round(pct(probe, 0.99), 2),
                "requests": sum(v[0] for v in counts.values()),
                "unexpected": sum(v[1] for v in counts.values()),
            }
            print(json.dumps(row), flush=True)
            row["_probe_ms"] = probe
            rows.append(row)
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    await run_phase(warmup_s)
    quiet["start"] = await quiet_point(aiohttp, args.base, args.pid, traffic, settle_s)
    print(json.dumps({"quiet_after_warmup": quiet["start"]}), flush=True)
    start -= settle_s  # the quiet pause is not counted as soak time
    await run_phase(total_s)
    quiet["end"] = await quiet_point(aiohttp, args.base, args.pid, traffic, settle_s)
    print(json.dumps({"quiet_at_end": quiet["end"]}), flush=True)

    return verdict(args, rows, quiet, stats, warmup_s)


def verdict(args, rows, quiet, stats, warmup_s):
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "soak.csv"), "w", newline="") as f:
        fields = [k for k in rows[0] if not k.startswith("_")]
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)

    after = [r for r in rows if r["t_s"] > warmup_s]
    rss_slope = slope_per_10min([(r["t_s"], r["rss_mib"]) for r in after])
    # p99 of the probes of the first and the last fifth after warm-up (two intervals
    # at least), pooled: one interval's p99 rests on its few slowest probes.
    k = max(2, len(after) // 5)
    head = [ms for r in after[:k] for ms in r["_probe_ms"]]
    tail = [ms for r in after[-k:] for ms in r["_probe_ms"]]
    p99_start, p99_end = pct(head, 0.99), pct(tail, 0.99)
    fd_growth = quiet["end"]["fds"] - quiet["start"]["fds"]
    fd_slack = max(16, quiet["start"]["fds"] // 10)
    t0, t1 = quiet["start"]["tasks"], quiet["end"]["tasks"]
    task_slack = max(16, int((t0 or 0) // 10))
    ok_kinds = ("whole", "stream", "ui", "probe", "embedded")
    ok_requests = sum(stats.counts.get(k, [0, 0])[0] for k in ok_kinds)
    ok_failed = sum(stats.counts.get(k, [0, 0])[1] for k in ok_kinds)

    checks = [
        (
            "RSS slope after warm-up < 1 MiB per 10 min",
            rss_slope < 1.0,
            f"{rss_slope:+.2f} MiB/10 min over {len(after)} samples",
        ),
        (
            "no fd growth (quiet end vs quiet start)",
            fd_growth <= fd_slack,
            f"{quiet['start']['fds']} → {quiet['end']['fds']} ({fd_growth:+d}, slack {fd_slack})",
        ),
        (
            "no task growth (hearth_tasks_alive, quiet end vs start)",
            None if t0 is None or t1 is None else (t1 - t0) <= task_slack,
            "hearth_tasks_alive is not in /metrics"
            if t0 is None or t1 is None
            else f"{t0:.0f} → {t1:.0f} ({t1 - t0:+.0f}, slack {task_slack})",
        ),
        (
            "p99 at the end within 20% of the start",
            p99_end <= 1.2 * p99_start,
            (
                f"{p99_start:.1f} ms → {p99_end:.1f} ms ({(p99_end / p99_start - 1) * 100:+.0f}%; "
                f"{len(head)} and {len(tail)} probes, first and last {k} intervals after warm-up)"
            ),
        ),
        (
            "healthy requests answered (< 0.1% failed)",
            ok_failed <= ok_requests / 1000,
            f"{ok_failed} of {ok_requests} failed",
        ),
    ]
    lines = [
        (
            f"Soak: {args.minutes} min of mixed traffic, a sample every {args.interval} s, warm-up {warmup_s} s; "
            f"{os.cpu_count()} CPUs."
        ),
        "",
        "| criterion | result | measured |",
        "|---|---|---|",
    ]
    failed = False
    for name, ok, measured in checks:
        verdict_text = "n/a" if ok is None else ("PASS" if ok else "FAIL")
        failed |= ok is False
        lines.append(f"| {name} | {verdict_text} | {measured} |")
    lines += ["", "| requests by kind | sent | unexpected |", "|---|---:|---:|"]
    for k, (n, bad) in sorted(stats.counts.items()):
        lines.append(f"| {k} | {n} | {bad} |")
    lines += [
        "",
        "| t (s) | RSS (MiB) | fds | live tasks | connections | p50 (ms) | p99 (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['t_s']} | {r['rss_mib']:.1f} | {r['fds']} | {fmt(r['tasks_alive'])} | "
            f"{fmt(r['connections_open'])} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |"
        )
    if stats.unexpected_examples:
        lines += ["", "Unexpected answers (first 20):", ""] + [f"- `{e}`" for e in stats.unexpected_examples]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "soak.md"), "w") as f:
        f.write(text)
    print(text)
    plot(rows, warmup_s, args.png)
    print(f"soak: {'FAIL' if failed else 'PASS'}")
    return 1 if failed else 0


def fmt(v):
    return "–" if v is None else f"{v:.0f}"


def plot(rows, warmup_s, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] / 60 for r in rows]
    fig, (a, b) = plt.subplots(2, 1, figsize=(6, 4), sharex=True, dpi=80)
    a.plot(t, [r["rss_mib"] for r in rows], marker=".", color="tab:blue")
    a.set_ylabel("RSS (MiB)")
    b.plot(t, [r["p99_ms"] for r in rows], marker=".", color="tab:red", label="p99")
    b.plot(t, [r["p50_ms"] for r in rows], marker=".", color="tab:gray", label="p50")
    b.set_ylabel("probe latency (ms)")
    b.set_xlabel("minutes")
    b.legend(loc="upper left", fontsize="small")
    for ax in (a, b):
        ax.axvline(warmup_s / 60, color="k", linestyle=":", linewidth=1)
        ax.grid(alpha=0.3)
    a.set_title("hearth serve under mixed traffic (dotted: end of warm-up)", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("faults")
    f.add_argument("--drop-port", type=int, required=True)
    f.add_argument("--hangup-port", type=int, required=True)
    s = sub.add_parser("soak")
    s.add_argument("--base", required=True)
    s.add_argument("--pid", type=int, required=True)
    s.add_argument("--minutes", type=float, required=True)
    s.add_argument("--interval", type=float, required=True)
    s.add_argument("--embedded-model", default="smollm2-135m")
    s.add_argument("--out", required=True)
    s.add_argument("--png", required=True)
    args = p.parse_args()
    if args.cmd == "faults":
        asyncio.run(faults_main(args))
        return 0
    return asyncio.run(soak_main(args))


if __name__ == "__main__":
    sys.exit(main())
