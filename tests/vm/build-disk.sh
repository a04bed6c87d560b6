#!/bin/bash
# Builds the Debian 12 VM disk `make test-vm` boots, once: debootstrap into a
# folder, an ext4 image made from it without loop mounts (mkfs.ext4 -d), and a
# qcow2 base that each run boots through its own overlay (the base stays as built).
#
#   tests/vm/build-disk.sh DIR   build into DIR (vmlinuz, initrd.img, base.qcow2)
#
# The image is a plain Debian cloud guest: kernel, systemd, udev, ifupdown with
# DHCP, cloud-init (NoCloud only, so it does not probe cloud metadata services;
# locales for its locale module), netbase (/etc/protocols, as on Debian's images),
# openssh-server, sudo, curl, ca-certificates and nftables. Nothing of Hearth is
# added here (what the installer needs must come from the user data), except
# libgomp1 for the debug build the test ships (below).
# Everything happens under DIR; debootstrap runs in its own mount and PID
# namespaces, so its /proc mount and anything a package starts end with it.
set -euo pipefail

DIR=${1:?usage: build-disk.sh DIR}
MIRROR=${HEARTH_VM_MIRROR:-http://deb.debian.org/debian}
SIZE=${HEARTH_VM_DISK_SIZE:-4G}
# debootstrap does not resolve virtual packages: python3-cffi-backend provides
# what python3-cryptography (for cloud-init) needs. libgomp1: the debug hearth
# the test ships links OpenMP dynamically (release builds link it statically).
PACKAGES=systemd-sysv,udev,dbus,linux-image-amd64,initramfs-tools,ifupdown,isc-dhcp-client,iproute2,cloud-init,python3-cffi-backend,openssh-server,sudo,curl,ca-certificates,nftables,procps,less,locales,netbase,libgomp1

[ "$(id -u)" = 0 ] || { echo "build-disk.sh: debootstrap needs root" >&2; exit 1; }

mkdir -p "$DIR"
# The .debs stay for a rebuild (a changed script); a failed build stays for a look.
debs=$(cd "$DIR/.." && pwd)/debootstrap-debs
mkdir -p "$debs"
work=$(mktemp -d "$DIR/.build.XXXXXX")
trap 'if [ $? = 0 ]; then rm -rf "$work"; else echo "vm disk: the failed build is in $work" >&2; fi' EXIT
root=$work/root
start=$(date +%s)

echo "vm disk: debootstrap bookworm ($MIRROR) into $root"
unshare --mount --pid --fork --propagation private \
    debootstrap --variant=minbase --cache-dir="$debs" --include="$PACKAGES" bookworm "$root" "$MIRROR" \
    >"$work/debootstrap.log" 2>&1 || {
    tail -n 40 "$work/debootstrap.log" "$root/debootstrap/debootstrap.log" >&2 2>/dev/null
    echo "vm disk: debootstrap failed" >&2
    exit 1
}

cat >"$root/etc/fstab" <<'FSTAB'
/dev/vda / ext4 rw,errors=remount-ro 0 1
FSTAB
cat >"$root/etc/network/interfaces" <<'IFACES'
# cloud-init writes the DHCP interface into interfaces.d.
auto lo
iface lo inet loopback
source /etc/network/interfaces.d/*
IFACES
cat >"$root/etc/cloud/cloud.cfg.d/90-hearth-vm.cfg" <<'CFG'
# The test VM's seed is a NoCloud disk (label cidata); skip probing the others.
datasource_list: [NoCloud, None]
# As Debian's cloud images do: the host name resolves (sudo asks).
manage_etc_hosts: true
# A locale that exists without locale-gen (cloud-init's default, en_US.UTF-8, does not).
locale: C.UTF-8
CFG
cat >"$root/etc/apt/sources.list" <<LIST
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
LIST
echo localhost >"$root/etc/hostname"
# A fresh machine id at first boot, as on a cloud image.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
# Host keys are made at first boot by cloud-init, per VM.
rm -f "$root"/etc/ssh/ssh_host_*
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root/debootstrap"

kernel=$(find "$root/boot" -maxdepth 1 -name 'vmlinuz-*' | sort | tail -n 1)
initrd=$(find "$root/boot" -maxdepth 1 -name 'initrd.img-*' | sort | tail -n 1)
if [ -z "$kernel" ] || [ -z "$initrd" ]; then
    echo "vm disk: no kernel or initrd in $root/boot" >&2
    exit 1
fi
cp "$kernel" "$work/vmlinuz"
cp "$initrd" "$work/initrd.img"
chmod 0644 "$work/vmlinuz" "$work/initrd.img"

echo "vm disk: ext4 image ($SIZE) from the root folder"
mkfs.ext4 -q -F -L root -d "$root" "$work/disk.raw" "$SIZE"
qemu-img convert -f raw -O qcow2 "$work/disk.raw" "$work/base.qcow2"
mv "$work/vmlinuz" "$work/initrd.img" "$work/base.qcow2" "$DIR/"
echo "vm disk: built $DIR in $(( $(date +%s) - start )) s ($(du -sh "$DIR/base.qcow2" | cut -f1) qcow2)"
