# The container image the Helm chart runs (docs/kubernetes.md#the-container-image),
# made without a container daemon:
#   make image        dist/hearth-VERSION-oci.tar, an OCI image archive of `make dist`'s
#                     tarball (made first when missing): the binary, the shared libraries
#                     it links (this machine's, found by ldd), user 10001, `hearth serve`
#                     (deploy/image/oci-image.py, Python's standard library). Push it with
#                     skopeo copy oci-archive:dist/hearth-VERSION-oci.tar docker://REGISTRY/hearth:VERSION
#   make test-image   the packer on a small C program in a fake release tarball, read back
#                     by skopeo and umoci, the binary run from the unpacked root (seconds;
#                     part of `make test`; a real `make dist` is too slow for it)
# deploy/image/Dockerfile builds the same from the tarball with Docker (not tested here:
# no Docker on this machine kind).
TEST_SUITES += test-image
TEST_APT_PACKAGES += skopeo umoci gcc
IMAGE_VERSION := $(shell sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
IMAGE_TARBALL ?= dist/hearth-$(IMAGE_VERSION)-x86_64-unknown-linux-gnu.tar.gz
IMAGE_ARCHIVE ?= dist/hearth-$(IMAGE_VERSION)-oci.tar

.PHONY: image test-image

image:
	$(call apt_install,skopeo)
	[ -f $(IMAGE_TARBALL) ] || $(MAKE) dist
	python3 deploy/image/oci-image.py $(IMAGE_TARBALL) $(IMAGE_ARCHIVE)
	skopeo inspect oci-archive:$(IMAGE_ARCHIVE) >/dev/null

test-image: apt-test
	bash deploy/image/test-image.sh
