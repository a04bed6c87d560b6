"""Decode speed with and without a JSON-schema grammar, same prompt and model:
ROUNDS streamed requests of each kind, alternated; tokens/s counted from the
first streamed token to the last (prefill and the grammar's compile excluded,
measured apart as time to first token). Kinds: free; json_schema
(response_format); tools (a required call of a tool whose arguments hold the
same schema: the tools grammar and the streamed call reader); logprobs (free,
with top_logprobs 5: the log-softmax over the vocabulary per token). Prints one
JSON line per kind.

Standard library only."""

import argparse
import json
import statistics
import time
import urllib.request

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 60},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 5},
        "story": {"type": "string"},
        "rating": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["title", "tags", "story", "rating"],
    "additionalProperties": False,
}


def run(url, model, tokens, kind):
    body = {
        "model": model, "stream": True, "stream_options": {"include_usage": True},
        "max_tokens": tokens, "temperature": 0.8, "seed": 1,
        "messages": [{"role": "user", "content": "Write a long story about a lighthouse keeper, as JSON with a title, tags, the story and a rating."}],
    }
    if kind == "json_schema":
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "story", "schema": SCHEMA}}
    elif kind == "tools":
        body["tools"] = [{"type": "function", "function": {"name": "save_story", "parameters": SCHEMA}}]
        body["tool_choice"] = "required"
    elif kind == "logprobs":
        body["logprobs"] = True
        body["top_logprobs"] = 5
    req = urllib.request.Request(url + "/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    start = time.monotonic()
    first = last = None
    usage = None
    with urllib.request.urlopen(req, timeout=300) as r:
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            delta = chunk["choices"][0]["delta"] if chunk.get("choices") else {}
            if delta.get("content") or delta.get("tool_calls"):
                now = time.monotonic()
                first = first or now
                last = now
    n = usage["completion_tokens"]
    return {"tokens": n, "ttft": first - start, "decode_tps": (n - 1) / (last - first) if n > 1 and last > first else 0}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--rounds", type=int, default=6)
    a = p.parse_args()
    runs = {"free": [], "json_schema": [], "tools": [], "logprobs": []}
    run(a.url, a.model, 16, "free")  # warm-up
    for _ in range(a.rounds):
        for kind in runs:
            runs[kind].append(run(a.url, a.model, a.tokens, kind))
    for kind, rs in runs.items():
        print(json.dumps({
            "kind": kind, "rounds": len(rs),
            "tokens_median": statistics.median(r["tokens"] for r in rs),
            "decode_tps_median": round(statistics.median(r["decode_tps"] for r in rs), 1),
            "ttft_ms_median": round(statistics.median(r["ttft"] for r in rs) * 1000, 1),
        }))


if __name__ == "__main__":
    main()
