//! `[limits]`'s backend: local or Redis, the URL's names and checks, and that the
//! URL's password never shows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hearth_config::{LimitsBackend, MapEnv, RedisFailurePolicy, load_str};

mod common;
use common::errors;

#[test]
fn local_is_the_default_and_redis_is_configured_in_the_file() {
    let c = load_str("", "defaults", &MapEnv::default()).unwrap();
    assert_eq!(c.limits.backend, LimitsBackend::Local);
    assert_eq!(c.limits.on_redis_error, RedisFailurePolicy::Open);
    let c = load_str(
        "[limits]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:6379/2\"\non_redis_error = \"closed\"\nredis_timeout_ms = 100\n",
        "hearth.toml",
        &MapEnv::default(),
    )
    .unwrap();
    assert_eq!(c.limits.backend, LimitsBackend::Redis);
    assert_eq!(
        c.limits.redis_url.as_deref(),
        Some("redis://127.0.0.1:6379/2")
    );
    assert_eq!(c.limits.on_redis_error, RedisFailurePolicy::Closed);
    assert_eq!(c.limits.redis_timeout_ms, 100);
}

#[test]
fn the_short_variable_sets_the_url_and_wins_over_the_generic_one() {
    let text = "[limits]\nbackend = \"redis\"\n";
    let c = load_str(
        text,
        "hearth.toml",
        &MapEnv::new([("HEARTH_REDIS_URL", "redis://:pw@10.0.0.5:6379")]),
    )
    .unwrap();
    assert_eq!(
        c.limits.redis_url.as_deref(),
        Some("redis://:pw@10.0.0.5:6379")
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let c = load_str(
        text,
        "hearth.toml",
        &MapEnv::new([
            ("HEARTH_LIMITS_REDIS_URL", "redis://generic:6379"),
            ("HEARTH_REDIS_URL", "redis://short:6379"),
        ]),
    )
    .unwrap();
    assert_eq!(c.limits.redis_url.as_deref(), Some("redis://short:6379"));
    // The same for the database's URL.
    let c = load_str(
        "",
        "hearth.toml",
        &MapEnv::new([
            ("HEARTH_DATABASE_URL", "postgres://short/db"),
            ("HEARTH_STORAGE_DATABASE_URL", "postgres://generic/db"),
        ]),
    )
    .unwrap();
    assert_eq!(
        c.storage.database_url.as_deref(),
        Some("postgres://short/db")
    );
}

#[test]
fn redis_without_a_url_or_with_a_wrong_one_is_refused_without_its_password() {
    let e = errors("[limits]\nbackend = \"redis\"\n", &MapEnv::default());
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("limits.redis_url") && e[0].contains("needs `redis_url`"),
        "{}",
        e[0]
    );
    let e = errors(
        "[limits]\nbackend = \"redis\"\n",
        &MapEnv::new([("HEARTH_REDIS_URL", "http://user:hunter2@cache:6379")]),
    );
    assert!(
        e[0].starts_with("environment: HEARTH_REDIS_URL:") && e[0].contains("not a Redis URL"),
        "{}",
        e[0]
    );
    assert!(!e[0].contains("hunter2"), "{}", e[0]);
    let e = errors(
        "[limits]\nbackend = \"redis\"\nredis_url = \"rediss://cache:6380\"\n",
        &MapEnv::default(),
    );
    assert!(e[0].contains("not supported yet"), "{}", e[0]);
    let e = errors("[limits]\nbackend = \"memcached\"\n", &MapEnv::default());
    assert!(e[0].contains("limits.backend"), "{}", e[0]);
    let e = errors("[limits]\nredis_timeout_ms = 0\n", &MapEnv::default());
    assert!(e[0].contains("limits.redis_timeout_ms"), "{}", e[0]);
}

#[test]
fn the_url_never_debug_prints_its_password() {
    let c = load_str(
        "[limits]\nbackend = \"redis\"\nredis_url = \"redis://app:hunter2@cache:6379\"\n",
        "hearth.toml",
        &MapEnv::default(),
    )
    .unwrap();
    let shown = format!("{:?}", c);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("redis://app:***@cache:6379"), "{shown}");
}
