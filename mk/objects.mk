# Job files in S3 ([storage] objects = "s3"; docs/scale-out.md): the tests start
# private S3-compatible servers themselves (hearth_testkit::s3: moto's moto_server on
# a free loopback port in a temporary folder, a bucket made, stopped at the end),
# from PyPI's moto[server] pinned here into .venv-objects. `make unit` requires it
# (HEARTH_TEST_S3_REQUIRED=1); a plain `cargo nextest run` without it says SKIPPED.
OBJECTS_VENV ?= $(CURDIR)/.venv-objects
OBJECTS_MOTO := moto[server]==5.2.5
OBJECTS_MOTO_BIN := $(OBJECTS_VENV)/bin/moto_server

TEST_APT_PACKAGES += python3-venv
UNIT_DEPS += objects-server
UNIT_ENV += HEARTH_TEST_S3_REQUIRED=1 HEARTH_MOTO_SERVER=$(OBJECTS_MOTO_BIN)

.PHONY: objects-server
objects-server: $(OBJECTS_VENV)/.complete

$(OBJECTS_VENV)/.complete: mk/objects.mk | apt-test
	rm -rf $(OBJECTS_VENV)
	/usr/bin/python3 -m venv $(OBJECTS_VENV)
	$(OBJECTS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check '$(OBJECTS_MOTO)'
	$(OBJECTS_MOTO_BIN) --help >/dev/null
	touch $@
