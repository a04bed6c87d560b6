#!/usr/bin/env bash
# Hearth's `cuda` build on a machine without a CUDA installation; called by mk/cuda.mk.
#   mk/cuda.sh toolkit   install the pinned CUDA wheels and assemble the toolkit root
#   mk/cuda.sh build     the toolkit, then `hearth` with --features cuda (release)
#   mk/cuda.sh env       print the build's environment (KEY=VALUE lines, for `check`)
#   mk/cuda.sh check     `cargo check --features cuda` beside the cached build (about a
#                        minute), else a visible SKIPPED line saying why
#   mk/cuda.sh path      print the built binary's path
#
# The toolkit comes from PyPI (Debian's main archive has none): NVIDIA's CUDA 13.0
# wheels hold nvcc, the runtime and cuBLAS under site-packages/nvidia/cu13. CMake and
# nvcc need a classic root made of them (../shared/CUDA.md has the why of each rule):
#   bin/        a link per file (nvcc finds ../lib64 from argv[0] without resolving links)
#   include, nvvm   links to the wheel's folders
#   lib64/      a real folder, a link per library plus unversioned .so links
#   lib64/stubs link-time only, never shipped or put in a RUNPATH: empty
#               libcublas_static.a, libcublasLt_static.a and libculibos.a (see Linking)
# No lib/ (with lib -> lib64 CMake writes the stubs path into RUNPATHs).
#
# Linking: llama-cpp-sys-2's build script links cuBLAS statically on Linux
# (`static=cublas_static`, `static=cublasLt_static`, `static=culibos`); the wheels
# ship no static cuBLAS (and a static cuBLASLt would add ~500 MB to the binary), so
# those names resolve to the empty archives and the real shared cuBLAS is linked at
# the end of the link line (RUSTFLAGS link-args): the binary needs the host's
# libcublas.so.13 and libcublasLt.so.13. The CUDA runtime is the wheel's
# libcudart_static.a (nvcc's own default), so no libcudart.so; it opens the driver's
# libcuda.so.1 itself when present. The engine's `cuda` feature builds ggml without
# CUDA's VMM pool (GGML_CUDA_NO_VMM), which would link libcuda.so.1: no driver stub is
# needed to link, and the binary starts (on CPU) on a host without the driver.
#
# Environment (set by the .mk): CUDA_VERSION (13.0.2), CUDA_ARCHS ("90"; "80;86;89;90"
# for several), HEARTH_CUDA_CACHE (~/.cache/hearth/cuda), CUDA_JOBS (nproc).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-build}
version=${CUDA_VERSION:-13.0.2}
archs=${CUDA_ARCHS:-90}
cache=${HEARTH_CUDA_CACHE:-$HOME/.cache/hearth/cuda}
jobs=${CUDA_JOBS:-$(nproc)}
venv=$cache/venv-$version
root=$cache/root-$version
# One target folder per architecture list: a different CUDA_ARCHS never rebuilds
# the other's ggml-cuda (20 minutes each on 2 cores), and the CPU build's target
# folder (~/.cache/hearth/target) is never touched.
target=$cache/target-sm$(printf '%s' "$archs" | tr -c '0-9a-z' '-')
bin=$target/release/hearth

log() { echo "cuda: $*" >&2; }
die() { log "error: $*"; exit 1; }

case $archs in
  *[!0-9a-z\;]* | '') die "CUDA_ARCHS must be compute capabilities like 90 or \"80;86;89;90\", not '$archs'" ;;
esac

