#!/usr/bin/env bash
# Makes (once) the Debian 11 (bullseye, glibc 2.31) root that release binaries
# are built in, and prints its path. A binary linked against Debian 12's glibc
# (2.36) does not start on Ubuntu 22.04 (2.35); one linked against 2.31 starts on
# every image the installers name (Ubuntu 22.04 and 24.04, Debian 12).
#
# The root lives under $HEARTH_DIST_CACHE (default ~/.cache/hearth/dist), named
# after the hash of the suite and the package list: changing either makes a new one.
# debootstrap runs as root (or through sudo) and writes only under that folder.
set -euo pipefail

cache=${HEARTH_DIST_CACHE:-$HOME/.cache/hearth/dist}
mirror=${HEARTH_DIST_MIRROR:-http://deb.debian.org/debian}

# What building the workspace needs: a C/C++ toolchain and cmake for llama.cpp
# (gcc 10, cmake 3.18), libclang for bindgen, git for build scripts that ask it.
# Rust itself comes from the host's rustup (its binaries need only an old glibc).
suite=bullseye
packages=build-essential,cmake,clang,libclang-dev,pkg-config,git,ca-certificates
key=$(printf '%s %s' "$suite" "$packages" | sha256sum | cut -c1-12)
root=$cache/$suite-$key

if [ -f "$root/.complete" ]; then
    echo "$root"
    exit 0
fi

SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
command -v debootstrap >/dev/null || PATH=$PATH:/usr/sbin:/sbin
command -v debootstrap >/dev/null || { echo "build-root: debootstrap is missing (make dist installs it)" >&2; exit 1; }

mkdir -p "$cache"
$SUDO rm -rf "$root.tmp"
echo "build-root: debootstrap $suite into $root (once; a few minutes)" >&2
$SUDO debootstrap --variant=minbase --include="$packages" "$suite" "$root.tmp" "$mirror" >&2 \
    || { echo "build-root: debootstrap failed; see $root.tmp/debootstrap/debootstrap.log" >&2; exit 1; }
# The old roots of this script's earlier versions are no use any more.
for old in "$cache"/"$suite"-*; do
    case $old in "$root.tmp" | "$root") ;; *) [ -d "$old" ] && $SUDO rm -rf "$old" ;; esac
done
$SUDO touch "$root.tmp/.complete"
$SUDO mv "$root.tmp" "$root"
echo "$root"
