# ---- the installer's fixed body (crates/hearth-deploy/src/render/install_body.sh) ----

ROOT="${HEARTH_ROOT:-}"
ROOT="${ROOT%/}"
TARBALL="hearth-$HEARTH_VERSION-x86_64-unknown-linux-gnu.tar.gz"

log() { printf 'hearth-install: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Acting on the machine itself (users, services, firewall) only as root and
# without a prefix; under a prefix only files are written.
if [ -z "$ROOT" ] && [ "$(id -u)" = 0 ]; then SYSTEM=1; else SYSTEM=0; fi
CHANGED=0

# ---- 1. fetch and verify, before anything under the root changes ----
# curl (or wget), and CA certificates for an https:// release, come from the
# distribution only when missing: stock Debian and Ubuntu images have both, so
# there nothing is installed or upgraded (a first boot needs no package mirror).
no_fetcher() { ! command -v curl >/dev/null 2>&1 && ! command -v wget >/dev/null 2>&1; }
no_ca_bundle() {
    case "$HEARTH_URL" in
        https://*) [ ! -s /etc/ssl/certs/ca-certificates.crt ] ;;
        *) return 1 ;;
    esac
}
if [ -z "${HEARTH_RELEASE_FILE:-}" ] && { no_fetcher || no_ca_bundle; } && command -v apt-get >/dev/null 2>&1; then
    log "installing curl and ca-certificates (apt-get)"
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl ca-certificates; } >&2 ||
        die "cannot install curl and ca-certificates with apt-get; install curl or wget, or set HEARTH_RELEASE_FILE"
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/hearth-install.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
if [ -n "${HEARTH_RELEASE_FILE:-}" ]; then
    [ -f "$HEARTH_RELEASE_FILE" ] || die "HEARTH_RELEASE_FILE=$HEARTH_RELEASE_FILE is not a file"
    cp "$HEARTH_RELEASE_FILE" "$WORK/$TARBALL"
elif command -v curl >/dev/null 2>&1; then
    log "downloading $HEARTH_URL"
    curl -fsSL --retry 3 -o "$WORK/$TARBALL" "$HEARTH_URL" || die "cannot download $HEARTH_URL"
elif command -v wget >/dev/null 2>&1; then
    log "downloading $HEARTH_URL"
    wget -q -O "$WORK/$TARBALL" "$HEARTH_URL" || die "cannot download $HEARTH_URL"
else
    die "neither curl nor wget is installed; install one, or set HEARTH_RELEASE_FILE"
fi
if ! (cd "$WORK" && printf '%s  %s\n' "$HEARTH_SHA256" "$TARBALL" | sha256sum -c --status -); then
    die "checksum mismatch: $TARBALL is not the release deploy.toml names (sha256 $HEARTH_SHA256); nothing was changed"
