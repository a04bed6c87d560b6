#!/usr/bin/env python3
"""Measures one OpenAI-compatible server for bench/engine (stdlib only).

Prints a JSON object: prefill tok/s (512-token prompt), single-stream decode tok/s,
aggregate decode tok/s with 4 and 8 concurrent streams, time to first token cold
and for a follow-up turn of the same conversation, and the server's peak RSS.

Every stream bans the end-of-generation tokens with logit_bias, so each one
decodes exactly --tokens tokens and all servers do the same work.

With --measure arrival it measures instead what one arriving request does to the
streams already running: with --streams streams decoding, it sends (1) a chat
request with a large JSON-schema grammar and (2) a prompt too long for the
context (tokenized, then refused), and reports the running streams' largest and
99th-percentile gap between tokens while that request was arriving, against the
gaps of the same streams outside that window.
"""
import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse
import uuid

QUESTIONS = [
    "Write a long story about a lighthouse keeper.",
    "Explain how bread is made, step by step.",
    "Describe a journey across the mountains.",
    "Tell me about the history of sailing ships.",
    "Write a letter to a friend about your garden.",
    "Describe a busy market in the morning.",
    "Explain why the sky is blue to a child.",
    "Write a poem about winter in the city.",
]
FILLER = ("The history of the lighthouse is a story of stone, fire and patience. "
          "Keepers trimmed wicks, wound clockwork and logged every passing ship. ")


class Server:
    def __init__(self, url, model, ban):
        u = urllib.parse.urlparse(url)
        self.host, self.port, self.base = u.hostname, u.port, u.path.rstrip("/")
        self.model = model
        self.ban = {str(t): -100 for t in ban}

    def post(self, path, body, stream=False):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        conn.request("POST", self.base + path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"{path}: HTTP {resp.status}: {resp.read()[:300]!r}")
        if not stream:
            data = json.loads(resp.read())
            conn.close()
            return data
        return conn, resp

    def stream_chat(self, messages, max_tokens, ban=True, times=None):
        """Streams a chat completion; returns (t_request, [t of each content chunk], text).
        `times`, when given, is the list the chunk times are appended to as they come."""
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                "temperature": 0, "stream": True}
        if ban:
            body["logit_bias"] = self.ban
        t0 = time.perf_counter()
        conn, resp = self.post("/chat/completions", body, stream=True)
        times, text = [] if times is None else times, []
        for raw in resp:
            line = raw.decode("utf-8").strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            for c in chunk.get("choices", []):
                piece = (c.get("delta") or {}).get("content")
                if piece:
                    times.append(time.perf_counter())
                    text.append(piece)
        conn.close()
        return t0, times, "".join(text)


def prefill(s, target=512):
    # Calibrate the filler to `target` prompt tokens, then time a 1-token completion
    # of a prompt no cache has seen (a fresh nonce first).
    probe = s.post("/completions", {"model": s.model, "prompt": FILLER * 8, "max_tokens": 1})
    per = probe["usage"]["prompt_tokens"] / 8
    reps = max(1, round(target / per))
    runs = []
    for _ in range(3):
        prompt = f"{uuid.uuid4().hex} " + FILLER * reps
        t = time.perf_counter()
        r = s.post("/completions", {"model": s.model, "prompt": prompt, "max_tokens": 1, "temperature": 0})
        runs.append((r["usage"]["prompt_tokens"], time.perf_counter() - t))
    n = statistics.median(p for p, _ in runs)
    return {"prompt_tokens": n, "tok_s": round(statistics.median(p / t for p, t in runs), 1)}


def decode(s, streams, tokens):
    results = [None] * streams
    def one(i):
        results[i] = s.stream_chat([{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}], tokens)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    empty = [i for i, r in enumerate(results) if r is None or not r[1]]
    if empty:
        raise RuntimeError(f"streams {empty} of {streams} produced no tokens")
    first = min(r[1][0] for r in results)
    last = max(r[1][-1] for r in results)
    produced = sum(len(r[1]) for r in results) - 1
    return round(produced / (last - first), 1), [len(r[1]) for r in results]


def ttft(s, rounds=3):
    cold, follow = [], []
    for _ in range(rounds):
        system = f"Session {uuid.uuid4().hex}. " + FILLER * 12
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": "Name a fruit."}]
        t0, times, reply = s.stream_chat(msgs, 16, ban=False)
        cold.append(times[0] - t0)
        msgs += [{"role": "assistant", "content": reply}, {"role": "user", "content": "And a vegetable?"}]
        t0, times, _ = s.stream_chat(msgs, 16, ban=False)
        follow.append(times[0] - t0)
    return round(statistics.median(cold) * 1000, 1), round(statistics.median(follow) * 1000, 1)


def big_schema(fields=1000):
    """A large extraction schema (about 120 kB with 1,000 fields): typed, bounded
    fields, nested objects and arrays, enums, patterns and formats. Its grammar
    takes about 0.1 s to build on the 2-core bench box; one of a few kB takes
    milliseconds, too little to see beside a decode step."""
    kinds = [
        {"type": "string", "maxLength": 40},
        {"type": "integer", "minimum": 0, "maximum": 100000},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "string", "enum": ["red", "green", "blue", "cyan", "magenta", "yellow"]},
        {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{4,6}$"},
        {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 8},
        {"type": "string", "format": "date"},
    ]
    props = {}
    for i in range(fields):
        kind = kinds[i % len(kinds)]
        if i % 10 == 9:
            inner = {f"sub_{j}": kinds[(i + j) % len(kinds)] for j in range(6)}
            kind = {"type": "array", "minItems": 0, "maxItems": 4,
                    "items": {"type": "object", "properties": inner, "required": list(inner)}}
        props[f"field_{i}"] = kind
    return {"type": "object", "properties": props, "required": list(props),
            "additionalProperties": False}


