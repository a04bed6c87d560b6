#!/usr/bin/env bash
# deb.sh RELEASE_DIR VERSION OUT.deb EPOCH: the .deb of a release folder (made by
# dist.sh), with plain dpkg-deb: the layout is the installer's, not a cargo
# package's, and dpkg-deb is on every Debian machine (cargo-deb would be one more
# tool to build, and would want to build the binary itself, on this glibc).
#
#   /opt/hearth/releases/VERSION/...        the release folder, as the installer puts it
#   /opt/hearth/current -> releases/VERSION
#   /usr/bin/hearth -> /opt/hearth/current/bin/hearth
#   /etc/hearth/hearth.toml, hearth.env     conffiles: an edit survives upgrades
#   /lib/systemd/system/hearth.service      a package's place for the unit (the
#                                           installer's /etc/systemd/system one wins if both exist)
#   /etc/update-motd.d/50-hearth            the login banner
# postinst creates the hearth user, /var/lib/hearth, /var/log/hearth and the admin
# key (/etc/hearth/credentials), then enables and (re)starts the service.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rel=$1 version=$2 deb=$3 epoch=$4

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
r=$work/root
mkdir -p "$r/opt/hearth/releases" "$r/usr/bin" "$r/DEBIAN"
cp -a "$rel" "$r/opt/hearth/releases/$version"
ln -s "releases/$version" "$r/opt/hearth/current"
ln -s /opt/hearth/current/bin/hearth "$r/usr/bin/hearth"
install -D -m 0644 "$rel/etc/hearth.toml" "$r/etc/hearth/hearth.toml"
install -D -m 0644 "$rel/systemd/hearth.env" "$r/etc/hearth/hearth.env"
install -D -m 0644 "$rel/systemd/hearth.service" "$r/lib/systemd/system/hearth.service"
install -D -m 0755 "$here/deb/50-hearth" "$r/etc/update-motd.d/50-hearth"
printf '%s\n' /etc/hearth/hearth.toml /etc/hearth/hearth.env /etc/update-motd.d/50-hearth >"$r/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "$here/deb/$s" "$r/DEBIAN/$s"; done

# Depends: what the binary links, each library mapped to its package; the glibc
# floor is the newest GLIBC_ version it needs.
bin=$rel/bin/hearth
glibc=$(readelf -V --wide "$bin" | { grep -o 'Name: GLIBC_[0-9][0-9.]*' || true; } | sed 's/Name: GLIBC_//' | sort -u -V | tail -n1)
deps=("libc6 (>= ${glibc:-2.17})")
for lib in $(readelf -d --wide "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    case $lib in
    libc.so.6 | libm.so.6 | libpthread.so.0 | libdl.so.2 | librt.so.1 | ld-linux-x86-64.so.2) ;;
    libstdc++.so.6) deps+=("libstdc++6 (>= 10)") ;; # built with Debian 11's gcc 10
    libgcc_s.so.1) deps+=("libgcc-s1") ;;
    *) echo "deb.sh: the binary needs $lib: name its Debian package here" >&2; exit 1 ;;
    esac
done
depends=$(printf '%s\n' "${deps[@]}" | sort -u | paste -sd',' | sed 's/,/, /g')
size=$(du -sk --exclude=DEBIAN "$r" | cut -f1)
sed -e "s/@VERSION@/$version/g" -e "s/@SIZE@/$size/" -e "s/@DEPENDS@/$depends/" \
    "$here/deb/control.in" >"$r/DEBIAN/control"

find "$r" -exec touch -h -d "@$epoch" {} +
SOURCE_DATE_EPOCH=$epoch dpkg-deb --root-owner-group -Zxz --build "$r" "$deb" >/dev/null
dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Depends\|Installed-Size\):/dist: deb \1:/p' >&2
