#!/usr/bin/env python3
"""Writes a llama-architecture GGUF with random weights, for benchmarks and tests.

Speed does not depend on what the weights say, so a GPU benchmark can measure a
~1B-parameter model that it generates on the GPU machine itself rather than carry
gigabytes there; the tests load a tiny one on CPU.

    make_model.py OUT.gguf --size tiny            # ~0.4 MB, loads in milliseconds
    make_model.py OUT.gguf --size 1b --type q8_0  # Llama-3.2-1B's shape, ~1.3 GB
    make_model.py OUT.gguf --embd 512 --layers 4 --ff 1536 --heads 8 --kv-heads 2

The tokenizer is SentencePiece-style ("llama"): <unk>, <s>, </s>, the 256 byte
tokens and made-up pieces up to the vocabulary size, so any text tokenizes (bytes
as a fallback). Weights are N(0, 0.02) and norms 1, which keeps activations finite;
the output rows of the special and byte tokens are 0, so they are seldom generated.
Needs numpy and the `gguf` package (PyPI); prints the parameter count and file size.
"""

import argparse
import os
import sys
import time

import numpy as np

import gguf

# name: (embd, layers, ff, heads, kv_heads, vocab, context)
SIZES = {
    "tiny": (64, 2, 128, 4, 2, 512, 2048),
    "small": (512, 8, 1536, 8, 4, 8192, 4096),
    # Llama-3.2-1B's shape, with a 32k vocabulary: 1.1B parameters.
    "1b": (2048, 16, 8192, 32, 8, 32000, 8192),
}
TYPES = {
    "f32": gguf.GGMLQuantizationType.F32,
    "f16": gguf.GGMLQuantizationType.F16,
    "q8_0": gguf.GGMLQuantizationType.Q8_0,
}
FILE_TYPES = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
              "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}


# With --fim: fill-in-the-middle tokens as StarCoder2 and Qwen2.5-Coder name them,
# after the byte tokens, and the GGUF keys that tell llama.cpp which they are.
FIM_TOKENS = [("<fim_prefix>", "pre"), ("<fim_suffix>", "suf"), ("<fim_middle>", "mid"),
              ("<fim_pad>", "pad"), ("<repo_name>", "rep"), ("<file_sep>", "sep")]


