# Releases: `make dist` builds what the installers fetch into dist/ (the
# tarball, its .sha256, the .deb and SHA256SUMS; docs/deploy.md#releases).
#   make dist             web/dist on the host, then the binary in a Debian 11 root
#                         (glibc 2.31: it starts on Ubuntu 22.04/24.04 and Debian 12),
#                         checked by packaging/check-glibc.sh; needs root (debootstrap,
#                         unshare -m, chroot). The root is made once (a few minutes)
#                         under ~/.cache/hearth/dist, with the build's target folder.
#   make test-dist-check  the glibc checker refuses a binary linked here (or one needing
#                         a newer C++ runtime than allowed) and accepts one needing
#                         only old symbols (seconds; part of `make test`)
# Not in `make test`: a cold `make dist` compiles the whole workspace in release.
DIST_GLIBC_MAX ?= 2.31
TEST_SUITES += test-dist-check
# gcc and readelf/objdump for the checker's test; debootstrap for dist (dpkg-deb is in dpkg).
TEST_APT_PACKAGES += gcc binutils
DIST_APT_PACKAGES := debootstrap binutils

.PHONY: dist test-dist-check

dist: web-build
	$(call apt_install,$(DIST_APT_PACKAGES))
	DIST_GLIBC_MAX=$(DIST_GLIBC_MAX) bash packaging/dist.sh

test-dist-check: apt-test
	bash packaging/test-check-glibc.sh
