#!/bin/bash
# The one-click path, for real: boots a Debian 12 VM under qemu/KVM with the
# user data `hearth deploy render cloud-init` renders, and checks from this
# machine that it came up as the docs say (docs/deploy.md, "Testing the
# one-click path in a VM"). `make test-vm` runs it; by hand:
#
#   HEARTH_BIN=target/debug/hearth HEARTH_VM_MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf \
#     tests/vm/run.sh
#
# Phases: the disk (built once by build-disk.sh, cached under
# ~/.cache/hearth/vm/disk-HASH, HASH of build-disk.sh), the release tarball
# (HEARTH_BIN without debug info), first boot (cloud-init runs the installer,
# which downloads the release from a loopback HTTP server here, at 10.0.2.2 for
# the VM), the checks over HTTPS and SSH through forwarded loopback ports, a
# reboot, the checks again, and "the second boot changed nothing".
#
# Environment: HEARTH_BIN, HEARTH_VM_MODEL (required); HEARTH_VM_CACHE (the
# disk cache, default ~/.cache/hearth/vm); HEARTH_VM_BOOT_TIMEOUT (seconds a
# boot may take until Hearth answers, default 600); HEARTH_VM_MAX_SECONDS (the
# whole run with a cached disk under KVM, default 480: over it the test fails);
# HEARTH_VM_ACCEL (kvm, the default, or tcg: qemu's emulator, for hosts whose
# KVM cannot boot a Debian kernel);
# HEARTH_VM_KEEP=1 keeps the temporary folder (serial log, disk overlay).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HEARTH_BIN=${HEARTH_BIN:?set HEARTH_BIN to the hearth binary the release is made of}
MODEL=${HEARTH_VM_MODEL:?set HEARTH_VM_MODEL to the default model GGUF}
CACHE=${HEARTH_VM_CACHE:-$HOME/.cache/hearth/vm}
BOOT_TIMEOUT=${HEARTH_VM_BOOT_TIMEOUT:-600}
MAX_SECONDS=${HEARTH_VM_MAX_SECONDS:-480}
ACCEL=${HEARTH_VM_ACCEL:-kvm}
DOMAIN=hearth-vm.test
MODEL_NAME=smollm2-135m
MODEL_FILE=$(basename "$MODEL")
GUEST_MODEL=/var/lib/hearth/models/$MODEL_FILE

[ -x "$HEARTH_BIN" ] || { echo "test-vm: $HEARTH_BIN is not an executable" >&2; exit 1; }
[ -s "$MODEL" ] || { echo "test-vm: $MODEL is missing (make $MODEL)" >&2; exit 1; }

# ---- timing: each phase's seconds, and the total ----
T0=$(date +%s)
PHASE='' PHASE_START=$T0 TIMES=()
phase() {
    local now
    now=$(date +%s)
    if [ -n "$PHASE" ]; then
        TIMES+=("$(printf '%-28s %4d s' "$PHASE" $((now - PHASE_START)))")
        echo "test-vm: $PHASE: $((now - PHASE_START)) s"
    fi
    PHASE=$1 PHASE_START=$now
    [ -z "$PHASE" ] || echo "test-vm: == $PHASE"
}

