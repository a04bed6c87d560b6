# Keys never logged (issue 20): the cargo tests write their servers' logs under
# TEST_LOG_ROOT (emptied before each `make unit`), and `make logscan`, run by
# `make test` after them, greps every file there for the test keys (mk/logscan.sh):
# it fails naming file and line, and fails when the folder holds no logs.
# LOGSCAN_ROOT is not a HEARTH_* name: `hearth` warns of HEARTH_* variables it does
# not read, and a `hearth` a test starts may inherit it.
TEST_LOG_ROOT ?= $(CURDIR)/target/test-logs
UNIT_DEPS += logscan-reset
UNIT_ENV += LOGSCAN_ROOT=$(TEST_LOG_ROOT)
TEST_SUITES += logscan

.PHONY: logscan logscan-reset

logscan-reset:
	rm -rf $(TEST_LOG_ROOT)
	mkdir -p $(TEST_LOG_ROOT)

logscan:
	bash mk/logscan.sh $(TEST_LOG_ROOT)
