# Chat UI (web/): built before the Rust build so the binary embeds web/dist.
#   make web-build  npm ci when node_modules is stale, then vite build
#   make test-web   Vitest, then the browser end-to-end suites against a real
#                   `hearth serve` (Debian's chromium): the chat with the embedded
#                   model (e2e/run.mjs), and the Jobs page with the models played by
#                   the scripted fake upstream and the real sandbox (e2e/jobs.mjs)
#   make bench-web  bundle size, page load to interactive, opening a long conversation
# The browser is for the end-to-end suite only: `make run` does not install it.
TEST_APT_PACKAGES += chromium
SETUP += web-build
TEST_SUITES += test-web

WEB := web
WEB_STAMP := $(WEB)/node_modules/.hearth-installed
WEB_SOURCES := $(shell find $(WEB)/src -type f 2>/dev/null) $(WEB)/index.html $(WEB)/vite.config.ts $(WEB)/tsconfig.json

.PHONY: web-deps web-build test-web bench-web

web-deps: $(WEB_STAMP)
$(WEB_STAMP): $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

web-build: $(WEB)/dist/index.html
$(WEB)/dist/index.html: $(WEB_STAMP) $(WEB_SOURCES)
	cd $(WEB) && npm run --silent build

# The debug binary is the one the SDK suite builds too, so CI compiles it once.
HEARTH_DEBUG_BIN = $$($(CARGO) metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/hearth

test-web: setup apt-test
	cd $(WEB) && npx vitest run
	$(CARGO) build --locked --bin hearth --bin fake-upstream
	HEARTH_BIN=$(HEARTH_DEBUG_BIN) node $(WEB)/e2e/run.mjs
	HEARTH_BIN=$(HEARTH_DEBUG_BIN) node $(WEB)/e2e/jobs.mjs

bench-web: setup
	bash bench/web/run.sh
