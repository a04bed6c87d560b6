# hearth-sandbox: the Python environment sandboxed scripts run in, and the bench peers.
# The venv is built from Debian's /usr/bin/python3 (not a pyenv/conda python under
# $HOME) because the sandbox only shows system directories: its bin/python3 is a
# symlink into /usr, which the sandbox binds read-only.
SANDBOX_VENV ?= $(CURDIR)/.venv-sandbox
# The sandboxed program's (unprivileged, mapped) uid binds the venv itself, so every
# folder on the way to it must be traversable: a checkout under a 0700 folder (a
# Debian 12 home, a `mktemp -d`) would hide it. So the venv lives under /var/tmp,
# keyed by this file's content (checkouts share it; a package change rebuilds it),
# and .venv-sandbox links to it.
SANDBOX_VENV_REAL ?= /var/tmp/hearth-$(shell id -u)/venv-sandbox-$(shell sha1sum mk/sandbox.mk | cut -c1-12)
# ruff and bandit: hearth-jobs' critic runs them inside the sandbox on generated code,
# pinned so their rules and JSON output do not change under us.
SANDBOX_PY_PACKAGES := numpy pandas matplotlib ruff==0.17.6 bandit==1.9.4
export HEARTH_SANDBOX_VENV := $(SANDBOX_VENV_REAL)

APT_PACKAGES += python3 python3-venv
SETUP += sandbox-venv

.PHONY: sandbox-venv sandbox-bench
sandbox-venv: $(SANDBOX_VENV_REAL)/.complete
	@if [ -d $(SANDBOX_VENV) ] && [ ! -L $(SANDBOX_VENV) ]; then rm -rf $(SANDBOX_VENV); fi
	@ln -sfn $(SANDBOX_VENV_REAL) $(SANDBOX_VENV)

$(SANDBOX_VENV_REAL)/.complete:
	umask 022; rm -rf $(SANDBOX_VENV_REAL) && mkdir -p $(SANDBOX_VENV_REAL) && chmod 755 $(dir $(SANDBOX_VENV_REAL)) && \
	/usr/bin/python3 -m venv $(SANDBOX_VENV_REAL) && \
	$(SANDBOX_VENV_REAL)/bin/python3 -m pip install --quiet --disable-pip-version-check $(SANDBOX_PY_PACKAGES) && \
	$(SANDBOX_VENV_REAL)/bin/python3 -c 'import numpy, pandas, matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot' && \
	$(SANDBOX_VENV_REAL)/bin/ruff --version && $(SANDBOX_VENV_REAL)/bin/bandit --version >/dev/null && \
	touch $@

sandbox-bench:
	bash bench/sandbox/run.sh
