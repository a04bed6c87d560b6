#!/usr/bin/env python3
"""Writes a multimodal projector (`mmproj`) GGUF with random weights: a small CLIP
vision tower and a LLaVA-style MLP projector, as llama.cpp's `mtmd` library loads
them (projector type `mlp`).

No vision model with its projector can be fetched here (the registries ship
none), so the tests pair the real default chat model (SmolLM2, whose embeddings
are 576 wide) with this projector: every step of llama.cpp's image path runs
(decoding the image, the vision tower, the projection into the chat model's
embedding space, the image tokens in the context), only what the model "sees" is
noise. Like make_model.py, for tests and benchmarks, not for answers.

    make_mmproj.py OUT.gguf --text-embd 576             # for SmolLM2-135M
    make_mmproj.py OUT.gguf --text-embd 576 --image 64 --patch 16 --embd 64 --layers 2

Needs numpy and the `gguf` package (PyPI).
"""

import argparse
import os
import sys

import numpy as np

import gguf


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--text-embd", type=int, required=True,
                   help="the chat model's embedding width (the projector's output)")
    p.add_argument("--image", type=int, default=32, help="the square image size the tower reads")
    p.add_argument("--patch", type=int, default=8, help="patch size: (image/patch)^2 image tokens")
    p.add_argument("--embd", type=int, default=64, help="the vision tower's width")
    p.add_argument("--ff", type=int, default=96, help="its feed-forward width (not --embd)")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=2,
                   help="blocks (LLaVA reads the one before last, so at least 2)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.image % a.patch or a.layers < 2 or a.embd % a.heads or a.ff == a.embd:
        sys.exit("need --image a multiple of --patch, --layers >= 2, --embd a multiple of "
                 "--heads, and --ff other than --embd")
    rng = np.random.default_rng(a.seed)
    e, ff, t = a.embd, a.ff, a.text_embd
    n_pos = (a.image // a.patch) ** 2 + 1  # the patches and the class embedding

    def rand(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    w = gguf.GGUFWriter(a.out + ".part", "clip")
    w.add_name("hearth-test-mmproj")
    w.add_description("random weights, for tests (bench/gpu/make_mmproj.py)")
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.has_text_encoder", False)
    w.add_string("clip.projector_type", "mlp")
    w.add_bool("clip.use_gelu", True)
    w.add_uint32("clip.vision.image_size", a.image)
    w.add_uint32("clip.vision.patch_size", a.patch)
    w.add_uint32("clip.vision.embedding_length", e)
    w.add_uint32("clip.vision.feed_forward_length", ff)
    w.add_uint32("clip.vision.projection_dim", t)
    w.add_uint32("clip.vision.block_count", a.layers)
    w.add_uint32("clip.vision.attention.head_count", a.heads)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-5)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    # numpy shapes are ggml's dimensions reversed: a matrix applied to a vector of
    # width IN giving OUT is (OUT, IN).
    w.add_tensor("v.patch_embd.weight", rand(e, 3, a.patch, a.patch))
    w.add_tensor("v.class_embd", rand(e))
    w.add_tensor("v.position_embd.weight", rand(n_pos, e))
    for i in range(a.layers):
        b = f"v.blk.{i}"
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(f"{b}.{name}.weight", rand(e, e))
            w.add_tensor(f"{b}.{name}.bias", np.zeros(e, dtype=np.float32))
        for name in ("ln1", "ln2"):
            w.add_tensor(f"{b}.{name}.weight", np.ones(e, dtype=np.float32))
            w.add_tensor(f"{b}.{name}.bias", np.zeros(e, dtype=np.float32))
        w.add_tensor(f"{b}.ffn_up.weight", rand(ff, e))
        w.add_tensor(f"{b}.ffn_up.bias", np.zeros(ff, dtype=np.float32))
        w.add_tensor(f"{b}.ffn_down.weight", rand(e, ff))
        w.add_tensor(f"{b}.ffn_down.bias", np.zeros(e, dtype=np.float32))
    # The projector: vision width -> chat model width, through GELU.
    w.add_tensor("mm.0.weight", rand(t, e))
    w.add_tensor("mm.0.bias", np.zeros(t, dtype=np.float32))
    w.add_tensor("mm.2.weight", rand(t, t))
    w.add_tensor("mm.2.bias", np.zeros(t, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(a.out + ".part", a.out)
    print(f"{a.out}: {os.path.getsize(a.out)} bytes, {n_pos - 1} image tokens of width {t}")


if __name__ == "__main__":
    main()
