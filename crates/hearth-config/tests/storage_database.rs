//! `[storage]`'s Postgres database: the URL (from the file, `HEARTH_DATABASE_URL`
//! or the generic name), its checks, the pool and timeout keys, and that the URL's
//! password never shows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hearth_config::{MapEnv, load_str};

mod common;
use common::errors;

#[test]
fn sqlite_is_the_default_and_postgres_is_one_url_away() {
    let c = load_str("", "defaults", &MapEnv::default()).unwrap();
    assert_eq!(c.storage.database_url, None);
    assert_eq!(c.storage.database_pool_size, 10);
    assert_eq!(c.storage.database_statement_timeout_secs, 30);
    let c = load_str(
        "[storage]\ndatabase_url = \"postgresql://hearth:pw@db:5432/hearth\"\ndatabase_pool_size = 40\ndatabase_statement_timeout_secs = 0\n",
        "hearth.toml",
        &MapEnv::default(),
    )
    .unwrap();
    assert_eq!(
        c.storage.database_url.as_deref(),
        Some("postgresql://hearth:pw@db:5432/hearth")
    );
    assert_eq!(c.storage.database_pool_size, 40);
    assert_eq!(c.storage.database_statement_timeout_secs, 0);
    let c = load_str(
        "",
        "hearth.toml",
        &MapEnv::new([("HEARTH_STORAGE_DATABASE_URL", "postgres://generic/db")]),
    )
    .unwrap();
    assert_eq!(
        c.storage.database_url.as_deref(),
        Some("postgres://generic/db")
    );
}

#[test]
fn a_url_that_is_not_postgres_is_refused_without_its_password() {
    let e = errors(
        "[storage]\ndatabase_url = \"mysql://app:hunter2@db/hearth\"\n",
        &MapEnv::default(),
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("storage.database_url") && e[0].contains("not a Postgres URL"),
        "{}",
        e[0]
    );
    assert!(!e[0].contains("hunter2"), "{}", e[0]);
    let e = errors(
        "",
        &MapEnv::new([("HEARTH_DATABASE_URL", "/var/lib/hearth/hearth.db")]),
    );
    assert!(
        e[0].starts_with("environment: HEARTH_DATABASE_URL:") && e[0].contains("postgres://"),
        "{}",
        e[0]
    );
    let e = errors("[storage]\ndatabase_pool_size = 0\n", &MapEnv::default());
    assert!(e[0].contains("storage.database_pool_size"), "{}", e[0]);
    let e = errors(
        "[storage]\ndatabase_statement_timeout_secs = 100000\n",
        &MapEnv::default(),
    );
    assert!(
        e[0].contains("storage.database_statement_timeout_secs"),
        "{}",
        e[0]
    );
}

#[test]
fn the_url_never_debug_prints_its_password() {
    let c = load_str(
        "[storage]\ndatabase_url = \"postgres://app:hunter2@db:5432/hearth\"\n",
        "hearth.toml",
        &MapEnv::default(),
    )
    .unwrap();
    let shown = format!("{:?}", c);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains("postgres://app:***@db:5432/hearth"),
        "{shown}"
    );
}
