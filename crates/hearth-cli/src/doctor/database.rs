//! `[storage] database_url`: the Postgres server answers, takes the user and
//! password, which version it runs, and whether this Hearth's migrations are
//! applied (pending ones are applied by the next `hearth serve`; ones this Hearth
//! does not know mean a newer Hearth migrated the database). Read only: doctor
//! never migrates.

use std::time::Duration;

use hearth_config::StorageConfig;
use hearth_store::{PgStatus, StoreError, pg_status, redact_url};

use super::report::Check;

/// How long doctor waits for the server to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The oldest Postgres the store's SQL is tested on (Debian 12's) is 15; older
/// ones that have `FOR UPDATE SKIP LOCKED` (9.5+) work but are not tested.
const TESTED_MAJOR: u32 = 15;

pub fn check(storage: &StorageConfig, checks: &mut Vec<Check>) {
    let Some(url) = storage.database_url.as_deref() else {
        return;
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            checks.push(Check::fail(
                "servers",
                "database",
                format!("cannot start the check: {e}"),
                "run doctor again",
            ));
            return;
        }
    };
    checks.push(match rt.block_on(pg_status(url, TIMEOUT)) {
        Ok(s) => found(&redact_url(url), &s),
        Err(e) => {
            let (reason, remedy) = describe(&e);
            Check::fail("servers", "database", reason, remedy)
        }
    });
}

/// What doctor says of a database that answered.
fn found(shown: &str, s: &PgStatus) -> Check {
    let version = s
        .server_version
        .split_whitespace()
        .next()
        .unwrap_or(&s.server_version);
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let versions = |v: &[i64]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !s.unknown.is_empty() {
        return Check::fail(
            "servers",
            "database",
            format!(
                "{shown}: PostgreSQL {version}, migrated by a newer Hearth (migrations {} are unknown to this one)",
                versions(&s.unknown)
            ),
            "run the Hearth release that migrated it (or a newer one) on this database; migrations go forward only",
        );
    }
    if major < 10 {
        return Check::fail(
            "servers",
            "database",
            format!("{shown}: PostgreSQL {version} is too old"),
            format!("use PostgreSQL {TESTED_MAJOR} or newer"),
        );
    }
    if !s.pending.is_empty() {
        let state = if s.applied.is_empty() {
            "empty".to_owned()
        } else {
            format!(
                "at schema version {}",
                s.applied.last().copied().unwrap_or(0)
            )
        };
        return Check::warn(
            "servers",
            "database",
            format!(
                "{shown}: PostgreSQL {version}, logged in, {state}; migrations {} pending",
                versions(&s.pending)
            ),
            "`hearth serve` applies them at start (one replica at a time); nothing else to do",
        );
    }
    if major < TESTED_MAJOR {
        return Check::warn(
            "servers",
            "database",
            format!(
                "{shown}: PostgreSQL {version}, logged in, schema up to date; Hearth is tested on {TESTED_MAJOR}+"
            ),
            format!("upgrade to PostgreSQL {TESTED_MAJOR} or newer when you can"),
        );
    }
    Check::ok(
        "servers",
        "database",
        format!(
            "{shown}: PostgreSQL {version}, logged in, schema up to date (version {})",
            s.applied.last().copied().unwrap_or(0)
        ),
    )
}

/// A failure's one-line reason and what to do about it.
fn describe(e: &StoreError) -> (String, String) {
    match e {
        StoreError::Unreachable { server, detail } => (
            format!("cannot reach {server}: {detail}"),
            "start the Postgres server, or fix the host and port in storage.database_url \
             (HEARTH_DATABASE_URL); check that a firewall lets this host reach it"
                .into(),
        ),
        StoreError::Tls { server, detail } => (
            format!("the TLS connection to {server} failed: {detail}"),
            "check sslmode and sslrootcert (the CA that signed the server's certificate) in \
             storage.database_url (HEARTH_DATABASE_URL)"
                .into(),
        ),
        StoreError::Refused { server, detail } => (
            format!("{server} refused the login: {detail}"),
            "fix the user, password or database name in storage.database_url \
             (HEARTH_DATABASE_URL); the database must exist (CREATE DATABASE ... OWNER ...)"
                .into(),
        ),
        StoreError::BadUrl(why) => (
            why.clone(),
            "set storage.database_url to postgres://USER:PASSWORD@HOST:PORT/DATABASE".into(),
        ),
        other => (
            other.to_string(),
            "check the server's log; `psql` with the same URL shows the same error".into(),
        ),
    }
}
