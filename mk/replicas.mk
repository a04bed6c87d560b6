# Several replicas as one (crates/hearth-cli/tests/replicas.rs): three `hearth serve`
# behind a real nginx (Debian's nginx-light, run from a temporary folder on a free
# loopback port; never the machine's own service), on the private PostgreSQL and
# Redis of mk/postgres.mk and mk/redis.mk. `make unit` requires nginx.
TEST_APT_PACKAGES += nginx-light
UNIT_ENV += HEARTH_TEST_NGINX_REQUIRED=1
