#!/usr/bin/env bash
# `make dist`: the release the installers fetch, under dist/:
#   hearth-VERSION-x86_64-unknown-linux-gnu.tar.gz   hearth-VERSION/{bin/hearth, etc/, systemd/, docs/, README.md}
#   hearth-VERSION-x86_64-unknown-linux-gnu.tar.gz.sha256   its checksum alone (deploy.toml's release.sha256)
#   hearth_VERSION_amd64.deb                          the same release, installed as the installer does
#   SHA256SUMS                                        both, in `sha256sum -c` format
#
# The binary is built in a Debian 11 root (packaging/build-root.sh: glibc 2.31), so it
# starts on Ubuntu 22.04 (glibc 2.35) and 24.04 and Debian 12; packaging/check-glibc.sh
# refuses it if it needs a newer glibc than DIST_GLIBC_MAX. The build runs inside a
# private mount namespace (`unshare -m`): the source tree (read-only), the host's
# rustup and cargo home and the dist target folder are bind-mounted into the root,
# and every mount goes away with the namespace when the build ends. Crates come
# from the host's cargo cache (`cargo fetch` first; the build itself is offline).
#
# Environment: DIST_GLIBC_MAX (2.31), DIST_GLIBCXX_MAX (3.4.30: Ubuntu 22.04's libstdc++),
# DIST_JOBS (nproc), HEARTH_DIST_CACHE
# (~/.cache/hearth/dist: the root and the target folder), GGML_* (passed to
# llama.cpp's cmake, e.g. GGML_AVX2=OFF for CPUs older than Haswell).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'dist: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

start=$(date +%s)
cache=${HEARTH_DIST_CACHE:-$HOME/.cache/hearth/dist}
target=$cache/target
out=dist
glibc_max=${DIST_GLIBC_MAX:-2.31}
glibcxx_max=${DIST_GLIBCXX_MAX:-3.4.30}
jobs=${DIST_JOBS:-$(nproc)}
triple=x86_64-unknown-linux-gnu

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || die "no version in Cargo.toml's [workspace.package]"
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
# A build from uncommitted changes says so in `hearth --version`.
if [ "$commit" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    commit=$commit-dirty
fi
name=hearth-$version
tarball=$name-$triple.tar.gz
deb=hearth_${version}_amd64.deb
# Files in the archives carry the commit's time, so the same commit gives the same tarball.
epoch=$(git log -1 --format=%ct 2>/dev/null || date +%s)

[ -f web/dist/index.html ] || die "web/dist is not built (make web-build); the release must embed the UI"
[ "$(id -u)" = 0 ] || die "the build root needs root (debootstrap, unshare -m, chroot); run as root"

log "hearth $version (commit $commit): building in Debian 11"
root=$(bash packaging/build-root.sh)
cargo fetch --locked --target "$triple" >&2

# GGML_* variables reach llama.cpp's cmake (llama-cpp-sys-2's build.rs passes them through).
ggml_env=()
while IFS='=' read -r k v; do
    case $k in GGML_*) ggml_env+=("$k=$v") ;; esac
done < <(env)

mkdir -p "$target"
build_start=$(date +%s)
# shellcheck disable=SC2016 # expanded by the inner shell
unshare --mount --propagation private -- bash -euc '
    root=$1 src=$2 target=$3 home=$4; shift 4
    mkdir -p "$root/src" "$root/target" "$root/root/.rustup" "$root/root/.cargo"
    mount --bind "$src" "$root/src"
    mount -o remount,bind,ro "$root/src"
    mount --bind "$home/.rustup" "$root/root/.rustup"
    mount -o remount,bind,ro "$root/root/.rustup"
    mount --bind "$home/.cargo" "$root/root/.cargo"
    mount --bind "$target" "$root/target"
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    exec chroot "$root" /usr/bin/env -i "$@"
' dist-build "$root" "$PWD" "$target" "$HOME" \
    HOME=/root PATH=/root/.cargo/bin:/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
    RUSTUP_HOME=/root/.rustup CARGO_HOME=/root/.cargo CARGO_TARGET_DIR=/target \
    CARGO_BUILD_JOBS="$jobs" CMAKE_BUILD_PARALLEL_LEVEL="$jobs" \
    HEARTH_BUILD_COMMIT="$commit" \
    RUSTFLAGS= GGML_NATIVE=OFF "${ggml_env[@]}" \
    bash -c 'cd /src && cargo build --release --locked --offline -p hearth-cli --bin hearth --features static-openmp' \
    || die "the build in the Debian 11 root failed"
build_s=$(( $(date +%s) - build_start ))
bin=$target/release/hearth

