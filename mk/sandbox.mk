# hearth-sandbox: the Python environment sandboxed scripts run in, and the bench peers.
# The venv is built from Debian's /usr/bin/python3 (not a pyenv/conda python under
# $HOME) because the sandbox only shows system directories: its bin/python3 is a
# symlink into /usr, which the sandbox binds read-only.
SANDBOX_VENV ?= $(CURDIR)/.venv-sandbox
SANDBOX_PY_PACKAGES := numpy pandas matplotlib
export HEARTH_SANDBOX_VENV := $(SANDBOX_VENV)

APT_PACKAGES += python3 python3-venv
SETUP += sandbox-venv

.PHONY: sandbox-venv sandbox-bench
sandbox-venv: $(SANDBOX_VENV)/.complete

$(SANDBOX_VENV)/.complete: mk/sandbox.mk
	rm -rf $(SANDBOX_VENV)
	/usr/bin/python3 -m venv $(SANDBOX_VENV)
	$(SANDBOX_VENV)/bin/python3 -m pip install --quiet --disable-pip-version-check $(SANDBOX_PY_PACKAGES)
	$(SANDBOX_VENV)/bin/python3 -c 'import numpy, pandas, matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot'
	touch $@

sandbox-bench:
	bash bench/sandbox/run.sh