# With --hermes-tools: ChatML, as llama.cpp renders it, with the tool syntax of
# Qwen2.5's template (a shortened copy: what matters is that it says <tool_call>).
HERMES_TEMPLATE = (
    "{%- if tools %}{{- '<|im_start|>system\\n' }}# Tools\\n\\n<tools>"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "</tools>\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n{%- endif %}"
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + "
    "message.content + '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def vocabulary(n, fim=False, control=()):
    """<unk>, <s>, </s>, <0x00>..<0xFF>, the FIM tokens with --fim, the
    --control-tokens, then unique pieces ("▁a", "b", "▁ab", ...)."""
    if n < 259 + 1:
        sys.exit(f"--vocab must be at least 260 (3 special and 256 byte tokens), not {n}")
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256
    if fim:
        tokens += [t for t, _ in FIM_TOKENS]
        types += [gguf.TokenType.CONTROL] * len(FIM_TOKENS)
    tokens += list(control)
    types += [gguf.TokenType.CONTROL] * len(control)
    letters = "abcdefghijklmnopqrstuvwxyz"
    i = 0
    while len(tokens) < n:
        word, k = "", i // 2
        while True:
            word = letters[k % 26] + word
            k = k // 26 - 1
            if k < 0:
                break
        tokens.append(("\u2581" if i % 2 == 0 else "") + word)
        types.append(gguf.TokenType.NORMAL)
        i += 1
    # Shorter pieces score higher, as a trained SentencePiece model's tend to.
    special = 259 + (len(FIM_TOKENS) if fim else 0) + len(control)
    scores = [0.0] * special + [-float(len(t)) - j * 1e-6 for j, t in enumerate(tokens[special:])]
    return tokens, scores, types, special


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="the GGUF file to write")
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--type", choices=sorted(TYPES), default="f16",
                    help="weight type of the matrices (norms stay f32)")
    for flag in ("embd", "layers", "ff", "heads", "kv-heads", "vocab", "context"):
        ap.add_argument(f"--{flag}", type=int, help=f"override the size's {flag}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fim", action="store_true",
                    help="add fill-in-the-middle tokens (for /infill and suffix tests)")
    ap.add_argument("--control-tokens", default="", metavar="A,B",
                    help="control tokens after the byte (and FIM) tokens, in this order, as "
                         "Mistral's vocabularies hold [TOOL_CALLS] and [ARGS] (they render as "
                         "no text unless the engine preserves them)")
    ap.add_argument("--hermes-tools", action="store_true",
                    help="a ChatML chat template with Hermes' tool syntax (<tool_call>), as "
                         "Qwen2.5's, for tool-calling tests")
    ap.add_argument("--chat-template", metavar="FILE",
                    help="the chat template (Jinja source) to store, e.g. one of "
                         "crates/hearth-engine/tests/templates/")
    a = ap.parse_args()

    embd, layers, ff, heads, kv_heads, vocab, context = SIZES[a.size]
    embd = a.embd or embd
    layers = a.layers or layers
    ff = a.ff or ff
    heads = a.heads or heads
    kv_heads = a.kv_heads or kv_heads
    vocab = a.vocab or vocab
    context = a.context or context
    if embd % heads or heads % kv_heads:
        sys.exit("--embd must be a multiple of --heads, and --heads of --kv-heads")
    head_dim = embd // heads
    if a.type == "q8_0" and (embd % 32 or ff % 32):
        sys.exit("q8_0 needs --embd and --ff to be multiples of 32")

    started = time.time()
    rng = np.random.default_rng(a.seed)
    w = gguf.GGUFWriter(a.out + ".part", "llama")
    w.add_name(f"hearth-synthetic-{a.size}")
    w.add_context_length(context)
    w.add_embedding_length(embd)
    w.add_block_count(layers)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    w.add_file_type(FILE_TYPES[a.type])
    control = [t for t in a.control_tokens.split(",") if t]
    tokens, scores, types, special = vocabulary(vocab, a.fim, control)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    if a.hermes_tools and a.chat_template:
        sys.exit("--hermes-tools and --chat-template each set the chat template: give one")
    if a.hermes_tools:
        w.add_chat_template(HERMES_TEMPLATE)
    if a.chat_template:
        with open(a.chat_template, encoding="utf-8") as f:
            w.add_chat_template(f.read())
    if a.fim:
        for i, (_, key) in enumerate(FIM_TOKENS):
            w.add_uint32(f"tokenizer.ggml.fim_{key}_token_id", 259 + i)

    params = 0

    def matrix(name, rows, cols, zero_rows=0):
        # numpy's (rows, cols) is ggml's ne = {cols, rows}: `cols` is the input size.
        nonlocal params
        params += rows * cols
        m = (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02)
        m[:zero_rows] = 0
        if a.type == "q8_0":
            # A uint8 array of the blocks; the writer derives the shape from it.
            w.add_tensor(name, gguf.quants.quantize(m, TYPES["q8_0"]), raw_dtype=TYPES["q8_0"])
        elif a.type == "f16":
            w.add_tensor(name, m.astype(np.float16))
        else:
            w.add_tensor(name, m)

    def norm(name):
        nonlocal params
        params += embd
        w.add_tensor(name, np.ones(embd, dtype=np.float32))

    matrix("token_embd.weight", vocab, embd)
    for i in range(layers):
        p = f"blk.{i}."
        norm(p + "attn_norm.weight")
        matrix(p + "attn_q.weight", heads * head_dim, embd)
        matrix(p + "attn_k.weight", kv_heads * head_dim, embd)
        matrix(p + "attn_v.weight", kv_heads * head_dim, embd)
        matrix(p + "attn_output.weight", embd, heads * head_dim)
        norm(p + "ffn_norm.weight")
        matrix(p + "ffn_gate.weight", ff, embd)
        matrix(p + "ffn_up.weight", ff, embd)
        matrix(p + "ffn_down.weight", embd, ff)
    norm("output_norm.weight")
    # The special and byte tokens' logits are 0 while the pieces' spread around it:
    # rarely sampled, never the greedy choice, so an answer is whole pieces of text
    # (a byte token can be half a character, held back until the rest comes) and
    # seldom ends early.
    matrix("output.weight", vocab, embd, zero_rows=special)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(a.out + ".part", a.out)
    size = os.path.getsize(a.out)
    print(f"{a.out}: llama, {params / 1e6:.1f}M parameters ({a.type}), embd {embd}, "
          f"{layers} layers, ff {ff}, {heads}/{kv_heads} heads, vocab {vocab}, "
          f"context {context}; {size / 1e6:.1f} MB in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
