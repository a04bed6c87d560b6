#!/usr/bin/env python3
"""Measures one model served by a running `hearth serve`, over /v1 (stdlib only).

    measure.py --base http://127.0.0.1:PORT --model NAME --label gpu \
        [--streams 1,8,32] [--tokens 128] [--prefill 2048] [--out result.json]

What it measures, each printed as one line and written as JSON:
  ttft_s          time to first token of a short prompt, one request at a time (median of 5)
  decode          for each count of concurrent streams: tokens per second, all streams
                  together (tokens after each stream's first / time from the first stream's
                  first token to the last stream's end), per stream (its own rate), end to
                  end (all tokens / time from the requests to the last end), and the median
                  time to first token under that load
  prefill         a prompt of about --prefill tokens, answered with one token: its time to
                  first token and prompt tokens per second (the second of two runs with
                  different prompts, so the prompt cache holds nothing of it)
  placement       the model's device and GPU memory as /v1/models reports them
End of sequence is banned (logit_bias, --ban: one entry; hundreds of them slow every
token down) so streams run their --tokens tokens whatever random weights say. A stream's
end is its last event, not its last text: text can arrive in bunches (a byte token is
half a character, held back until the rest comes; the synthetic models seldom make one). The prompts are words of one letter, which the synthetic models'
vocabulary (bench/gpu/make_model.py) makes one token each; other models tokenize them
differently, so prefill reports the prompt tokens the server counted.
"""

import argparse
import json
import random
import statistics
import string
import sys
import threading
import time
import urllib.request


def post_stream(base, body, timeout=600):
    """Streams one completion; returns (time to first token, time of its last event,
    tokens generated, prompt tokens) with times relative to the request's start."""
    req = urllib.request.Request(
        base + "/v1/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    start = time.perf_counter()
    first = last = None
    usage = {}
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        for raw in resp:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            ev = json.loads(data)
            if "error" in ev:
                raise RuntimeError(f"error event: {ev['error']}")
            if ev.get("usage"):
                usage = ev["usage"]
            # The end is when the last event came, not the last text: the server may
            # send several tokens' text in one write, so texts can arrive in bunches.
            last = time.perf_counter() - start
            if first is None and any(c.get("text") for c in ev.get("choices", [])):
                first = last
    if first is None:
        raise RuntimeError("no token came back")
    return first, last, usage.get("completion_tokens", 0), usage.get("prompt_tokens", 0)


def words(n, rng):
    return " ".join(rng.choice(string.ascii_lowercase) for _ in range(n))


def body(model, prompt, max_tokens, ban):
    b = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0.8,
        "seed": 1,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if ban:
        b["logit_bias"] = {str(t): -100 for t in ban}
    return b


def concurrent(base, model, streams, tokens, ban, rng):
    results, errors = [None] * streams, []
    prompts = [words(16, rng) for _ in range(streams)]
    barrier = threading.Barrier(streams)

    def one(i):
        try:
            barrier.wait()
            t0 = time.perf_counter()
            first, last, n, _ = post_stream(base, body(model, prompts[i], tokens, ban))
            results[i] = (t0 + first, t0 + last, n, first, t0)
        except Exception as e:  # noqa: BLE001 - reported, the run goes on
            errors.append(str(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} of {streams} streams failed: {errors[0]}")
    first = min(r[0] for r in results)
    last = max(r[1] for r in results)
    generated = sum(max(r[2] - 1, 0) for r in results)
    per_stream = [
        (r[2] - 1) / (r[1] - r[0]) for r in results if r[2] > 1 and r[1] > r[0]
    ]
    return {
        "streams": streams,
        "tokens_per_stream": statistics.median(r[2] for r in results),
        "tok_s": round(generated / (last - first), 1) if last > first else None,
        "per_stream_tok_s": round(statistics.median(per_stream), 1) if per_stream else None,
        "ttft_s": round(statistics.median(r[3] for r in results), 4),
        # Every token over the whole time, prefill of the short prompts included: the
        # figure that cannot be fooled by texts arriving in bunches.
        "e2e_tok_s": round(sum(r[2] for r in results) / (last - min(r[4] for r in results)), 1),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--label", required=True, help="gpu or cpu: names the result")
    ap.add_argument("--streams", default="1,8,32")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--prefill", type=int, default=2048)
    ap.add_argument("--ban", default="2",
                    help="token ids never to generate (ID or FIRST-LAST, or empty): 2 is </s> "
                         "in the synthetic models and <|im_end|> in SmolLM2")
    ap.add_argument("--out")
    a = ap.parse_args()
    rng = random.Random(7)
    ban = []
    if a.ban:
        lo, _, hi = a.ban.partition("-")
        ban = list(range(int(lo), int(hi or lo) + 1))
    out = {"label": a.label, "model": a.model}

    def say(what, value):
        out[what] = value
        print(f"{a.label} {a.model} {what}: {json.dumps(value)}", flush=True)

    def attempt(what, fn):
        try:
            say(what, fn())
        except Exception as e:  # noqa: BLE001 - one failed measurement must not lose the rest
            say(what, {"error": str(e)})

    post_stream(a.base, body(a.model, words(8, rng), 4, ban))  # warm-up
    attempt("ttft_s", lambda: round(statistics.median(
        post_stream(a.base, body(a.model, words(16, rng), 1, ban))[0] for _ in range(5)), 4))
    decode = []
    for n in [int(s) for s in a.streams.split(",") if s]:
        try:
            r = concurrent(a.base, a.model, n, a.tokens, ban, rng)
        except Exception as e:  # noqa: BLE001
            r = {"streams": n, "error": str(e)}
        print(f"{a.label} {a.model} decode: {json.dumps(r)}", flush=True)
        decode.append(r)
    out["decode"] = decode

    def prefill():
        runs = []
        for _ in range(2):
            first, _, _, prompt = post_stream(
                a.base, body(a.model, words(a.prefill - 1, rng), 1, ban))
            runs.append({"prompt_tokens": prompt, "ttft_s": round(first, 4),
                         "tok_s": round(prompt / first, 1)})
        return runs[-1]

    if a.prefill > 0:
        attempt("prefill", prefill)

    def placement():
        with urllib.request.urlopen(a.base + "/v1/models", timeout=30) as r:
            models = json.load(r)["data"]
        return next((m.get("placement") for m in models if m["id"] == a.model), None)

    attempt("placement", placement)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
