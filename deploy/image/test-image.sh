#!/usr/bin/env bash
# `make test-image`: deploy/image/oci-image.py on a release tarball holding a small
# C program as `hearth` (libc and libm, as the real one links libc, libm, libstdc++
# and libgcc_s): a `make dist` takes far too long for `make test`, and the packer
# does not care what the binary is. Checked with the real tools, offline:
#   - two runs give the same bytes;
#   - skopeo reads the archive: the config (user 10001, entrypoint, cmd, port,
#     labels), and `skopeo copy` to an OCI folder verifies every digest;
#   - umoci unpacks it; the binary runs from the unpacked root (chrooted as user
#     10001 when we are root, else through the root's own loader), so the layer
#     has every library it loads;
#   - the layer's entries: owners, modes, fixed times, /etc/passwd;
#   - a corrupted blob makes skopeo and umoci fail (their failure is not silent).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "test-image: FAIL: $*" >&2; exit 1; }
cd "$tmp"

mkdir -p hearth-0.0.0-test/bin
cat >fake.c <<'EOF'
#include <math.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    printf("hearth 0.0.0-test uid=%d %s sqrt=%.1f\n", (int)getuid(), argc > 1 ? argv[1] : "", sqrt(16.0 * argc));
    return 0;
}
EOF
gcc -O1 -o hearth-0.0.0-test/bin/hearth fake.c -lm
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1764000000 \
    -czf hearth-0.0.0-test-x86_64-unknown-linux-gnu.tar.gz hearth-0.0.0-test

python3 "$here/oci-image.py" hearth-0.0.0-test-x86_64-unknown-linux-gnu.tar.gz a.tar >/dev/null
python3 "$here/oci-image.py" hearth-0.0.0-test-x86_64-unknown-linux-gnu.tar.gz b.tar --tag latest >/dev/null
python3 "$here/oci-image.py" hearth-0.0.0-test-x86_64-unknown-linux-gnu.tar.gz c.tar --tag latest >/dev/null
cmp -s b.tar c.tar || fail "two runs gave different archives"

skopeo inspect --config oci-archive:a.tar >config.json
python3 - config.json <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
cfg = c["config"]
want = {
    "User": "10001:10001",
    "Entrypoint": ["/usr/local/bin/hearth"],
    "Cmd": ["serve"],
    "ExposedPorts": {"8080/tcp": {}},
    "WorkingDir": "/var/lib/hearth",
}
for k, v in want.items():
    assert cfg.get(k) == v, f"config {k}: {cfg.get(k)!r}, want {v!r}"
assert cfg["Labels"]["org.opencontainers.image.version"] == "0.0.0-test", cfg["Labels"]
assert c["created"] == "2025-11-24T16:00:00Z", c["created"]
assert (c["os"], c["architecture"]) == ("linux", "amd64")
EOF
skopeo inspect oci-archive:b.tar:latest >/dev/null || fail "no image tagged latest in b.tar"

skopeo copy -q oci-archive:a.tar oci:layout:0.0.0-test
umoci unpack --rootless --image layout:0.0.0-test bundle >/dev/null
root=bundle/rootfs
if [ "$(id -u)" = 0 ] && chroot / true 2>/dev/null; then
    # The image's own loader and libraries, nothing of this machine's, as 10001.
    out=$(chroot --userspec=10001:10001 "$root" /usr/local/bin/hearth doctor)
    want="hearth 0.0.0-test uid=10001 doctor sqrt=5.7"
else
    out=$("$root"/lib64/ld-linux-x86-64.so.2 --library-path "$root"/lib/x86_64-linux-gnu \
        "$root"/usr/local/bin/hearth doctor)
    want="hearth 0.0.0-test uid=$(id -u) doctor sqrt=5.7"
fi
[ "$out" = "$want" ] || fail "the binary in the image printed '$out', want '$want'"

layer=$(python3 -c '
import json, sys
m = json.load(open(sys.argv[1] + "/index.json"))["manifests"][0]["digest"].split(":")[1]
print(json.load(open(sys.argv[1] + "/blobs/sha256/" + m))["layers"][0]["digest"].split(":")[1])' layout)
python3 - "layout/blobs/sha256/$layer" <<'EOF'
import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    m = {i.name: i for i in t.getmembers()}
    passwd = t.extractfile("etc/passwd").read().decode()
for name, (uid, mode) in {
    "usr/local/bin/hearth": (0, 0o755),
    "var/lib/hearth": (10001, 0o750),
    "tmp": (0, 0o1777),
    "etc/hearth": (0, 0o755),
    "lib64/ld-linux-x86-64.so.2": (0, 0o755),
    "lib/x86_64-linux-gnu/libm.so.6": (0, 0o755),
}.items():
    assert name in m, f"{name} not in the layer: {sorted(m)}"
    assert (m[name].uid, m[name].mode) == (uid, mode), f"{name}: uid {m[name].uid} mode {oct(m[name].mode)}"
assert {i.mtime for i in m.values()} == {1764000000}, "times are not all the tarball's"
assert {(i.uname, i.gname) for i in m.values()} == {("", "")}, "owner names in the layer"
assert "hearth:x:10001:10001:" in passwd, passwd
EOF

# A flipped byte in the layer: both tools must refuse it.
cp -r layout bad
python3 - "bad/blobs/sha256/$layer" <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0xFF
open(p, "wb").write(bytes(b))
EOF
if skopeo copy -q oci:bad:0.0.0-test oci:bad-copy:0.0.0-test 2>/dev/null; then
    fail "skopeo copied an image with a corrupted layer"
fi
if umoci unpack --rootless --image bad:0.0.0-test bad-bundle >/dev/null 2>&1; then
    fail "umoci unpacked an image with a corrupted layer"
fi
echo "test-image: ok (deterministic, skopeo and umoci read it, the binary runs in it as 10001, a corrupted layer is refused)"
