#!/usr/bin/env bash
# `make dist-cuda`: the CUDA release, beside `make dist`'s CPU one, under dist/:
#   hearth-VERSION-x86_64-unknown-linux-gnu-cuda.tar.gz          hearth-VERSION/{bin/hearth,
#                                          etc/, systemd/, docs/, README.md, INSTALL.md}
#   hearth-VERSION-x86_64-unknown-linux-gnu-cuda.tar.gz.sha256   its checksum alone
# from the binary `make build-cuda` built (mk/cuda.sh; run that first: it takes ~20
# minutes cold). Same layout as the CPU tarball, so install-sh installs either.
#
# The binary carries the CUDA runtime (static) and llama.cpp's kernels for CUDA_ARCHS;
# it finds on the host, through the ordinary library search (ld.so.conf,
# LD_LIBRARY_PATH), what NVIDIA licenses separately and the host must have
# (docs/gpu.md): libcublas.so.13 and libcublasLt.so.13 (CUDA 13's cuBLAS: NVIDIA's
# libcublas-13-0 package, or the pip wheel nvidia-cublas), and the driver's
# libcuda.so.1 (opened at run time; without it, the binary runs on CPU). The checks
# below refuse a binary that would find them anywhere else: a RUNPATH into the build's
# toolkit or its link stubs, a bundled driver library.
#
# It is built on this host (Debian 12, glibc 2.36), not in `make dist`'s Debian 11
# root: the highest glibc version it needs is printed, and must be at most
# DIST_CUDA_GLIBC_MAX (2.35: Ubuntu 22.04).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'dist-cuda: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

glibc_max=${DIST_CUDA_GLIBC_MAX:-2.35}
triple=x86_64-unknown-linux-gnu
out=dist
bin=$(bash mk/cuda.sh path 2>/dev/null) || die "no CUDA build for CUDA_ARCHS=${CUDA_ARCHS:-90}: run make build-cuda first"
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
name=hearth-$version
tarball=$name-$triple-cuda.tar.gz
epoch=$(git log -1 --format=%ct 2>/dev/null || date +%s)

# ---- checks on the binary ----
dyn=$(readelf -d --wide "$bin")
needed=$(sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' <<<"$dyn" | paste -sd' ')
log "needs: $needed"
if grep -E '\((RPATH|RUNPATH)\)' <<<"$dyn"; then
    die "the binary has a RUNPATH: libraries must come from the host's search path"
fi
# libcublasLt.so.13 comes in through libcublas.so.13's own NEEDED.
case " $needed " in *" libcublas.so.13 "*) ;; *) die "the binary does not need libcublas.so.13: is it a CUDA build?" ;; esac
case " $needed " in
    *" libcuda.so"*) die "the binary links the driver's libcuda (it must start without the driver)" ;;
    *" libcudart.so"*) die "the binary links libcudart dynamically (the runtime is meant to be static)" ;;
esac
bash packaging/check-glibc.sh "$bin" "$glibc_max" >&2
version_line=$("$bin" --version 2>/dev/null) ||
    version_line=$(LD_LIBRARY_PATH=$(dirname "$(readlink -f "$HOME/.cache/hearth/cuda/root-${CUDA_VERSION:-13.0.2}/lib64/libcublas.so.13")") "$bin" --version)
case $version_line in
    "hearth $version (commit "*", features: cuda ("*) log "$version_line" ;;
    *) die "unexpected --version: $version_line" ;;
esac
asset=$(find web/dist/assets -name '*.js' -printf 'assets/%f\n' 2>/dev/null | sort | head -n1)
if [ -z "$asset" ] || ! grep -a -q -F "$asset" "$bin"; then
    die "the binary does not embed web/dist (make web-build, then make build-cuda)"
fi

# ---- the release folder: make dist's layout ----
rm -rf "$out/tmp-cuda" && mkdir -p "$out/tmp-cuda"
trap 'rm -rf "$out/tmp-cuda"' EXIT
stage=$out/tmp-cuda/$name
mkdir -p "$stage/bin" "$stage/etc" "$stage/systemd" "$stage/docs"
strip -o "$stage/bin/hearth" "$bin"
chmod 0755 "$stage/bin/hearth"
# A manifest for the renderers only (its release must be named as the CPU tarball).
cat >"$out/tmp-cuda/deploy.toml" <<TOML
[host]
name = "this host"
target = "local"
[hearth]
tls = "off"
[release]
version = "$version"
url = "https://example.invalid/$name-$triple.tar.gz"
sha256 = "$(printf '0%.0s' {1..64})"
TOML
render() {
    LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:$(dirname "$(readlink -f "$HOME/.cache/hearth/cuda/root-${CUDA_VERSION:-13.0.2}/lib64/libcublas.so.13")") \
        "$stage/bin/hearth" deploy render "$1" --manifest "$out/tmp-cuda/deploy.toml"
}
render systemd-unit | sed 's/^# Hearth on this host, rendered from deploy.toml by hearth-deploy/# Hearth, rendered by hearth-deploy/' >"$stage/systemd/hearth.service"
render systemd-env | sed 's/ on this host, rendered from deploy.toml by hearth-deploy\./, rendered by hearth-deploy./' >"$stage/systemd/hearth.env"
{
    cat packaging/hearth.toml.head
    render hearth-toml | sed '1,2d'
    cat packaging/hearth.toml.tail
} >"$stage/etc/hearth.toml"
cp docs/*.md "$stage/docs/"
cp README.md "$stage/"
cp packaging/RELEASE-README.md "$stage/INSTALL.md"
for f in LICENSE LICENSE-* COPYING; do [ -f "$f" ] && cp "$f" "$stage/"; done

find "$stage" -exec touch -h -d "@$epoch" {} +
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
    -C "$out/tmp-cuda" -cf - "$name" | gzip -9 -n >"$out/$tarball"
(cd "$out" && sha256sum "$tarball" >"$tarball.sha256")
log "$out/$tarball: $(stat -c %s "$out/$tarball") bytes (binary $(stat -c %s "$bin") bytes, $(stat -c %s "$stage/bin/hearth") stripped)"
