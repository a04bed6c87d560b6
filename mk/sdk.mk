# The client-library compatibility suites (tests/sdk), run by `make test`: a venv
# with the official `openai` SDK and the official `ollama` library, against the
# debug `hearth` and `fake-upstream` binaries and the default models; and
# Schemathesis against /openapi.json (no 5xx, every answer as documented).
SDK_VENV ?= $(CURDIR)/.venv-sdk
TEST_SUITES += test-sdk
TEST_APT_PACKAGES += python3-venv

.PHONY: test-sdk
$(SDK_VENV)/.complete: mk/sdk.mk | apt-test
	rm -rf $(SDK_VENV)
	/usr/bin/python3 -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check 'openai>=1.50,<3' 'ollama==0.6.3' 'schemathesis==4.32.5'
	touch $@

test-sdk: setup $(SDK_VENV)/.complete
	$(CARGO) build --locked --bin hearth --bin fake-upstream
	dir=$$($(CARGO) metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])'); \
	export HEARTH_BIN=$$dir/debug/hearth FAKE_UPSTREAM_BIN=$$dir/debug/fake-upstream \
	  HEARTH_MODEL=$(CURDIR)/$(DEFAULT_GGUF) HEARTH_EMBEDDING_MODEL=$(CURDIR)/$(DEFAULT_EMBED_GGUF); \
	$(SDK_VENV)/bin/python tests/sdk/test_openai_sdk.py && $(SDK_VENV)/bin/python tests/sdk/test_ollama.py && \
	  SCHEMATHESIS=$(SDK_VENV)/bin/schemathesis $(SDK_VENV)/bin/python tests/sdk/test_openapi.py
