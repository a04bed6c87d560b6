# The GPU build (docs/gpu.md): hearth with `--features cuda`, built on this CPU-only
# machine from NVIDIA's CUDA 13.0 wheels on PyPI (mk/cuda.sh says how and why).
#   make build-cuda         the toolkit into ~/.cache/hearth/cuda (once, ~865 MB), then
#                           hearth for CUDA_ARCHS into its own target folder there (the CPU
#                           build's is never touched). A cold build compiles llama.cpp's
#                           CUDA kernels: ~20 minutes per architecture on 2 cores; later
#                           builds reuse the folder and take minutes.
#   make dist-cuda          the release tarball of that build (packaging/dist-cuda.sh)
#   make bench-gpu-pack     the build packed for the GPU benchmark (bench/gpu/run.sh)
#   make test-cuda          part of `make test`: the GPU benchmark's script run on CPU
#                           (selftest), and `cargo check --features cuda` beside the cached
#                           build (about a minute: it reuses that build's llama.cpp), or a
#                           SKIPPED line saying why (no cache, a cache of another
#                           llama-cpp-sys-2, HEARTH_CUDA_CHECK=0)
# CUDA_ARCHS: compute capabilities, `;`-separated: 90 H100/H200 (default), 80 A100,
# 86 RTX 30xx/A10/A40, 89 RTX 40xx/L4/L40S; 100/120 Blackwell run sm_90's PTX.
CUDA_ARCHS ?= 90
CUDA_VERSION ?= 13.0.2
HEARTH_CUDA_CACHE ?= $(HOME)/.cache/hearth/cuda
CUDA_ENV = CUDA_ARCHS="$(CUDA_ARCHS)" CUDA_VERSION=$(CUDA_VERSION) HEARTH_CUDA_CACHE=$(HEARTH_CUDA_CACHE)

TEST_SUITES += test-cuda
# The synthetic-model test (crates/hearth-engine/tests/synthetic_model.rs) runs
# bench/gpu/make_model.py with numpy and `gguf` from PyPI, pinned in .venv-embed
# (mk/embedding.mk's target).
UNIT_DEPS += .venv-embed/.complete
UNIT_ENV += HEARTH_TEST_GGUF_PYTHON=$(CURDIR)/.venv-embed/bin/python HEARTH_TEST_GGUF_REQUIRED=1

.PHONY: build-cuda cuda-toolkit dist-cuda bench-gpu-pack test-cuda

cuda-toolkit:
	@$(CUDA_ENV) bash mk/cuda.sh toolkit

build-cuda: web-build
	@$(CUDA_ENV) bash mk/cuda.sh build

dist-cuda:
	@$(CUDA_ENV) bash packaging/dist-cuda.sh

bench-gpu-pack: .venv-embed/.complete
	@$(CUDA_ENV) bash bench/gpu/run.sh pack

# After `unit`, which built the debug `hearth` the selftest serves with (mk/web.mk's
# HEARTH_DEBUG_BIN: the workspace's target folder, wherever CARGO_TARGET_DIR puts it).
test-cuda: .venv-embed/.complete
	@$(CUDA_ENV) bash mk/cuda.sh check
	@HEARTH_GPU_BENCH_BIN="$(HEARTH_DEBUG_BIN)" bash bench/gpu/run.sh selftest