fi
mkdir "$WORK/x"
tar -xzf "$WORK/$TARBALL" -C "$WORK/x" || die "cannot unpack $TARBALL"
# The tarball holds bin/hearth at its top or inside one folder.
SRC="$WORK/x"
if [ ! -f "$SRC/bin/hearth" ]; then
    for d in "$WORK"/x/*/; do
        if [ -f "${d}bin/hearth" ]; then SRC="${d%/}"; fi
    done
fi
[ -f "$SRC/bin/hearth" ] || die "$TARBALL holds no bin/hearth"
log "release $HEARTH_VERSION verified"

# ---- helpers ----
# install_file PATH MODE: stdin to PATH, replaced atomically and only if it differs.
install_file() {
    dest=$1 mode=$2
    mkdir -p "$(dirname "$dest")"
    cat >"$dest.hearth-new"
    chmod "$mode" "$dest.hearth-new"
    if [ -f "$dest" ] && cmp -s "$dest" "$dest.hearth-new"; then
        rm -f "$dest.hearth-new"
        chmod "$mode" "$dest"
    else
        mv -f "$dest.hearth-new" "$dest"
        CHANGED=1
        log "wrote $dest"
    fi
}

own() {
    if [ "$SYSTEM" = 1 ]; then chown "$@"; fi
}

# ---- 2. the user and folders ----
if [ "$SYSTEM" = 1 ] && ! id hearth >/dev/null 2>&1; then
    nologin=/usr/sbin/nologin
    [ -x "$nologin" ] || nologin=/bin/false
    useradd --system --user-group --home-dir /var/lib/hearth --no-create-home --shell "$nologin" hearth
    log "created the system user hearth"
fi
mkdir -p "$ROOT/opt/hearth/releases" "$ROOT/etc/hearth" "$ROOT/var/lib/hearth" "$ROOT/var/log/hearth"
chmod 0755 "$ROOT/opt/hearth" "$ROOT/opt/hearth/releases" "$ROOT/etc/hearth"
chmod 0750 "$ROOT/var/lib/hearth" "$ROOT/var/log/hearth"
own hearth:hearth "$ROOT/var/lib/hearth" "$ROOT/var/log/hearth"

# ---- 3. the release folder (never changed once complete) and the current link ----
REL="$ROOT/opt/hearth/releases/$HEARTH_VERSION"
if [ ! -d "$REL" ]; then
    rm -rf "$REL.hearth-new"
    cp -R "$SRC" "$REL.hearth-new"
    chmod -R go-w "$REL.hearth-new"
    chmod 0755 "$REL.hearth-new" "$REL.hearth-new/bin/hearth"
    mv "$REL.hearth-new" "$REL"
    CHANGED=1
    log "installed $REL"
fi
CUR="$ROOT/opt/hearth/current"
if [ "$(readlink "$CUR" 2>/dev/null || true)" != "releases/$HEARTH_VERSION" ]; then
    ln -sfn "releases/$HEARTH_VERSION" "$CUR.hearth-new"
    mv -T "$CUR.hearth-new" "$CUR"
    CHANGED=1
    log "current -> releases/$HEARTH_VERSION"
fi

# ---- 4. config, environment, unit ----
# Through files, not pipes: install_file must run in this shell to record a change.
hearth_toml >"$WORK/hearth.toml"
hearth_env >"$WORK/hearth.env"
hearth_unit >"$WORK/hearth.service"
install_file "$ROOT/etc/hearth/hearth.toml" 0644 <"$WORK/hearth.toml"
# A new unit or environment takes a restart; a new release or config, a reload.
before=$CHANGED
CHANGED=0
install_file "$ROOT/etc/hearth/hearth.env" 0644 <"$WORK/hearth.env"
install_file "$ROOT/etc/systemd/system/hearth.service" 0644 <"$WORK/hearth.service"
UNIT_CHANGED=$CHANGED
if [ "$before" = 1 ]; then CHANGED=1; fi

# ---- the login banner: what the running Hearth says of itself ----
# It keeps /run/hearth/status current (server.status_file); `hearth status` prints the same.
install_file "$ROOT/etc/update-motd.d/50-hearth" 0755 <<'MOTD_EOF'
#!/bin/sh
# Hearth's state at login: URLs, where the key is, each model's state and what to do.
if [ -r /run/hearth/status ]; then
    cat /run/hearth/status
else
    echo "Hearth: not running. 'systemctl status hearth' says why; 'hearth doctor' checks the host."
fi
MOTD_EOF

# ---- 5. the admin key: generated once, kept forever after ----
CRED="$ROOT/etc/hearth/credentials"
if [ ! -s "$CRED" ]; then
    key=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    [ ${#key} = 64 ] || die "cannot read 32 random bytes from /dev/urandom"
    (umask 077 && printf 'sk-%s' "$key" >"$CRED.hearth-new")
    chmod 0600 "$CRED.hearth-new"
    mv -f "$CRED.hearth-new" "$CRED"
    CHANGED=1
    log "generated the admin key in $CRED (mode 0600)"
fi
chmod 0600 "$CRED"
own hearth:hearth "$CRED"

# ---- 6. the firewall: SSH and Hearth's ports, nothing else ----
if [ "$SYSTEM" = 1 ] && [ "$HEARTH_FIREWALL" = 1 ]; then
    if command -v ufw >/dev/null 2>&1; then
        ufw allow "$HEARTH_SSH_PORT/tcp" >/dev/null
        for p in $HEARTH_PORTS; do ufw allow "$p/tcp" >/dev/null; done
        ufw --force enable >/dev/null
        log "ufw: allowed ssh ($HEARTH_SSH_PORT) and $HEARTH_PORTS"
    elif command -v nft >/dev/null 2>&1; then
        ports=$(printf '%s' "$HEARTH_SSH_PORT $HEARTH_PORTS" | tr ' ' ',')
        install_file /etc/hearth/firewall.nft 0644 <<NFT_EOF
# Hearth's firewall: SSH and Hearth's ports in, everything else dropped.
table inet hearth
delete table inet hearth
table inet hearth {
    chain input {
        type filter hook input priority 0; policy drop;
        ct state established,related accept
        iif lo accept
        # ICMP and ICMPv6 by number: without /etc/protocols (no netbase) nft cannot resolve ipv6-icmp
        meta l4proto { 1, 58 } accept
        tcp dport { $ports } accept
    }
}
NFT_EOF
        install_file /etc/systemd/system/hearth-firewall.service 0644 <<'UNIT_EOF'
[Unit]
Description=Hearth's firewall (nftables)
# Loaded before any network comes up, as Debian's nftables.service is. Without
# DefaultDependencies=no the unit is ordered after sysinit.target, which
# cloud-init's network stage precedes while it waits for the network: an
# ordering cycle that systemd breaks by dropping this unit (no firewall at boot).
DefaultDependencies=no
Wants=network-pre.target
Before=network-pre.target shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/nft -f /etc/hearth/firewall.nft
ExecReload=/usr/sbin/nft -f /etc/hearth/firewall.nft

[Install]
WantedBy=sysinit.target
UNIT_EOF
        nft -f /etc/hearth/firewall.nft
        log "nftables: allowed ssh ($HEARTH_SSH_PORT) and $HEARTH_PORTS"
    else
        log "warning: neither ufw nor nft is installed; the firewall is left as it is"
    fi
fi

# ---- 7. the service: only where systemd runs the machine ----
if [ "$SYSTEM" = 1 ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if [ -f /etc/systemd/system/hearth-firewall.service ]; then
        # reenable: an install from before moves from multi-user.target's wants to sysinit.target's.
        systemctl reenable hearth-firewall.service >/dev/null 2>&1
    fi
    systemctl enable hearth.service >/dev/null 2>&1
    if [ "$UNIT_CHANGED" = 1 ]; then
        systemctl restart hearth.service
        log "hearth.service (re)started"
    elif [ "$CHANGED" = 1 ]; then
        # A new release or config: the running Hearth hands its socket to the new
        # one (no request dropped); a stopped service is started.
        systemctl reload-or-restart hearth.service
        log "hearth.service reloaded (upgraded without a restart)"
    else
        systemctl start hearth.service
    fi
elif [ "$SYSTEM" = 1 ]; then
    log "systemd is not running this machine: start Hearth with /opt/hearth/current/bin/hearth serve --config /etc/hearth/hearth.toml"
fi

if [ "$CHANGED" = 1 ]; then
    log "done: Hearth $HEARTH_VERSION installed${ROOT:+ under $ROOT}"
else
    log "done: nothing to change (Hearth $HEARTH_VERSION)"
fi
