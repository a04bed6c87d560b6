# The one-click path booted for real (tests/vm/run.sh, docs/deploy.md "Testing
# the one-click path in a VM"): a Debian 12 VM under qemu gets the user data
# `hearth deploy render cloud-init` renders, installs the release it downloads
# from a loopback server here, and is checked over HTTPS and SSH, across a reboot.
#   make test-vm                     (by `make test` too) with KVM where it can boot
#                                    a Debian kernel, else under qemu's emulator (TCG:
#                                    about 4 minutes on an idle 2-core machine)
#   make test-vm HEARTH_VM_ACCEL=kvm|tcg  force one; HEARTH_VM_ACCEL=skip skips it
# "KVM can boot a Debian kernel": /dev/kvm opens and the kernel's KVM is the
# hardware one (kvm_intel or kvm_amd). Some sandboxes offer /dev/kvm through PVM
# (kvm_pvm), which runs only PVM-enabled guest kernels: Debian's hangs right
# after its real-mode setup there. This project's CI machines are such.
# The VM disk is built once with debootstrap (minutes) and cached under
# $(VM_CACHE), keyed by tests/vm/build-disk.sh; qemu, debootstrap and
# genisoimage are installed when missing (tests/vm/host-packages.sh: qemu from
# the suite of the installed qemu-utils). The release is the debug binary the
# other suites use, without its debug info.
TEST_SUITES += test-vm
VM_CACHE ?= $(HOME)/.cache/hearth/vm
HEARTH_VM_ACCEL ?=
VM_HEARTH_BIN = $$($(CARGO) metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/hearth

.PHONY: test-vm
test-vm:
	@accel="$(HEARTH_VM_ACCEL)"; \
	if [ "$$accel" = skip ]; then echo "test-vm: skipped (HEARTH_VM_ACCEL=skip)"; exit 0; fi; \
	if [ -z "$$accel" ]; then \
	  if ! python3 -c 'open("/dev/kvm", "r+b")' 2>/dev/null; then \
	    echo "test-vm: /dev/kvm is missing or cannot be opened by $$(id -un): booting under qemu's emulator (tcg), slower"; accel=tcg; \
	  elif [ ! -d /sys/module/kvm_intel ] && [ ! -d /sys/module/kvm_amd ]; then \
	    echo "test-vm: /dev/kvm is not hardware KVM here (kernel modules: $$(ls /sys/module | grep -i kvm | tr '\n' ' ')), which cannot boot Debian's kernel: booting under qemu's emulator (tcg), slower"; accel=tcg; \
	  else accel=kvm; fi; \
	fi; \
	set -e; \
	HEARTH_VM_CACHE=$(VM_CACHE) bash tests/vm/host-packages.sh; \
	$(MAKE) --no-print-directory $(DEFAULT_GGUF); \
	$(CARGO) build --locked --bin hearth; \
	HEARTH_BIN=$(VM_HEARTH_BIN) HEARTH_VM_MODEL=$(DEFAULT_GGUF) HEARTH_VM_CACHE=$(VM_CACHE) HEARTH_VM_ACCEL=$$accel \
	  bash tests/vm/run.sh
