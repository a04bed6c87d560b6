#!/usr/bin/env python3
"""Hearth's container image, without a container daemon: the release tarball's
`hearth` binary and the shared libraries it links (taken from this machine, as
`ldd` finds them) in one layer with a non-root user, written as an OCI image
archive that `skopeo copy oci-archive:FILE docker://REGISTRY/hearth:TAG` pushes.

The layer holds:
  /usr/local/bin/hearth              the release's binary
  /lib/..., /lib64/ld-linux-*.so.2   its shared libraries and their loader
  /etc/passwd, /etc/group            root and hearth (10001:10001), the user it runs as
  /etc/nsswitch.conf                 files, then DNS
  /etc/ssl/certs/ca-certificates.crt this machine's CA bundle, when it has one
  /etc/hearth, /var/lib/hearth, /tmp where the chart mounts the config, the data
                                     and an emptyDir (read-only root filesystem)

The same tarball and the same libraries give the same bytes: every file carries
the time of the binary in the tarball (the commit's, `make dist`), or
SOURCE_DATE_EPOCH; tar headers carry no owner names; gzip no time.

usage: oci-image.py TARBALL OUT.tar [--tag TAG] [--lib-root DIR]
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from datetime import datetime, timezone

UID = 10001
PORT = 8080
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CA_BUNDLE = "etc/ssl/certs/ca-certificates.crt"


def die(msg):
    sys.exit(f"oci-image: {msg}")


def release_binary(tarball):
    """(version, binary bytes, its mtime) from hearth-VERSION/bin/hearth."""
    with tarfile.open(tarball) as tar:
        for m in tar.getmembers():
            match = re.fullmatch(r"hearth-([^/]+)/bin/hearth", m.name)
            if match and m.isfile():
                return match.group(1), tar.extractfile(m).read(), m.mtime
    die(f"{tarball} has no hearth-VERSION/bin/hearth (is it `make dist`'s tarball?)")


def shared_libraries(binary, lib_root):
    """The libraries the binary loads, with the loader: (path in the image, host file).

    `ldd` runs the system's loader in its listing mode; for a static binary it
    lists nothing, and any `not found` is an error (the image would not start)."""
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(binary)
        path = f.name
    try:
        os.chmod(path, 0o755)
        run = subprocess.run(["ldd", path], capture_output=True, text=True,
                             env={**os.environ, "LC_ALL": "C"})
    finally:
        os.unlink(path)
    out = run.stdout + run.stderr
    if "not a dynamic executable" in out or "statically linked" in out:
        return []
    if run.returncode != 0:
        die(f"ldd failed: {out.strip()}")
    libs = []
    for line in out.splitlines():
        line = line.strip()
        if "not found" in line:
            die(f"a library the binary needs is not on this machine: {line}")
        m = re.match(r"(\S+) => (/\S+) \(0x", line) or re.match(r"(/\S+) \(0x", line)
        if not m:
            continue  # linux-vdso.so.1 (the kernel's)
        image_path = m.group(m.lastindex)
        host = os.path.realpath(os.path.join(lib_root, image_path.lstrip("/")))
        if not os.path.isfile(host):
            die(f"{host} (for {image_path}) is not a file")
        libs.append((image_path.lstrip("/"), host))
    if not libs:
        die(f"ldd listed no library: {out.strip()}")
    return sorted(set(libs))


class Layer:
    """A tar built in memory: files and folders with fixed times and owners."""

    def __init__(self, mtime):
        self.mtime = mtime
        self.entries = {}  # path -> (TarInfo, bytes or None)

    def _info(self, name, mode, uid=0):
        info = tarfile.TarInfo(name)
        info.mtime, info.mode, info.uid, info.gid = self.mtime, mode, uid, uid
        info.uname = info.gname = ""
        return info

    def folder(self, name, mode=0o755, uid=0):
        info = self._info(name, mode, uid)
        info.type = tarfile.DIRTYPE
        self.entries[name] = (info, None)

    def file(self, name, data, mode=0o644):
        parts = name.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in self.entries:
                self.folder(parent)
        info = self._info(name, mode)
        info.size = len(data)
        self.entries[name] = (info, data)

    def tar(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name in sorted(self.entries):
                info, data = self.entries[name]
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tarball", help="the release tarball (make dist)")
    ap.add_argument("out", help="the OCI image archive to write")
    ap.add_argument("--tag", help="the image's tag (default: the version)")
    ap.add_argument("--lib-root", default="/",
                    help="where the libraries ldd names are read (default /)")
    args = ap.parse_args()

    version, binary, binary_mtime = release_binary(args.tarball)
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", binary_mtime))
    created = datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    tag = args.tag or version

    layer = Layer(epoch)
    for name, uid, mode in [("etc/hearth", 0, 0o755), ("var/lib/hearth", UID, 0o750),
                            ("tmp", 0, 0o1777)]:
        for i, part in enumerate(name.split("/")[:-1]):
            layer.folder("/".join(name.split("/")[: i + 1]))
        layer.folder(name, mode, uid)
    layer.file("usr/local/bin/hearth", binary, 0o755)
    for image_path, host in shared_libraries(binary, args.lib_root):
        with open(host, "rb") as f:
            layer.file(image_path, f.read(), 0o755)
    layer.file("etc/passwd", (
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"hearth:x:{UID}:{UID}:Hearth:/var/lib/hearth:/usr/sbin/nologin\n").encode())
    layer.file("etc/group", f"root:x:0:\nhearth:x:{UID}:\n".encode())
    layer.file("etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
    ca = os.path.join(args.lib_root, CA_BUNDLE)
    if os.path.isfile(ca):
        with open(ca, "rb") as f:
            layer.file(CA_BUNDLE, f.read())
    else:
        print(f"oci-image: no {ca}: the image has no CA bundle "
              "(Hearth's HTTPS client has its own roots)", file=sys.stderr)

    tar = layer.tar()
    layer_gz = gzip.compress(tar, compresslevel=9, mtime=0)
    labels = {
        "org.opencontainers.image.title": "hearth",
        "org.opencontainers.image.description":
            "Hearth, a self-hosted AI platform: an OpenAI-compatible gateway with a chat UI",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.source": "https://github.com/hearth/hearth",
    }
    config = canonical({
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": f"{UID}:{UID}",
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/var/lib/hearth"],
            # `docker run IMAGE` serves; `docker run IMAGE doctor` runs another command.
            "Entrypoint": ["/usr/local/bin/hearth"],
            "Cmd": ["serve"],
            "WorkingDir": "/var/lib/hearth",
            "ExposedPorts": {f"{PORT}/tcp": {}},
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
        "history": [{"created": created,
                     "created_by": f"deploy/image/oci-image.py {os.path.basename(args.tarball)}"}],
    })
    manifest = canonical({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": LAYER_TYPE, "digest": sha256(layer_gz), "size": len(layer_gz)}],
        "annotations": {"org.opencontainers.image.version": version,
                        "org.opencontainers.image.created": created},
    })
    index = canonical({
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [{"mediaType": MANIFEST_TYPE, "digest": sha256(manifest),
                       "size": len(manifest),
                       "platform": {"architecture": "amd64", "os": "linux"},
                       "annotations": {"org.opencontainers.image.ref.name": tag}}],
    })

    archive = Layer(epoch)
    archive.folder("blobs")
    archive.folder("blobs/sha256")
    archive.file("oci-layout", canonical({"imageLayoutVersion": "1.0.0"}))
    archive.file("index.json", index)
    for blob in (layer_gz, config, manifest):
        archive.file("blobs/sha256/" + sha256(blob).split(":")[1], blob)
    tmp = args.out + ".part"
    with open(tmp, "wb") as f:
        f.write(archive.tar())
    os.replace(tmp, args.out)
    print(f"{args.out}: hearth {version}, tag {tag}, manifest {sha256(manifest)}, "
          f"layer {len(layer_gz)} bytes ({len(tar)} unpacked)")


if __name__ == "__main__":
    main()
