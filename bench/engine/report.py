#!/usr/bin/env python3
"""Turns bench/out/engine/*.json(l) into the markdown table of bench/RESULTS.md."""
import json
import os
import sys

out, threads, tokens = sys.argv[1], sys.argv[2], sys.argv[3]


def load(name):
    p = os.path.join(out, name)
    if not os.path.exists(p):
        return None
    with open(p) as f:
        text = f.read().strip()
    if name.endswith(".jsonl"):
        return [json.loads(l) for l in text.splitlines() if l.strip()]
    return json.loads(text) if text else None


raw = load("raw.jsonl") or []
hearth = load("hearth.json") or {}
lcp = load("llama-cpp-python.json") or {}
rawd = {r["sequences"]: r["tok_s"] for r in raw if r["kind"] == "decode"}
rawp = next((r["tok_s"] for r in raw if r["kind"] == "prefill"), None)
rawrss = next((r["peak_rss_mib"] for r in raw if r["kind"] == "rss"), None)


def f(v, unit=""):
    return "-" if v is None else f"{v}{unit}"


def ratio(a, b):
    return "-" if not a or not b else f"{a / b:.2f}x"


rows = [
    ("prefill tok/s (512-token prompt)", hearth.get("prefill", {}).get("tok_s"), rawp, lcp.get("prefill", {}).get("tok_s")),
    ("decode tok/s, 1 stream", hearth.get("decode_1"), rawd.get(1), lcp.get("decode_1")),
    ("decode tok/s, 4 streams (aggregate)", hearth.get("decode_4"), rawd.get(4), lcp.get("decode_4")),
    ("decode tok/s, 8 streams (aggregate)", hearth.get("decode_8"), rawd.get(8), lcp.get("decode_8")),
    ("TTFT cold, ms", hearth.get("ttft_cold_ms"), None, lcp.get("ttft_cold_ms")),
    ("TTFT follow-up turn, ms", hearth.get("ttft_followup_ms"), None, lcp.get("ttft_followup_ms")),
    ("peak RSS, MiB", hearth.get("peak_rss_mib"), rawrss, lcp.get("peak_rss_mib")),
]
print(f"{threads} threads, {tokens} tokens per stream, greedy, end-of-generation banned.\n")
print(f"| metric | (a) Hearth{' (in-process)' if hearth.get('in_process') else ''} | (b) raw llama-cpp-2 | (c) llama-cpp-python | a/b | a/c |")
print("|---|---:|---:|---:|---:|---:|")
for name, a, b, c in rows:
    print(f"| {name} | {f(a)} | {f(b)} | {f(c)} | {ratio(a, b)} | {ratio(a, c)} |")
print()
checks = [
    ("single-stream decode >= 0.9x raw", hearth.get("decode_1"), rawd.get(1), 0.9),
    ("4-stream decode >= 0.9x raw", hearth.get("decode_4"), rawd.get(4), 0.9),
    ("4-stream aggregate >= 2.5x llama-cpp-python", hearth.get("decode_4"), lcp.get("decode_4"), 2.5),
]
for name, a, b, target in checks:
    if a and b:
        print(f"- {name}: {a / b:.2f}x -> {'met' if a / b >= target else 'NOT met'}")
    else:
        print(f"- {name}: not measured")
c, fu = hearth.get("ttft_cold_ms"), hearth.get("ttft_followup_ms")
if c and fu:
    print(f"- follow-up TTFT <= 0.2x cold: {fu / c:.2f}x -> {'met' if fu / c <= 0.2 else 'NOT met'}")

arrival = (load("arrival.json") or {}).get("arrival")
if arrival:
    print(f"\n(d) A request arriving while {arrival['streams']} streams decode: the running streams'"
          " gaps between tokens while it arrives (from its sending to its answer's end)"
          " and after it; medians of 5 rounds, ms.\n")
    print("| arriving request | alone on an idle server | window | gap max during | gap p99 during | gap max after | gap p99 after |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    kinds = [
        (f"JSON-schema grammar ({arrival['schema_bytes']:,} B schema), 1 token", "grammar", arrival.get("grammar_accept_idle_ms")),
        (f"over-long prompt ({arrival['long_prompt_bytes']:,} B), refused", "long_prompt", arrival.get("long_prompt_reject_idle_ms")),
    ]
    for name, key, idle in kinds:
        r = arrival[key]
        print(f"| {name} | {f(idle)} | {f(r['arrival_ms'])} | {f(r['during_max_ms'])} | {f(r['during_p99_ms'])}"
              f" | {f(r['quiet_max_ms'])} | {f(r['quiet_p99_ms'])} |")