def gaps_around(s, streams, tokens, arrive, rounds=5):
    """Runs `streams` streams; once all are flowing, `arrive()` sends one request.
    Returns medians over `rounds` of the running streams' inter-token gaps that
    overlap the arrival (from sending to its answer's end) and of those after it,
    plus `arrive()`'s own timings."""
    per_round = []
    for r in range(rounds):
        live = [[] for _ in range(streams)]
        def one(i):
            msgs = [{"role": "user", "content": QUESTIONS[(i + r) % len(QUESTIONS)]}]
            s.stream_chat(msgs, tokens, times=live[i])
        threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
        for t in threads:
            t.start()
        # Past every stream's prefill, so the gaps compared are decode steps only.
        while min(len(l) for l in live) < 16:
            if not any(t.is_alive() for t in threads):
                raise RuntimeError("the streams ended before they were all flowing")
            time.sleep(0.005)
        t0 = time.perf_counter()
        timings = arrive()
        t1 = time.perf_counter()
        for t in threads:
            t.join()
        if min(l[-1] for l in live) <= t1:
            raise RuntimeError("a stream ended before the arrival was over; raise --tokens")
        during, quiet = [], []
        for l in live:
            for a, b in zip(l, l[1:]):
                if b > t0:
                    (during if a < t1 else quiet).append((b - a) * 1000)
        per_round.append({"during_max_ms": max(during), "during_p99_ms": p99(during),
                          "quiet_max_ms": max(quiet), "quiet_p99_ms": p99(quiet),
                          "arrival_ms": (t1 - t0) * 1000, **timings})
    out = {k: round(statistics.median(x[k] for x in per_round), 1) for k in per_round[0]}
    out["during_max_runs"] = [round(x["during_max_ms"], 1) for x in per_round]
    return out


def p99(values):
    v = sorted(values)
    return v[min(len(v) - 1, int(0.99 * len(v)))]


def arrival(s, streams, tokens):
    schema = big_schema()
    def grammar():
        # One token: the window is the request's preparation, the short prefill of
        # its prompt and one constrained sample, not a long constrained generation.
        t = time.perf_counter()
        conn, resp = s.post("/chat/completions", {
            "model": s.model, "max_tokens": 1, "temperature": 0, "stream": True,
            "messages": [{"role": "user", "content": "Fill in the record."}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "record", "schema": schema}}}, stream=True)
        accepted = time.perf_counter()
        resp.read()
        conn.close()
        return {"accept_ms": (accepted - t) * 1000}

    long_text = FILLER * 3000  # about 90,000 tokens: tokenized, then refused
    def long_prompt():
        t = time.perf_counter()
        conn = http.client.HTTPConnection(s.host, s.port, timeout=600)
        conn.request("POST", s.base + "/chat/completions", json.dumps({
            "model": s.model, "max_tokens": 1,
            "messages": [{"role": "user", "content": long_text}]}),
            {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        conn.close()
        if resp.status != 400:
            raise RuntimeError(f"the over-long prompt got HTTP {resp.status}, not 400")
        return {"reject_ms": (time.perf_counter() - t) * 1000}

    # The arriving requests alone first, on an idle server: how long they take to
    # prepare when nothing else runs.
    idle = {"grammar_accept_idle_ms": grammar()["accept_ms"],
            "long_prompt_reject_idle_ms": long_prompt()["reject_ms"]}
    idle = {k: round(v, 1) for k, v in idle.items()}
    return {"streams": streams, "schema_bytes": len(json.dumps(schema)),
            "long_prompt_bytes": len(long_text), **idle,
            "grammar": gaps_around(s, streams, tokens, grammar),
            "long_prompt": gaps_around(s, streams, tokens, long_prompt)}


def peak_rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--pid", type=int)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--ban", default="0,2", help="end-of-generation token ids to ban")
    ap.add_argument("--measure", choices=["decode", "arrival"], default="decode")
    ap.add_argument("--streams", type=int, default=4, help="running streams (arrival)")
    a = ap.parse_args()
    s = Server(a.url, a.model, [int(t) for t in a.ban.split(",") if t])
    s.stream_chat([{"role": "user", "content": "Hello"}], 8)  # warm up
    if a.measure == "arrival":
        out = {"label": a.label, "arrival": arrival(s, a.streams, a.tokens)}
        print(json.dumps(out))
        return
    out = {"label": a.label, "prefill": prefill(s)}
    # Medians: the bench box is shared and single runs are noisy.
    for n, runs in ((1, 5), (4, 3), (8, 3)):
        got = [decode(s, n, a.tokens) for _ in range(runs)]
        out[f"decode_{n}"] = statistics.median(g[0] for g in got)
        out[f"runs_{n}"] = [g[0] for g in got]
        out[f"tokens_{n}"] = got[0][1]
    out["ttft_cold_ms"], out["ttft_followup_ms"] = ttft(s)
    if a.pid:
        out["peak_rss_mib"] = peak_rss_mib(a.pid)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
