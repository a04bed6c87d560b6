#!/bin/bash
# Installs what `make test-vm` needs on the host when it is missing:
# qemu-system-x86 from the same Debian suite as the installed qemu-utils (on this
# machine kind qemu-utils comes from bookworm-backports, and installing the
# bookworm qemu-system-x86 would make apt remove it), and the other tools from
# the host's own sources. Backports is used through a private sources list and
# lists folder under the cache (apt -o Dir::...), so /etc/apt stays as it is.
set -euo pipefail

CACHE=${HEARTH_VM_CACHE:-$HOME/.cache/hearth/vm}
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
export DEBIAN_FRONTEND=noninteractive

# missing PACKAGE...: appends the packages not installed to the array `need`.
need=()
missing() {
    local p
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
}

if ! dpkg -s qemu-system-x86 >/dev/null 2>&1; then
    utils=$(dpkg-query -W -f '${Version}' qemu-utils 2>/dev/null || true)
    if [[ $utils == *bpo12* ]]; then
        echo "installing qemu-system-x86 from bookworm-backports (qemu-utils $utils is from there)"
        apt=$CACHE/apt-bpo
        mkdir -p "$apt/lists/partial" "$apt/archives/partial"
        cat >"$apt/sources.list" <<'LIST'
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main
LIST
        opts=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o Dir::Etc::sourceparts=-
              -o "Dir::State::lists=$apt/lists" -o "Dir::Cache::archives=$apt/archives"
              -o APT::Sandbox::User=root)
        $SUDO apt-get "${opts[@]}" update -qq
        $SUDO apt-get "${opts[@]}" install -y -qq --no-install-recommends --no-remove \
            -t bookworm-backports qemu-system-x86
    else
        need+=(qemu-system-x86)
    fi
fi

missing qemu-utils debootstrap e2fsprogs genisoimage openssh-client curl python3 binutils
if [ ${#need[@]} -gt 0 ]; then
    echo "installing Debian packages: ${need[*]}"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