# ---- checks on the binary ----
bash packaging/check-glibc.sh "$bin" "$glibc_max" "$glibcxx_max" >&2
# llama.cpp's CPU code: GGML_NATIVE=ON would tune it to this machine (AVX-512 here)
# and the release would die with SIGILL on another CPU. llama-cpp-sys-2 turns it on
# only for RUSTFLAGS with target-cpu=native, which the build above clears.
cmake_cache=$(find "$target"/release/build -path '*/llama-cpp-sys-2-*/out/build/CMakeCache.txt' -printf '%T@ %p\n' 2>/dev/null | sort -n | tail -n1 | cut -d' ' -f2-)
[ -n "$cmake_cache" ] || die "no CMakeCache.txt of llama-cpp-sys-2 under $target/release/build"
isa=$(grep -E '^GGML_(NATIVE|SSE42|AVX|AVX2|FMA|F16C|BMI2|AVX512|AVX_VNNI):BOOL=' "$cmake_cache" | sed 's/:BOOL//' | sort | paste -sd' ')
case " $isa " in *" GGML_NATIVE=OFF "*) ;; *) die "llama.cpp was built with GGML_NATIVE on ($isa)" ;; esac
case " $isa " in *" GGML_AVX512=ON "*) die "llama.cpp was built with AVX-512 ($isa)" ;; esac
log "llama.cpp CPU options: $isa"
if readelf -d "$bin" | grep -q 'NEEDED.*libgomp'; then die "the binary links libgomp dynamically (static-openmp is off)"; fi
# The UI is embedded: the built index's script is in the binary, the "not built" page is not.
asset=$(find web/dist/assets -name '*.js' -printf 'assets/%f\n' | sort | head -n1)
grep -a -q -F "$asset" "$bin" || die "the binary does not embed web/dist ($asset not found)"
! grep -a -q -F "The chat UI was not built into this binary" "$bin" || die "the binary embeds the fallback page, not web/dist"
version_line=$("$bin" --version)
[ "$version_line" = "hearth $version (commit $commit, features: cpu)" ] || die "unexpected --version: $version_line"
log "$version_line"

# ---- the release folder ----
rm -rf "$out" && mkdir -p "$out/tmp"
stage=$out/tmp/$name
mkdir -p "$stage/bin" "$stage/etc" "$stage/systemd" "$stage/docs"
install -m 0755 "$bin" "$stage/bin/hearth"
# The unit, its environment and the config come from the real renderers, through a
# manifest for a host serving on loopback (the installer renders its own from deploy.toml).
cat >"$out/tmp/deploy.toml" <<TOML
[host]
name = "this host"
target = "local"
[hearth]
tls = "off"
[release]
version = "$version"
url = "https://example.invalid/hearth-$version-$triple.tar.gz"
sha256 = "$(printf '0%.0s' {1..64})"
TOML
render() { "$stage/bin/hearth" deploy render "$1" --manifest "$out/tmp/deploy.toml"; }
render systemd-unit | sed 's/^# Hearth on this host, rendered from deploy.toml by hearth-deploy/# Hearth, rendered by hearth-deploy/' >"$stage/systemd/hearth.service"
render systemd-env | sed 's/ on this host, rendered from deploy.toml by hearth-deploy\./, rendered by hearth-deploy./' >"$stage/systemd/hearth.env"
{
    cat packaging/hearth.toml.head
    render hearth-toml | sed '1,2d'
    cat packaging/hearth.toml.tail
} >"$stage/etc/hearth.toml"
cp docs/*.md "$stage/docs/"
cp README.md "$stage/"
for f in LICENSE LICENSE-* COPYING; do [ -f "$f" ] && cp "$f" "$stage/"; done
cp packaging/RELEASE-README.md "$stage/INSTALL.md"

# ---- the tarball ----
find "$stage" -exec touch -h -d "@$epoch" {} +
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
    -C "$out/tmp" -cf - "$name" | gzip -9 -n >"$out/$tarball"

# The real installer (the release's own install-sh) verifies and installs it.
bash packaging/test-tarball.sh "$out/$tarball" "$version" >&2

# ---- the .deb ----
bash packaging/deb.sh "$stage" "$version" "$out/$deb" "$epoch"
# Installed, checked, removed and purged in a throwaway copy of the Debian 11 root.
bash packaging/test-deb.sh "$out/$deb" >&2

(cd "$out" && sha256sum "$tarball" "$deb" >SHA256SUMS && sha256sum "$tarball" >"$tarball.sha256" && sha256sum -c --quiet SHA256SUMS)
rm -rf "$out/tmp"

total_s=$(( $(date +%s) - start ))
log "done in ${total_s} s (build ${build_s} s):"
(cd "$out" && stat -c '  %n  %s bytes' "$tarball" "$deb" SHA256SUMS) >&2
log "binary: $(stat -c %s "$bin") bytes"
