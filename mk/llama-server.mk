# llama.cpp's `llama-server`, for the managed-engine tests and the benchmark of
# the `llama-server` preset ([models.launch]):
#   make llama-server              build it once into ~/.cache/hearth/llama-server
#   make -s llama-server-path      print the binary's path (building it first if needed):
#                                  LLAMA_SERVER=$$(make -s llama-server-path)
# Debian bookworm packages no llama.cpp and the engine crate's vendored copy has
# no server sources, so mk/llama-server.sh builds it (CPU-only, the server target
# alone, static) from the llama.cpp inside the PyPI sdist of llama-cpp-python.
# Not in SETUP (`make run` does not need it): the cargo tests do, for one real run
# of the preset (HEARTH_TEST_LLAMA_SERVER; _REQUIRED makes a missing one a failure,
# not a skip). A cold build takes minutes, once: the binary is cached. The script
# installs what it builds with (cmake, g++) through `make apt` when missing.
UNIT_DEPS += llama-server
UNIT_ENV += HEARTH_TEST_LLAMA_SERVER="$$($(MAKE) -s --no-print-directory llama-server-path)" HEARTH_TEST_LLAMA_SERVER_REQUIRED=1

# The sdist pins a llama.cpp commit: bumping this rebuilds into a new cache dir.
LLAMA_SERVER_PY_VERSION ?= 0.3.36
LLAMA_SERVER_CACHE ?= $(HOME)/.cache/hearth/llama-server
# 1: tuned for this CPU (cache dir keyed by its ISA flags); 0: portable AVX2 build.
LLAMA_SERVER_NATIVE ?= 1
LLAMA_SERVER_JOBS ?= $(shell nproc)

LLAMA_SERVER_ENV = LLAMA_SERVER_PY_VERSION=$(LLAMA_SERVER_PY_VERSION) \
  LLAMA_SERVER_CACHE=$(LLAMA_SERVER_CACHE) LLAMA_SERVER_NATIVE=$(LLAMA_SERVER_NATIVE) \
  LLAMA_SERVER_JOBS=$(LLAMA_SERVER_JOBS) MAKE="$(MAKE)"

.PHONY: llama-server llama-server-path

llama-server:
	@$(LLAMA_SERVER_ENV) bash mk/llama-server.sh build

llama-server-path:
	@$(LLAMA_SERVER_ENV) bash mk/llama-server.sh path
