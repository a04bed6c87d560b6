#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` into a per-user cache; called by
# mk/llama-server.mk (`make llama-server`, `make -s llama-server-path`).
#   mk/llama-server.sh build   build unless the cached binary runs
#   mk/llama-server.sh path    the same, then print the binary's absolute path
# All progress goes to stderr, so stdout of `path` is the path alone.
#
# Source: llama.cpp as vendored in the PyPI sdist of llama-cpp-python (Debian
# bookworm packages no llama.cpp, and the Rust crate's copy lacks tools/server).
# Environment (set by the .mk; defaults for running it by hand):
#   LLAMA_SERVER_PY_VERSION  the llama-cpp-python sdist version
#   LLAMA_SERVER_CACHE       cache root; the binary is <root>/<key>/bin/llama-server
#   LLAMA_SERVER_NATIVE      1: -march=native (key includes the CPU's ISA flags);
#                            0: portable x86-64-v3 (AVX2/FMA/F16C) build
#   LLAMA_SERVER_JOBS        parallel compile jobs
set -euo pipefail

mode=${1:-build}
version=${LLAMA_SERVER_PY_VERSION:-0.3.36}
cache=${LLAMA_SERVER_CACHE:-$HOME/.cache/hearth/llama-server}
native=${LLAMA_SERVER_NATIVE:-1}
jobs=${LLAMA_SERVER_JOBS:-$(nproc)}
make_cmd=${MAKE:-make}

log() { echo "llama-server: $*" >&2; }

# A native build only runs on CPUs with the same instruction-set extensions, and
# the cache dir may be shared (a CI cache, an NFS home): key it by the ISA flags
# that ggml's CPU backend uses, not by the whole flags line (microcode and
# mitigation flags differ between otherwise identical hosts).
if [ "$native" = 1 ]; then
  isa=$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null |
    grep -o -w -E 'sse4_2|avx|avx2|fma|f16c|bmi2|avx512[a-z_0-9]*|avx_vnni|amx[a-z_0-9]*|asimd[a-z]*|sve[0-9]*|i8mm|dotprod' |
    sort -u | tr '\n' ' ' || true)
  # (-noamx: the builds before AMX was turned off crash on CPUs that have it.)
  key="$version-native-noamx-$(printf '%s %s' "$(uname -m)" "$isa" | sha256sum | cut -c1-10)"
else
  key="$version-portable-$(uname -m)"
fi
dir="$cache/$key"
bin="$dir/bin/llama-server"

