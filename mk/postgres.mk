# Postgres (crates/hearth-store's PgStore; docs/scale-out.md): the store's suites
# run each test on SQLite and on a private PostgreSQL that the tests start
# themselves (hearth_testkit::postgres): Debian's binaries under
# /usr/lib/postgresql/*/bin, initdb into $TMPDIR/hearth-test-postgres-<uid>, a free
# loopback port, fsync off, a fresh database per test; no system service is used,
# and the server stops once the last test process using it has exited. `make unit`
# requires it (HEARTH_TEST_POSTGRES_REQUIRED=1); a plain `cargo nextest run` skips
# the Postgres half without it. Note: on a machine run by systemd, installing the
# package also creates and starts the system's cluster on port 5432 (in containers
# policy-rc.d usually stops that); the tests never use it.
TEST_APT_PACKAGES += postgresql
UNIT_DEPS += apt-test
UNIT_ENV += HEARTH_TEST_POSTGRES_REQUIRED=1
