# [server.tls] mode = "acme" (crates/hearth-http/src/acme.rs): its tests run the
# real ACME test CA, Debian's `pebble` (Let's Encrypt's test server, which also
# ships `pebble-challtestsrv`, used as the DNS server that points the test names
# at 127.0.0.1). Each test starts its own on free loopback ports with its own
# directory certificate; validation stays on. `make unit` requires it
# (HEARTH_TEST_PEBBLE_REQUIRED=1); a plain `cargo nextest run` skips without it.
TEST_APT_PACKAGES += pebble
UNIT_DEPS += apt-test
UNIT_ENV += HEARTH_TEST_PEBBLE_REQUIRED=1
