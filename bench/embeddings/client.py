"""Embeddings per second from one OpenAI-compatible server: `--batch` inputs per
request, `--clients` requests in flight, for `--seconds`. Prints one JSON line:
label, batch, clients, requests, embeddings per second, latency percentiles, and
the first vector (so run.sh can check both servers agree).

Standard library only; every request carries different sentences (no server-side
cache can answer them), of 12 to 20 words."""

import argparse
import json
import random
import threading
import time
import urllib.request

WORDS = (
    "the a cat dog house river mountain quickly slowly report revenue grew fell "
    "engine model server request token vector search query answer question small "
    "large green blue under over after before network memory disk kitchen garden"
).split()


def sentence(rng):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 20))).capitalize() + "."


def post(url, body):
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--clients", type=int, default=1)
    p.add_argument("--seconds", type=float, default=20)
    a = p.parse_args()
    url = a.url.rstrip("/") + "/embeddings"
    first = post(url, {"model": a.model, "input": ["A cat sits on the mat."], "encoding_format": "float"})
    probe = first["data"][0]["embedding"]
    # warm-up
    post(url, {"model": a.model, "input": [sentence(random.Random(0)) for _ in range(a.batch)]})
    lat, lock, done = [], threading.Lock(), []
    deadline = time.monotonic() + a.seconds

    def worker(seed):
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            inputs = [sentence(rng) for _ in range(a.batch)]
            t = time.monotonic()
            r = post(url, {"model": a.model, "input": inputs, "encoding_format": "float"})
            took = time.monotonic() - t
            assert len(r["data"]) == a.batch, r
            with lock:
                lat.append(took)
                done.append(a.batch)

    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i + 1,)) for i in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    lat.sort()
    pct = lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1)
    print(json.dumps({
        "label": a.label, "batch": a.batch, "clients": a.clients, "requests": len(lat),
        "embeddings_per_s": round(sum(done) / wall, 1), "p50_ms": pct(0.5), "p99_ms": pct(0.99),
        "probe": probe,
    }))


if __name__ == "__main__":
    main()