# mark LABEL: the seconds since the phase began, once LABEL is done (where a
# phase's time goes under tcg).
mark() {
    echo "test-vm:   +$(($(date +%s) - PHASE_START)) s $1"
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/hearth-vm.XXXXXX")
QEMU_PID='' HTTP_PID='' LOAD_PID='' SSH_UP=0
cleanup() {
    local rc=$?
    trap - EXIT
    [ -z "$LOAD_PID" ] || kill "$LOAD_PID" 2>/dev/null || true
    [ -z "$QEMU_PID" ] || kill "$QEMU_PID" 2>/dev/null || true
    [ -z "$HTTP_PID" ] || kill "$HTTP_PID" 2>/dev/null || true
    [ -z "$QEMU_PID" ] || wait "$QEMU_PID" 2>/dev/null || true
    if [ "${HEARTH_VM_KEEP:-0}" = 1 ]; then
        echo "test-vm: kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

vm_ssh() {
    ssh -i "$TMP/id" -p "$SSH_PORT" -o BatchMode=yes -o IdentitiesOnly=yes \
        -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile="$TMP/known_hosts" \
        -o ConnectTimeout=5 -o ServerAliveInterval=5 -o ServerAliveCountMax=3 \
        -o LogLevel=ERROR debian@127.0.0.1 "$@"
}

# fail MESSAGE: what failed, then what the VM says about it.
fail() {
    {
        echo "test-vm: FAILED in phase '$PHASE': $*"
        echo "---- serial console (last 60 lines of $TMP/serial.log) ----"
        tail -n 60 "$TMP/serial.log" 2>/dev/null | tr -d '\r' || true
        if [ "$SSH_UP" = 1 ]; then
            echo "---- cloud-init status ----"
            vm_ssh sudo timeout 30 cloud-init status --long 2>&1 | tail -n 20 || true
            echo "---- /var/log/hearth/install.log (last 40 lines) ----"
            vm_ssh sudo tail -n 40 /var/log/hearth/install.log 2>&1 || true
            echo "---- journalctl -u hearth (last 40 lines) ----"
            vm_ssh sudo journalctl -u hearth -n 40 --no-pager 2>&1 || true
        fi
        echo "---- release server log ----"
        cat "$TMP/http.log" 2>/dev/null || true
        # Again last: a CI log shown by its tail keeps the reason.
        echo "test-vm: FAILED in phase '$PHASE': $*"
    } >&2
    exit 1
}

# until SECONDS COMMAND...: runs COMMAND every 2 s until it succeeds; false after SECONDS.
until_ok() {
    local deadline=$(($(date +%s) + $1))
    shift
    until "$@"; do
        kill -0 "$QEMU_PID" 2>/dev/null || fail "qemu exited"
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 2
    done
}

free_ports() {
    python3 -c '
import socket
socks = [socket.socket() for _ in range(int(__import__("sys").argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# ---- the disk, built once ----
phase "disk"
DISK=$CACHE/disk-$(sha256sum "$HERE/build-disk.sh" | cut -c1-12)
DISK_CACHED=1
if [ ! -f "$DISK/base.qcow2" ]; then
    DISK_CACHED=0
    bash "$HERE/build-disk.sh" "$DISK"
fi
qemu-img create -q -f qcow2 -b "$DISK/base.qcow2" -F qcow2 "$TMP/disk.qcow2"

# ---- the release, and the server the VM downloads it from ----
phase "release tarball"
VERSION=$("$HEARTH_BIN" --version | grep -oE '^hearth [0-9][0-9A-Za-z.+_-]*' | cut -d' ' -f2) ||
    fail "cannot read the version from $HEARTH_BIN --version"
TARBALL=hearth-$VERSION-x86_64-unknown-linux-gnu.tar.gz
mkdir -p "$TMP/pkg/hearth-$VERSION/bin" "$TMP/www"
objcopy --strip-debug "$HEARTH_BIN" "$TMP/pkg/hearth-$VERSION/bin/hearth"
tar -C "$TMP/pkg" -cf - "hearth-$VERSION" | gzip -1 >"$TMP/www/$TARBALL"
SHA256=$(sha256sum "$TMP/www/$TARBALL" | cut -d' ' -f1)
ln -s "$(realpath "$MODEL")" "$TMP/www/$MODEL_FILE"
MODEL_SHA256=$(sha256sum "$MODEL" | cut -d' ' -f1)
python3 "$HERE/serve.py" "$TMP/www" "$TMP/http.port" "$TMP/http.log" &
HTTP_PID=$!
for _ in $(seq 50); do [ -s "$TMP/http.port" ] && break; sleep 0.1; done
[ -s "$TMP/http.port" ] || fail "the release server did not start"
HTTP_PORT=$(cat "$TMP/http.port")
echo "test-vm: release $TARBALL ($(du -h "$TMP/www/$TARBALL" | cut -f1), sha256 $SHA256) at http://10.0.2.2:$HTTP_PORT/"

# ---- the seed: the real user data, and what the "cloud" adds ----
phase "seed"
ssh-keygen -q -t ed25519 -N '' -C hearth-test-vm -f "$TMP/id"
mkdir "$TMP/seed"
cat >"$TMP/deploy.toml" <<EOF
# The manifest of the VM test (tests/vm/run.sh).
[host]
name = "hearth-vm"
target = "ssh"
address = "$DOMAIN"

[hearth]
tls = "self-signed"
domain = "$DOMAIN"
# listen: the default 0.0.0.0:443, reached through a forwarded port.

[release]
version = "$VERSION"
url = "http://10.0.2.2:$HTTP_PORT/$TARBALL"
sha256 = "$SHA256"

[[models]]
name = "$MODEL_NAME"
backend = "embedded"
# Hearth downloads it at its first start (to $GUEST_MODEL), then loads it.
url = "http://10.0.2.2:$HTTP_PORT/$MODEL_FILE"
sha256 = "$MODEL_SHA256"
context = 2048
parallel = 2
EOF
"$HEARTH_BIN" deploy render cloud-init --manifest "$TMP/deploy.toml" >"$TMP/seed/user-data" ||
    fail "hearth deploy render cloud-init failed"
# What a cloud provider gives a VM besides the user's data: its name and the
# user's SSH key in the metadata (cloud-init puts it in the default user's, `debian`).
cat >"$TMP/seed/meta-data" <<EOF
instance-id: hearth-vm-$(date +%s)-$$
local-hostname: hearth-vm
public-keys:
  - $(cat "$TMP/id.pub")
EOF
genisoimage -quiet -output "$TMP/seed.iso" -volid cidata -joliet -rock \
    "$TMP/seed/user-data" "$TMP/seed/meta-data"

# ---- first boot: cloud-init installs Hearth ----
phase "first boot to ssh"
read -r SSH_PORT HTTPS_PORT < <(free_ports 2)
case $ACCEL in
    # -arch-capabilities: some hosts' KVM (nested ones) refuse qemu's value for that MSR.
    kvm) ACCEL_ARGS=(-accel kvm -cpu "host,-arch-capabilities") ;;
    tcg) ACCEL_ARGS=(-accel "tcg,thread=multi" -cpu max) ;;
    *) fail "HEARTH_VM_ACCEL=$ACCEL: use kvm or tcg" ;;
esac
echo "test-vm: accelerator $ACCEL"
# q35: no floppy controller for the guest to probe.
qemu-system-x86_64 -name hearth-test-vm -machine q35 "${ACCEL_ARGS[@]}" -m 2048 -smp 2 \
    -display none -monitor none -serial "file:$TMP/serial.log" \
    -kernel "$DISK/vmlinuz" -initrd "$DISK/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0,115200 net.ifnames=0" \
    -drive "file=$TMP/disk.qcow2,if=virtio,format=qcow2" \
    -drive "file=$TMP/seed.iso,if=virtio,format=raw,readonly=on" \
    -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$SSH_PORT-:22,hostfwd=tcp:127.0.0.1:$HTTPS_PORT-:443" \
    -device virtio-net-pci,netdev=net0 -device virtio-rng-pci &
QEMU_PID=$!
echo "test-vm: qemu pid $QEMU_PID, ssh 127.0.0.1:$SSH_PORT, https 127.0.0.1:$HTTPS_PORT, serial $TMP/serial.log"
ssh_ok() { vm_ssh true 2>/dev/null; }
until_ok "$BOOT_TIMEOUT" ssh_ok || fail "no SSH within $BOOT_TIMEOUT s"
SSH_UP=1

phase "cloud-init (installer)"
# boot-finished is written at the end of cloud-init's last stage (`status --wait`
# returns early once an earlier stage has recorded an error).
finished() { vm_ssh test -e /var/lib/cloud/instance/boot-finished 2>/dev/null; }
until_ok "$BOOT_TIMEOUT" finished || fail "cloud-init did not finish within $BOOT_TIMEOUT s"
status=$(vm_ssh sudo cloud-init status --long 2>&1) || true
grep -q '^status: done' <<<"$status" || fail "cloud-init did not finish cleanly: $status"

CURL=(curl -sS --max-time 60 --cacert "$TMP/cert.pem" --resolve "$DOMAIN:$HTTPS_PORT:127.0.0.1")
BASE=https://$DOMAIN:$HTTPS_PORT
fetch_cert() {
    vm_ssh sudo cat /var/lib/hearth/tls/self-signed.crt >"$TMP/cert.pem" 2>/dev/null && [ -s "$TMP/cert.pem" ]
}
ready() {
    [ -s "$TMP/cert.pem" ] || fetch_cert || return 1
    [ "$("${CURL[@]}" -o /dev/null -w '%{http_code}' "$BASE/ready" 2>/dev/null)" = 200 ]
}
# chat: one completion with the admin key; prints the answer.
chat() {
    local key body
    key=$(vm_ssh sudo cat /etc/hearth/credentials) || fail "cannot read /etc/hearth/credentials"
    [[ $key == sk-* ]] || fail "/etc/hearth/credentials does not hold a key"
    # The whole boot timeout: under tcg, llama.cpp's vector code is emulated (seconds
    # a token), so one token out is asked for: the engine answering is the check.
    body=$("${CURL[@]}" --max-time "$BOOT_TIMEOUT" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
        -d "{\"model\":\"$MODEL_NAME\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello.\"}],\"max_tokens\":1,\"temperature\":0}" \
        "$BASE/v1/chat/completions") || fail "POST /v1/chat/completions failed"
    # A completion in OpenAI's shape with at least one token: what the tiny model
    # says (greedy, but the emulated CPU's vector code can change a near tie) may
    # be only whitespace.
    python3 -c 'import json, sys
r = json.loads(sys.argv[1])
answer = r["choices"][0]["message"]["content"]
assert isinstance(answer, str), "no text"
assert r["usage"]["completion_tokens"] >= 1, "no token"
print(repr(answer))' "$body" || fail "no answer from /v1/chat/completions: $body"
}
# state: what the installer wrote, with checksums, modes and owners.
state() {
    vm_ssh sudo sh -c "'cd / && find etc/hearth opt/hearth etc/systemd/system/hearth.service \
        etc/systemd/system/hearth-firewall.service etc/update-motd.d/50-hearth \
        \\( -type f -exec sha256sum {} + \\) -o \\( -type l -printf \"%p -> %l\\n\" \\) | sort;
        find etc/hearth opt/hearth -printf \"%p %m %u:%g\\n\" | sort; id hearth'"
}

phase "https ready"
until_ok "$BOOT_TIMEOUT" ready || fail "https://$DOMAIN/ready did not answer 200 within $BOOT_TIMEOUT s"

phase "checks"
# HTTPS answers with the self-signed certificate: trusted when pinned, not otherwise.
if curl -sS --max-time 20 --resolve "$DOMAIN:$HTTPS_PORT:127.0.0.1" -o /dev/null "$BASE/ready" 2>/dev/null; then
    fail "the certificate is trusted without pinning it: not the self-signed one"
fi
openssl x509 -in "$TMP/cert.pem" -noout -ext subjectAltName 2>/dev/null | grep -q "DNS:$DOMAIN" ||
    fail "the self-signed certificate does not name $DOMAIN"
code=$("${CURL[@]}" -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d '{}' "$BASE/v1/chat/completions")
[ "$code" = 401 ] || fail "/v1/chat/completions without a key answered $code, not 401"
mark "certificate and 401 checked"
answer=$(chat)
echo "test-vm: answer: $answer"
mark "answered"
banner=$(vm_ssh sudo run-parts /etc/update-motd.d) || fail "the motd scripts failed"
while IFS= read -r line; do echo "test-vm: banner | $line"; done <<<"$banner"
grep -q "serving" <<<"$banner" || fail "the login banner does not say Hearth is serving"
grep -q "https://127.0.0.1:443/" <<<"$banner" || fail "the login banner does not show the URL"
grep -q "/etc/hearth/credentials" <<<"$banner" || fail "the login banner does not say where the key is"
vm_ssh sudo nft list table inet hearth >/dev/null || fail "the firewall table inet hearth is not loaded"
state >"$TMP/state.before" || fail "cannot read the installed files"
mark "banner, firewall and files read"
BOOT_ID=$(vm_ssh cat /proc/sys/kernel/random/boot_id)

# ---- a reboot brings the service back, and changes nothing ----
phase "reboot to ssh"
vm_ssh sudo systemctl reboot 2>/dev/null || true
rebooted() {
    local id
    id=$(vm_ssh cat /proc/sys/kernel/random/boot_id 2>/dev/null) && [ "$id" != "$BOOT_ID" ]
}
until_ok "$BOOT_TIMEOUT" rebooted || fail "the VM did not come back over SSH within $BOOT_TIMEOUT s"

phase "https ready again"
until_ok "$BOOT_TIMEOUT" ready || fail "Hearth did not answer 200 on /ready within $BOOT_TIMEOUT s of the reboot"

phase "checks after reboot"
# The second boot's cloud-init runs to its end before the files are compared.
status=$(vm_ssh sudo timeout "$BOOT_TIMEOUT" cloud-init status --wait --long 2>&1) || true
grep -q '^status: done' <<<"$status" || fail "cloud-init did not finish cleanly after the reboot: $status"
mark "cloud-init done"
# /ready answered 200: the one model is loaded again, from its file (no completion
# here: under tcg one costs two minutes, and the first boot's and the reload's
# prove the engine answers).
vm_ssh sudo run-parts /etc/update-motd.d | grep -q serving || fail "the login banner does not say serving after the reboot"
vm_ssh sudo nft list table inet hearth >/dev/null || fail "the firewall is not loaded after the reboot"
# systemd breaks an ordering cycle by dropping a job (once, the firewall's: it
# was ordered after sysinit.target, which cloud-init's network stage precedes).
cycles=$(vm_ssh "sudo journalctl -b --no-pager | grep -i 'ordering cycle'" || true)
[ -z "$cycles" ] || fail "systemd found an ordering cycle at boot: $cycles"
[ "$(vm_ssh systemctl is-active hearth-firewall.service)" = active ] ||
    fail "hearth-firewall.service is not active after the reboot"
state >"$TMP/state.after" || fail "cannot read the installed files"
diff -u "$TMP/state.before" "$TMP/state.after" || fail "the second boot changed the installed files (diff above)"
mark "banner, firewall, boot log and files checked"
installs=$(vm_ssh "sudo grep -c 'hearth-install: release .* verified' /var/log/hearth/install.log" || true)
[ "$installs" = 1 ] || fail "the installer ran $installs times, not once"
downloads=$(grep -c "GET /$TARBALL" "$TMP/http.log" || true)
[ "$downloads" = 1 ] || fail "the release was downloaded $downloads times, not once"
# The model: fetched by Hearth itself at its first start (the manifest's `url`),
# checked against its sha256, and not fetched again after the reboot.
downloads=$(grep -c "GET /$MODEL_FILE" "$TMP/http.log" || true)
[ "$downloads" = 1 ] || fail "the model was downloaded $downloads times, not once"
vm_ssh "sudo journalctl -u hearth --no-pager | grep -q 'model downloaded; loading it'" ||
    fail "Hearth's journal does not say it downloaded the model"

# ---- an upgrade by `systemctl reload` drops no request ----
# A second release (this one's files under another name), `current` switched to it,
# then the unit's reload: the running Hearth hands its socket over (docs/deploy.md).
phase "upgrade by reload"
old_pid=$(vm_ssh sudo systemctl show -p MainPID --value hearth) || fail "cannot read hearth's main pid"
vm_ssh "sudo cp -a /opt/hearth/releases/$VERSION /opt/hearth/releases/$VERSION-reload && \
    sudo ln -sfn releases/$VERSION-reload /opt/hearth/current.new && sudo mv -T /opt/hearth/current.new /opt/hearth/current" ||
    fail "cannot stage the second release"
# Steady load from here: a new connection per request, every failure counted.
: >"$TMP/load.fail"; : >"$TMP/load.ok"
(
    while [ ! -e "$TMP/load.stop" ]; do
        if [ "$("${CURL[@]}" --max-time 30 -o /dev/null -w '%{http_code}' "$BASE/ready" 2>/dev/null)" = 200 ]; then
            echo >>"$TMP/load.ok"
        else
            echo >>"$TMP/load.fail"
        fi
    done
) &
LOAD_PID=$!
sleep 2
mark "second release staged, load running"
vm_ssh sudo systemctl reload hearth || fail "systemctl reload hearth failed"
mark "systemctl reload returned"
new_main() {
    local pid
    pid=$(vm_ssh sudo systemctl show -p MainPID --value hearth 2>/dev/null) &&
        [ -n "$pid" ] && [ "$pid" != 0 ] && [ "$pid" != "$old_pid" ]
}
until_ok "$BOOT_TIMEOUT" new_main || fail "no new main pid within $BOOT_TIMEOUT s of systemctl reload"
mark "new main process"
new_pid=$(vm_ssh sudo systemctl show -p MainPID --value hearth)
exe=$(vm_ssh sudo readlink "/proc/$new_pid/exe") || fail "cannot read the new process's executable"
[[ $exe == *"/releases/$VERSION-reload/bin/hearth" ]] || fail "the new main process runs $exe, not the release current points at"
# The old process drains and leaves; the service stays active throughout.
old_gone() { ! vm_ssh kill -0 "$old_pid" 2>/dev/null; }
until_ok 120 old_gone || fail "the old process ($old_pid) did not leave after the handover"
mark "old process gone"
[ "$(vm_ssh sudo systemctl is-active hearth)" = active ] || fail "hearth.service is not active after the reload"
sleep 2
touch "$TMP/load.stop"
wait "$LOAD_PID" || true
oks=$(wc -l <"$TMP/load.ok"); fails=$(wc -l <"$TMP/load.fail")
echo "test-vm: requests through the reload: $oks answered, $fails failed"
[ "$fails" = 0 ] || fail "$fails requests failed during the reload"
[ "$oks" -gt 0 ] || fail "no request was answered during the reload"
answer=$(chat)
echo "test-vm: answer after the reload: $answer"
phase ""

TOTAL=$(($(date +%s) - T0))
echo "test-vm: passed in $TOTAL s ($ACCEL, disk $([ "$DISK_CACHED" = 1 ] && echo cached || echo built)):"
printf 'test-vm:   %s\n' "${TIMES[@]}"
# The budget is KVM's: qemu's emulator (tcg) is several times slower.
if [ "$ACCEL" = kvm ] && [ "$DISK_CACHED" = 1 ] && [ "$TOTAL" -gt "$MAX_SECONDS" ]; then
    echo "test-vm: FAILED: $TOTAL s with the disk cached, over the budget of $MAX_SECONDS s" >&2
    exit 1
fi