runs() { [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; }

if ! runs; then
  # Debian packages the build needs: installed through `make apt` (sudo when
  # not root), and only these, not everything the project lists.
  pkgs=""
  command -v cmake >/dev/null || pkgs="$pkgs cmake"
  command -v c++ >/dev/null || pkgs="$pkgs g++"
  command -v pip3 >/dev/null || command -v pip >/dev/null || python3 -m pip --version >/dev/null 2>&1 ||
    pkgs="$pkgs python3-pip"
  if [ -n "$pkgs" ]; then "$make_cmd" -s --no-print-directory apt APT_PACKAGES="$pkgs" >&2; fi
  PIP=$(command -v pip3 || command -v pip || echo "python3 -m pip")

  tmp=$(mktemp -d "${TMPDIR:-/tmp}/hearth-llama-server.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  start=$SECONDS

  log "downloading the llama-cpp-python $version sdist from PyPI (~76 MB)"
  # shellcheck disable=SC2086  # $PIP may be "python3 -m pip"
  $PIP download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    --dest "$tmp" "llama-cpp-python==$version" >&2
  sdist=$(echo "$tmp"/llama_cpp_python-*.tar.gz)
  # Only vendor/llama.cpp, without what a server-only build never reads
  # (test models, docs, examples, the web UI's sources: ~140 of its 176 MB).
  src_prefix="llama_cpp_python-$version/vendor/llama.cpp"
  tar -xzf "$sdist" -C "$tmp" \
    --exclude="$src_prefix/models" --exclude="$src_prefix/docs" \
    --exclude="$src_prefix/tests" --exclude="$src_prefix/examples" \
    --exclude="$src_prefix/benches" --exclude="$src_prefix/media" \
    --exclude="$src_prefix/gguf-py" --exclude="$src_prefix/tools/ui/src" \
    --exclude="$src_prefix/tools/ui/static" --exclude="$src_prefix/tools/ui/tests" \
    "$src_prefix" "llama_cpp_python-$version/.git/modules/vendor/llama.cpp/HEAD" 2>/dev/null ||
    tar -xzf "$sdist" -C "$tmp" "$src_prefix"
  rm -f "$sdist"
  src="$tmp/$src_prefix"
  # (Older llama.cpp kept it in examples/server, built only with the examples.)
  if [ ! -f "$src/tools/server/CMakeLists.txt" ]; then
    log "error: the llama-cpp-python $version sdist has no vendor/llama.cpp/tools/server"
    exit 1
  fi
  # The sdist keeps the submodule's git dir, whose HEAD names the llama.cpp commit;
  # the build number (bNNNN) needs the history, which the sdist lacks.
  commit=$(head -c 8 "$tmp/llama_cpp_python-$version/.git/modules/vendor/llama.cpp/HEAD" 2>/dev/null || echo unknown)

  # Options this llama.cpp has: TLS and libcurl only serve its model downloads
  # (-hf/-mu); Hearth passes a local GGUF over plain http on 127.0.0.1, so they
  # are off and the build needs neither libssl-dev nor libcurl-dev. The web UI
  # would come from Hugging Face or npm at build time: off (the API is unchanged).
  opts=()
  for o in LLAMA_CURL LLAMA_OPENSSL LLAMA_USE_PREBUILT_UI LLAMA_BUILD_UI LLAMA_BUILD_APP \
           LLAMA_BUILD_WEBUI LLAMA_USE_PREBUILT_WEBUI LLAMA_LLGUIDANCE; do
    if grep -q "option($o " "$src/CMakeLists.txt"; then opts+=("-D$o=OFF"); fi
  done
  if [ "$native" = 1 ]; then
    # Native, but without AMX: on a Sapphire Rapids VM (2026-12-02) this llama.cpp's
    # AMX tile kernels crashed the server at its first decode (SIGSEGV at
    # ldtilecfg), though the kernel granted the tile state. GCC keeps an explicit
    # -mno-* over what -march=native turns on, whatever their order.
    opts+=(-DGGML_NATIVE=ON)
    if [ "$(uname -m)" = x86_64 ]; then
      amx_off="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
      opts+=("-DCMAKE_C_FLAGS=$amx_off" "-DCMAKE_CXX_FLAGS=$amx_off")
    fi
  else
    opts+=(-DGGML_NATIVE=OFF)
  fi

  # Measured on a 2-core bookworm VM shared with other builds: 9m14s and 12m01s
  # wall, 9 CPU-minutes of compiling; so about 5 minutes on 2 idle cores.
  log "building llama-server $version (llama.cpp $commit) — about $(( (10 + jobs - 1) / jobs )) minutes on $jobs idle cores, more on busy ones"
  configure() {
    rm -rf "$tmp/build"
    "$CMAKE" -S "$src" -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release \
      -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
      -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
      -DLLAMA_BUILD_COMMIT="$commit" "${opts[@]}" >"$tmp/configure.log" 2>&1
  }
  CMAKE=cmake
  if ! configure; then
    # bookworm has cmake 3.25 (enough for 0.3.36); when some CMakeLists.txt of a
    # newer llama.cpp requires more, use PyPI's cmake wheel, in the build dir only.
    need=$(grep -o -E 'CMake [0-9]+(\.[0-9]+)+ or higher is required' "$tmp/configure.log" |
      grep -o -E '[0-9]+(\.[0-9]+)+' | sort -V | tail -1)
    [ -n "$need" ] || { cat "$tmp/configure.log" >&2; log "error: cmake configure failed"; exit 1; }
    log "llama.cpp needs cmake >= $need (have $(cmake --version | head -1)): using PyPI's cmake"
    # shellcheck disable=SC2086  # $PIP may be "python3 -m pip"
    $PIP install --quiet --disable-pip-version-check --target "$tmp/cmake-py" "cmake>=$need" >&2
    CMAKE="$tmp/cmake-py/cmake/data/bin/cmake"  # the wheel's binary (bin/cmake is a Python shim)
    configure || { cat "$tmp/configure.log" >&2; log "error: cmake configure failed"; exit 1; }
  fi
  "$CMAKE" --build "$tmp/build" --target llama-server -j "$jobs" >"$tmp/build.log" 2>&1 ||
    { tail -n 60 "$tmp/build.log" >&2; log "error: build failed"; exit 1; }

  # Install atomically: the new dir appears whole or not at all, so a build
  # killed half-way or two builds at once never leave a broken binary behind.
  mkdir -p "$cache"
  stage=$(mktemp -d "$cache/.$key.XXXXXX")
  chmod 755 "$stage"  # mktemp makes it 0700; a shared cache must be readable
  mkdir -p "$stage/bin"
  cp "$tmp/build/bin/llama-server" "$stage/bin/llama-server"
  strip "$stage/bin/llama-server" 2>/dev/null || true
  printf 'llama-cpp-python %s\nllama.cpp %s\nnative %s\n' "$version" "$commit" "$native" >"$stage/BUILD-INFO"
  rm -rf "$dir"
  mv -T "$stage" "$dir" 2>/dev/null || { rm -rf "$stage"; log "another build installed $dir first"; }
  runs || { log "error: $bin does not run"; exit 1; }
  log "installed $bin ($(( (SECONDS - start) / 60 ))m$(( (SECONDS - start) % 60 ))s)"
fi

if [ "$mode" = path ]; then
  echo "$bin"
fi
