#!/usr/bin/env bash
# test-tarball.sh TARBALL VERSION: runs the real installer (rendered by the
# release's own `hearth deploy render install-sh`) on TARBALL under a throwaway
# HEARTH_ROOT (files only: no user, service or firewall), and checks that it
# verified the checksum, installed the release folder and switched `current`;
# then that a tarball with one byte changed is refused before anything is written.
set -euo pipefail
tarball=$(realpath "$1") version=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/x"
tar -xzf "$tarball" -C "$work/x"
hearth=$work/x/hearth-$version/bin/hearth

manifest() { # manifest SHA256
    cat <<TOML
[host]
name = "dist-test"
target = "local"
[hearth]
tls = "off"
[release]
version = "$version"
url = "https://example.invalid/$(basename "$tarball")"
sha256 = "$1"
TOML
}
manifest "$(sha256sum "$tarball" | cut -d' ' -f1)" >"$work/deploy.toml"
"$hearth" deploy render install-sh --manifest "$work/deploy.toml" >"$work/install.sh"

HEARTH_ROOT=$work/root HEARTH_RELEASE_FILE=$tarball sh "$work/install.sh" 2>"$work/log" || { cat "$work/log" >&2; exit 1; }
grep -q "release $version verified" "$work/log"
[ "$(readlink "$work/root/opt/hearth/current")" = "releases/$version" ]
"$work/root/opt/hearth/current/bin/hearth" --version >/dev/null
[ -f "$work/root/etc/systemd/system/hearth.service" ]
echo "test-tarball: the installer verified and installed it: current -> releases/$version"

# A corrupted download: refused, and nothing under the root.
cp "$tarball" "$work/bad.tar.gz"
printf 'x' | dd of="$work/bad.tar.gz" bs=1 seek=100 conv=notrunc status=none
if HEARTH_ROOT=$work/root2 HEARTH_RELEASE_FILE=$work/bad.tar.gz sh "$work/install.sh" 2>"$work/log2"; then
    echo "test-tarball: FAIL: the installer accepted a corrupted tarball" >&2
    exit 1
fi
grep -q "checksum mismatch" "$work/log2" && [ ! -e "$work/root2" ]
echo "test-tarball: a tarball with one byte changed is refused (checksum mismatch), nothing written"
