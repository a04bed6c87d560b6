# Fuzzing the hand-written parsers (docs/fuzzing.md): `make fuzz` builds the
# libFuzzer binaries of fuzz/ with cargo-fuzz (on the stable toolchain, without a
# sanitizer) and runs each target for FUZZ_SECONDS; a crash is copied into
# fuzz/regressions/<target>/, which `make test` replays (crates/hearth-fuzz/tests/replay.rs).
# Not part of `make test`: it takes minutes per target.
#   FUZZ_SECONDS  seconds per target (default 60)
#   FUZZ_TARGETS  the targets to run (default: every fuzz/fuzz_targets/*.rs)
#   FUZZ_JOBS     libFuzzer workers per target (default 1)
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
FUZZ_JOBS ?= 1
# cargo-fuzz, installed by this file into a folder it owns, at a known version.
FUZZ_TOOLS ?= $(HOME)/.cache/hearth/tools
CARGO_FUZZ_VERSION ?= 0.13.2

.PHONY: fuzz fuzz-build
$(FUZZ_TOOLS)/bin/cargo-fuzz: mk/fuzz.mk
	$(CARGO) install --locked --root $(FUZZ_TOOLS) --version $(CARGO_FUZZ_VERSION) cargo-fuzz
	touch $@

fuzz-build: $(FUZZ_TOOLS)/bin/cargo-fuzz
	CARGO_FUZZ=$(FUZZ_TOOLS)/bin/cargo-fuzz bash mk/fuzz.sh build

fuzz: $(FUZZ_TOOLS)/bin/cargo-fuzz
	CARGO_FUZZ=$(FUZZ_TOOLS)/bin/cargo-fuzz FUZZ_SECONDS=$(FUZZ_SECONDS) \
	  FUZZ_TARGETS="$(FUZZ_TARGETS)" FUZZ_JOBS=$(FUZZ_JOBS) bash mk/fuzz.sh run
