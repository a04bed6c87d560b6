//! The database: with `[storage] database_url`, the Postgres server answers, takes the user and
//! password, which version it runs, and whether this Hearth's migrations are
//! applied (pending ones are applied by the next `hearth serve`; ones this Hearth
//! does not know mean a newer Hearth migrated the database: a warning when they
//! only add, a fail when one raised the floor past this Hearth's). Read only:
//! doctor never migrates.

use std::time::Duration;

use hearth_config::StorageConfig;
use hearth_store::{PgStatus, SchemaStatus, StoreError, pg_status, redact_url, sqlite_status};

use super::report::Check;

/// How long doctor waits for the server to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The oldest Postgres the store's SQL is tested on (Debian 12's) is 15; older
/// ones that have `FOR UPDATE SKIP LOCKED` (9.5+) work but are not tested.
const TESTED_MAJOR: u32 = 15;

pub fn check(storage: &StorageConfig, checks: &mut Vec<Check>) {
    let sqlite = storage.data_dir.join(hearth_store::DB_FILE);
    // No database yet: `hearth serve` makes it.
    if storage.database_url.is_none() && !sqlite.exists() {
        return;
    }
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
    let Some(url) = storage.database_url.as_deref() else {
        checks.push(match rt.block_on(sqlite_status(&sqlite)) {
            Ok(s) => sqlite_found(&sqlite.display().to_string(), &s),
            Err(e) => Check::fail(
                "host",
                "database",
                e.to_string(),
                "see docs/operations.md (restoring a backup)",
            ),
        });
        return;
    };
    checks.push(match rt.block_on(pg_status(url, TIMEOUT)) {
        Ok(s) => found(&redact_url(url), &s),
        Err(e) => {
            let (reason, remedy) = describe(&e);
            Check::fail("servers", "database", reason, remedy)
        }
    });
}

/// `[6, 7]` as `6, 7`.
fn versions(v: &[i64]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the schema says, in `group`, of the database `shown` (`what`: how it
/// is, before the schema's part), unless it is up to date: a newer Hearth's
/// migrations (a warning when they only add, a fail past the floor), or
/// pending ones (`serve` applies them, as `pending` says).
fn schema(group: &'static str, what: &str, s: &SchemaStatus, pending: &str) -> Option<Check> {
    if s.refused {
        return Some(Check::fail(
            group,
            "database",
            format!(
                "{what}, migrated by a newer Hearth (migrations {} are unknown to this one, and migration {} changed tables older releases read)",
                versions(&s.unknown),
                s.floor
            ),
            "run the Hearth release that migrated it (or a newer one) on this database, or restore the backup taken before the upgrade; migrations go forward only",
        ));
    }
    if !s.unknown.is_empty() {
        return Some(Check::warn(
            group,
            "database",
            format!(
                "{what}, migrated by a newer Hearth (migrations {} are unknown to this one); they only add, so this release runs on it",
                versions(&s.unknown)
            ),
            "upgrade to the release that migrated it when you can",
        ));
    }
    if !s.pending.is_empty() {
        let state = match s.applied.last() {
            None => "empty".to_owned(),
            Some(v) => format!("at schema version {v}"),
        };
        return Some(Check::warn(
            group,
            "database",
            format!(
                "{what}, {state}; migrations {} pending",
                versions(&s.pending)
            ),
            pending,
        ));
    }
    None
}

/// What doctor says of the SQLite database in data_dir.
fn sqlite_found(shown: &str, s: &SchemaStatus) -> Check {
    schema(
        "host",
        shown,
        s,
        "`hearth serve` applies them at start; take a backup first (`hearth backup`) to be able to go back",
    )
    .unwrap_or_else(|| {
        Check::ok(
            "host",
            "database",
            format!(
                "{shown}: schema up to date (version {})",
                s.applied.last().copied().unwrap_or(0)
            ),
        )
    })
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
    if major < 10 {
        return Check::fail(
            "servers",
            "database",
            format!("{shown}: PostgreSQL {version} is too old"),
            format!("use PostgreSQL {TESTED_MAJOR} or newer"),
        );
    }
    let what = format!("{shown}: PostgreSQL {version}, logged in");
    if let Some(c) = schema(
        "servers",
        &what,
        &s.schema,
        "`hearth serve` applies them at start (one replica at a time); nothing else to do",
    ) {
        return c;
    }
    if major < TESTED_MAJOR {
        return Check::warn(
            "servers",
            "database",
            format!("{what}, schema up to date; Hearth is tested on {TESTED_MAJOR}+"),
            format!("upgrade to PostgreSQL {TESTED_MAJOR} or newer when you can"),
        );
    }
    Check::ok(
        "servers",
        "database",
        format!(
            "{what}, schema up to date (version {})",
            s.schema.applied.last().copied().unwrap_or(0)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::report::Status;

    fn status(unknown: &[i64], floor: i64, refused: bool) -> PgStatus {
        PgStatus {
            server_version: "15.18 (Debian 15.18-0+deb12u1)".into(),
            schema: SchemaStatus {
                applied: (1..=7).chain(unknown.iter().copied()).collect(),
                pending: Vec::new(),
                unknown: unknown.to_vec(),
                floor,
                refused,
            },
        }
    }

    #[test]
    fn newer_migrations_that_only_add_warn_and_one_past_the_floor_fails() {
        let ok = found("db", &status(&[], 0, false));
        assert_eq!(ok.status, Status::Ok, "{}", ok.reason);
        let added = found("db", &status(&[8, 9], 0, false));
        assert_eq!(added.status, Status::Warn, "{}", added.reason);
        assert!(added.reason.contains("migrations 8, 9"), "{}", added.reason);
        let past = found("db", &status(&[8, 9], 9, true));
        assert_eq!(past.status, Status::Fail, "{}", past.reason);
        assert!(
            past.reason.contains("migration 9 changed"),
            "{}",
            past.reason
        );
        assert!(past.remedy.contains("backup"), "{}", past.remedy);
        // The SQLite file says the same in its own words.
        let file = sqlite_found("/var/lib/hearth/hearth.db", &status(&[8], 8, true).schema);
        assert_eq!(file.status, Status::Fail, "{}", file.reason);
        assert!(
            file.reason
                .starts_with("/var/lib/hearth/hearth.db, migrated by a newer"),
            "{}",
            file.reason
        );
        let pending = SchemaStatus {
            applied: vec![1, 2],
            pending: vec![3],
            ..SchemaStatus::default()
        };
        let file = sqlite_found("hearth.db", &pending);
        assert_eq!(file.status, Status::Warn, "{}", file.reason);
        assert_eq!(
            file.reason,
            "hearth.db, at schema version 2; migrations 3 pending"
        );
        let current = SchemaStatus {
            applied: vec![1, 2, 3],
            ..SchemaStatus::default()
        };
        assert_eq!(sqlite_found("hearth.db", &current).status, Status::Ok);
    }
}