toolkit() {
  if [ ! -f "$venv/.complete" ]; then
    log "installing the CUDA $version wheels from PyPI into $venv (~865 MB)"
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      "cuda-toolkit[nvcc,cudart,cublas,cccl,crt,nvvm]==$version"
    touch "$venv/.complete"
  fi
  [ -f "$root/.complete" ] && return 0
  local cu
  cu=$(echo "$venv"/lib/python3*/site-packages/nvidia/cu13)
  [ -x "$cu/bin/nvcc" ] || die "no nvcc in $cu/bin: the wheels changed layout"
  log "assembling the toolkit root $root"
  rm -rf "$root"
  mkdir -p "$root/bin" "$root/lib64/stubs"
  for f in "$cu"/bin/*; do ln -s "$f" "$root/bin/"; done
  ln -s "$cu/include" "$root/include"
  ln -s "$cu/nvvm" "$root/nvvm"
  for f in "$cu"/lib/*; do ln -s "$f" "$root/lib64/"; done
  for l in cudart cublas cublasLt; do ln -s "lib$l.so.13" "$root/lib64/lib$l.so"; done
  stubs
  "$root/bin/nvcc" --version >/dev/null || die "nvcc from $root does not run"
  touch "$root/.complete"
}

# Empty archives for the static cuBLAS names llama-cpp-sys-2 asks for (see Linking).
stubs() {
  local s=$root/lib64/stubs
  for l in cublas_static cublasLt_static culibos; do ar rc "$s/lib$l.a"; done
}

# What llama-cpp-sys-2's build script reads: CMAKE_* variables become cmake -D
# definitions; CUDA_LIBRARY_PATH/lib64 (and its stubs) become link-search paths
# (find_cuda_helper); CUDACXX and CUDAToolkit_ROOT are read by CMake itself.
# GGML_NATIVE stays OFF (the crate's default without target-cpu=native): this
# machine's AVX-512 may be missing on the GPU host.
build_env() {
  cat <<EOF
CARGO_TARGET_DIR=$target
CUDACXX=$root/bin/nvcc
CUDAToolkit_ROOT=$root
CUDA_PATH=$root
CUDA_LIBRARY_PATH=$root
CMAKE_CUDA_COMPILER=$root/bin/nvcc
CMAKE_CUDA_ARCHITECTURES=$archs
CMAKE_BUILD_PARALLEL_LEVEL=$jobs
CARGO_BUILD_JOBS=$jobs
RUSTFLAGS=-C link-arg=-L$root/lib64 -C link-arg=-lcublas -C link-arg=-lcublasLt
EOF
}

with_env() {
  local envs=()
  while IFS= read -r line; do envs+=("$line"); done < <(build_env)
  env "${envs[@]}" "$@"
}

case $mode in
  toolkit) toolkit ;;
  env) build_env ;;
  path) [ -x "$bin" ] || die "no CUDA build at $bin (make build-cuda)"; echo "$bin" ;;
  build)
    toolkit
    mkdir -p "$target"
    start=$SECONDS
    log "building hearth --features cuda for CUDA_ARCHS=$archs into $target"
    log "(a cold build compiles ggml-cuda: ~20 minutes per architecture on 2 cores)"
    with_env cargo build --release --locked -p hearth-cli --bin hearth --features cuda
    log "built $bin in $((SECONDS - start)) s ($(du -h "$bin" | cut -f1))"
    # The stub folder and the toolkit must not be where the binary looks for libraries.
    if readelf -d "$bin" | grep -E 'RPATH|RUNPATH' | grep -q -E "$cache|stubs"; then
      die "$bin has the toolkit in its RUNPATH: $(readelf -d "$bin" | grep -E 'RPATH|RUNPATH')"
    fi
    # The host has no cuBLAS: the wheel's, for this one run.
    LD_LIBRARY_PATH=$root/lib64 "$bin" --version
    ;;
  check)
    if [ ! -f "$root/.complete" ] || ! ls -d "$target"/release/build/llama-cpp-sys-2-*/out/build >/dev/null 2>&1; then
      echo "SKIPPED: cargo check --features cuda (no cached CUDA build under $cache; run make build-cuda once)"
      exit 0
    fi
    # The check reuses the build's compiled llama.cpp (same target folder, profile,
    # features and environment: 71 s here, measured 2026-12-01) as long as the
    # build is of the llama-cpp-sys-2 this tree locks; a build of another version
    # would be recompiled (ggml-cuda: 50 minutes on 2 cores), so that is a skip.
    want=$(awk '/^name = "llama-cpp-sys-2"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
    if ! grep -qs "llama-cpp-sys-2-$want/" "$target"/release/build/llama-cpp-sys-2-*/out/build/CMakeCache.txt; then
      echo "SKIPPED: cargo check --features cuda (the cached CUDA build under $target is not of llama-cpp-sys-2 $want, which this tree locks: run make build-cuda)"
      exit 0
    fi
    # A build running there holds the folder's lock: the check would wait for it.
    if pgrep -f -- "$target/" >/dev/null; then
      echo "SKIPPED: cargo check --features cuda (a CUDA build is running in $target; run make test-cuda after it)"
      exit 0
    fi
    # The engine builds llama.cpp with its multimodal library (`mtmd`, for images):
    # the check reuses a finished build of it only (cargo writes the build script's
    # `output` when it ends), else it would compile ggml-cuda again.
    finished=""
    for dir in "$target"/release/build/llama-cpp-sys-2-*; do
      if [ -f "$dir/output" ] && { ! grep -q '"mtmd"' crates/hearth-engine/Cargo.toml \
        || grep -qs 'LLAMA_BUILD_MTMD:BOOL=ON' "$dir/out/build/CMakeCache.txt"; }; then
        finished=1
      fi
    done
    if [ -z "$finished" ]; then
      echo "SKIPPED: cargo check --features cuda (the cached CUDA build under $target is unfinished or has no mtmd, which the engine now builds: run make build-cuda)"
      exit 0
    fi
    if [ "${HEARTH_CUDA_CHECK:-1}" = 0 ]; then
      echo "SKIPPED: cargo check --features cuda (HEARTH_CUDA_CHECK=0)"
      exit 0
    fi
    start=$SECONDS
    # The build's own packages, features and profile. Bounded: should the cached
    # llama.cpp be stale after all, the check would start compiling ggml-cuda.
    set +e
    with_env timeout "${HEARTH_CUDA_CHECK_TIMEOUT:-900}" \
      cargo check --release --locked -p hearth-cli --bin hearth --features cuda
    rc=$?
    set -e
    if [ "$rc" = 124 ]; then
      echo "SKIPPED: cargo check --features cuda ran past ${HEARTH_CUDA_CHECK_TIMEOUT:-900} s: the cached build under $target is stale (it was recompiling llama.cpp); run make build-cuda"
      exit 0
    fi
    [ "$rc" = 0 ] || die "cargo check --features cuda failed (exit $rc)"
    echo "cargo check --features cuda: ok in $((SECONDS - start)) s (CUDA_ARCHS=$archs, $cache)"
    ;;
  *) die "unknown mode '$mode' (toolkit, build, env, check, path)" ;;
esac
