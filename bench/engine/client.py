#!/usr/bin/env python3
"""Measures one OpenAI-compatible server for bench/engine (stdlib only).

Prints a JSON object: prefill tok/s (512-token prompt), single-stream decode tok/s,
aggregate decode tok/s with 4 and 8 concurrent streams, time to first token cold
and for a follow-up turn of the same conversation, and the server's peak RSS.

Every stream bans the end-of-generation tokens with logit_bias, so each one
decodes exactly --tokens tokens and all servers do the same work.
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

    def stream_chat(self, messages, max_tokens, ban=True):
        """Streams a chat completion; returns (t_request, [t of each content chunk], text)."""
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                "temperature": 0, "stream": True}
        if ban:
            body["logit_bias"] = self.ban
        t0 = time.perf_counter()
        conn, resp = self.post("/chat/completions", body, stream=True)
        times, text = [], []
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
    a = ap.parse_args()
    s = Server(a.url, a.model, [int(t) for t in a.ban.split(",") if t])
    s.stream_chat([{"role": "user", "content": "Hello"}], 8)  # warm up
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
