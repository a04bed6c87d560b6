# Hearth: `make run` sets everything up and serves; `make test` is what CI runs.
# Parts of the project add their own set-up and test steps in mk/*.mk through:
#   SETUP      targets `make run` and `make test` need first (apt packages, models, venvs)
#   TEST_SUITES targets run by `make test` after the cargo tests (SDK, browser, ...)
#   UNIT_DEPS, UNIT_ENV  what the cargo tests need first, and the environment they run in
#   APT_PACKAGES Debian packages building and serving need; TEST_APT_PACKAGES those
#               only the test suites need (installed by `apt-test`, not by `make run`)
SHELL := /bin/bash
CARGO ?= cargo
SETUP :=
TEST_SUITES :=
APT_PACKAGES :=
TEST_APT_PACKAGES :=
UNIT_DEPS :=
UNIT_ENV :=

include $(sort $(wildcard mk/*.mk))

.PHONY: run build release test lint unit setup apt apt-test bench clean
.DEFAULT_GOAL := run

# Debian packages, installed only when one is missing: $(call apt_install,PACKAGES).
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
endef

# What building and serving need (`make run`).
apt:
	$(call apt_install,$(APT_PACKAGES))

# What only the test suites need (a browser): test targets depend on it, `make run` does not.
apt-test:
	$(call apt_install,$(TEST_APT_PACKAGES))

setup: apt $(SETUP)

release: setup
	$(CARGO) build --release --bin hearth

run: release
	$(CARGO) run --release --bin hearth -- serve $(ARGS)

lint: setup
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# HEARTH_TEST_UI_BUILT: `setup` built web/dist, so the tests require the embedded UI.
unit: setup $(UNIT_DEPS)
	HEARTH_TEST_UI_BUILT=1 $(UNIT_ENV) $(CARGO) nextest run --workspace --locked --no-fail-fast

# Each part in turn, with what it cost (CI must stay under 45 minutes on 2 cores).
test:
	@for t in lint unit $(TEST_SUITES); do \
	  start=$$(date +%s); \
	  $(MAKE) --no-print-directory $$t || { echo "== make $$t failed after $$(( $$(date +%s) - start )) s"; exit 1; }; \
	  echo "== make $$t: $$(( $$(date +%s) - start )) s"; \
	done

bench: setup
	bash bench/run.sh

clean:
	$(CARGO) clean
