#!/usr/bin/env bash
# test-deb.sh DEB: installs DEB with dpkg in a throwaway copy of the Debian 11
# build root (an overlay in a private mount namespace: nothing outlives the
# command, the root itself is not changed, this machine is not touched) and checks
# what it did: the layout, the user, the key, that `hearth --version` and
# `hearth config check` run there on glibc 2.31; then removes and purges it.
set -euo pipefail
deb=$(realpath "$1")
root=$(bash "$(dirname "$0")/build-root.sh")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# shellcheck disable=SC2016 # expanded by the inner shell
unshare --mount --propagation private -- bash -euc '
    root=$1 work=$2 deb=$3
    m=$work/merged
    mkdir -p "$work/upper" "$work/work" "$m"
    mount -t overlay overlay -o "lowerdir=$root,upperdir=$work/upper,workdir=$work/work" "$m"
    mount -t proc proc "$m/proc"
    mount --rbind /dev "$m/dev"
    cp "$deb" "$m/tmp/hearth.deb"
    inroot() { chroot "$m" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
    inroot dpkg -i /tmp/hearth.deb >/dev/null
    inroot sh -euc "
        v=\$(readlink /opt/hearth/current)
        test -x /opt/hearth/\$v/bin/hearth
        echo \"installed: /opt/hearth/current -> \$v; \$(hearth --version)\"
        test -f /etc/hearth/hearth.toml && test -f /etc/hearth/hearth.env && test -f /lib/systemd/system/hearth.service
        grep -q ^/etc/hearth/hearth.toml\$ /var/lib/dpkg/info/hearth.conffiles
        id hearth >/dev/null
        test \"\$(stat -c %a:%U /etc/hearth/credentials)\" = 600:hearth
        grep -Eq ^sk-[0-9a-f]{64}\$ /etc/hearth/credentials
        test \"\$(stat -c %a:%U /var/lib/hearth)\" = 750:hearth
        hearth config check /etc/hearth/hearth.toml >/dev/null
        echo \"user hearth, key /etc/hearth/credentials (0600), default config valid\"
    "
    inroot dpkg --purge hearth >/dev/null
    inroot sh -euc "! test -e /opt/hearth/current && ! test -e /usr/bin/hearth && ! test -e /etc/hearth/credentials"
    echo "removed and purged: no /opt/hearth/current, /usr/bin/hearth or key left"
' test-deb "$root" "$work" "$deb" | sed 's/^/test-deb: /'
