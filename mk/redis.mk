# Shared rate limits (`[limits] backend = "redis"`): the tests start private Redis
# servers (Debian's redis-server on free loopback ports, nothing saved; never the
# machine's own service) through hearth-testkit's redis module. `make unit`
# requires the binary (HEARTH_TEST_REDIS_REQUIRED=1); a plain `cargo nextest run`
# without it says SKIPPED. Installing the package does not start a server where a
# policy-rc.d forbids it (containers); the tests never use one that runs.
TEST_APT_PACKAGES += redis-server
UNIT_DEPS += apt-test
UNIT_ENV += HEARTH_TEST_REDIS_REQUIRED=1
