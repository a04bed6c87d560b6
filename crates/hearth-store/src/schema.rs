//! Which Hearth may run on a database, so that a rollback works across migrations.
//!
//! Migrations go forward only, and an upgrade applies them at start. A rollback
//! then starts an older Hearth on a database that a newer one migrated: it finds
//! applied migrations it does not know. Most migrations only add (a table, a
//! nullable column, an index) and the older queries, which name their columns,
//! never see them, so the older Hearth runs on, and says so in its log. A
//! migration that older releases cannot run on (a drop, a rename, a changed type
//! or meaning) raises the database's floor (`schema_floor`: the oldest migration a
//! Hearth must know to use it) to its own number; a Hearth below the floor refuses
//! the database with what to do. `tests/migrations.rs` holds each new migration
//! to that rule.

use crate::error::StoreError;

/// A database's applied migrations and floor, as read before migrating.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    /// The versions applied, ascending.
    pub versions: Vec<i64>,
    /// The oldest migration a Hearth must know to use the database (0 when the
    /// database has no floor yet).
    pub floor: i64,
}

/// Where a database's schema stands for this Hearth (what `hearth doctor`
/// reports), found without changing it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaStatus {
    /// The migrations applied, by version.
    pub applied: Vec<i64>,
    /// The migrations this Hearth ships that are not applied yet (a `hearth serve`
    /// applies them at start).
    pub pending: Vec<i64>,
    /// Applied versions this Hearth does not know: a newer Hearth migrated it.
    pub unknown: Vec<i64>,
    /// The oldest migration a Hearth must know to use the database (0 when every
    /// migration since the floor came only adds).
    pub floor: i64,
    /// Whether this Hearth refuses the database: a migration it does not know
    /// raised the floor past its own (a `hearth serve` would stop with why).
    pub refused: bool,
}

/// [`SchemaStatus`] of a database with `applied`, for a Hearth that ships `shipped`.
pub(crate) fn status(shipped: &[i64], applied: Applied) -> SchemaStatus {
    let pending = shipped
        .iter()
        .copied()
        .filter(|v| !applied.versions.contains(v))
        .collect();
    let refused = unknown(shipped, &applied, "").is_err();
    SchemaStatus {
        pending,
        unknown: applied
            .versions
            .iter()
            .copied()
            .filter(|v| !shipped.contains(v))
            .collect(),
        floor: applied.floor,
        refused,
        applied: applied.versions,
    }
}

/// The applied migrations a Hearth that ships `shipped` does not know, when it
/// may run on the database (none for its own or an older one's); an error that
/// names the database (`what`) and says what to do when it may not.
pub(crate) fn unknown(
    shipped: &[i64],
    applied: &Applied,
    what: &str,
) -> Result<Vec<i64>, StoreError> {
    let unknown: Vec<i64> = applied
        .versions
        .iter()
        .copied()
        .filter(|v| !shipped.contains(v))
        .collect();
    let newest = shipped.iter().copied().max().unwrap_or(0);
    if !unknown.is_empty() && applied.floor > newest {
        return Err(StoreError::TooNew {
            what: what.to_owned(),
            unknown: versions(&unknown),
            floor: applied.floor,
        });
    }
    Ok(unknown)
}

/// `[6, 7]` as `6, 7`.
pub(crate) fn versions(v: &[i64]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Tells the log that this Hearth runs on a database a newer one migrated.
pub(crate) fn warn_unknown(unknown: &[i64], what: &str) {
    if !unknown.is_empty() {
        tracing::warn!(
            "the database {what} was migrated by a newer Hearth (migrations {} are unknown \
             to this one); they only add tables or columns, so this release runs on it. \
             Upgrade again when you can",
            versions(unknown)
        );
    }
}

/// The migrator of `migrations` that tolerates the applied ones it lacks when
/// [`unknown`] found some (and let them through).
pub(crate) fn migrator(
    mut migrator: sqlx::migrate::Migrator,
    unknown: &[i64],
) -> sqlx::migrate::Migrator {
    migrator.set_ignore_missing(!unknown.is_empty());
    migrator
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(versions: &[i64], floor: i64) -> Applied {
        Applied {
            versions: versions.to_vec(),
            floor,
        }
    }

    #[test]
    fn a_database_this_hearth_or_an_older_one_migrated_has_nothing_unknown() {
        let shipped = [1, 2, 3];
        assert_eq!(unknown(&shipped, &applied(&[], 0), "db").unwrap(), [0; 0]);
        assert_eq!(
            unknown(&shipped, &applied(&[1, 2], 0), "db").unwrap(),
            [0; 0]
        );
        assert_eq!(
            unknown(&shipped, &applied(&[1, 2, 3], 3), "db").unwrap(),
            [0; 0]
        );
    }

    #[test]
    fn the_status_tells_pending_unknown_and_refused() {
        let s = status(&[1, 2, 3], applied(&[1, 2], 0));
        assert_eq!((s.pending, s.unknown, s.refused), (vec![3], vec![], false));
        let s = status(&[1, 2, 3], applied(&[1, 2, 3, 4], 0));
        assert_eq!((s.pending, s.unknown, s.refused), (vec![], vec![4], false));
        let s = status(&[1, 2, 3], applied(&[1, 2, 3, 4], 4));
        assert_eq!((s.unknown, s.floor, s.refused), (vec![4], 4, true));
    }

    #[test]
    fn migrations_that_only_add_let_an_older_hearth_run() {
        let found = unknown(&[1, 2, 3], &applied(&[1, 2, 3, 4, 5], 3), "db").unwrap();
        assert_eq!(found, [4, 5]);
    }

    #[test]
    fn a_floor_above_this_hearth_refuses_the_database_with_what_to_do() {
        let e = unknown(&[1, 2, 3], &applied(&[1, 2, 3, 4, 5], 5), "/data/hearth.db").unwrap_err();
        let shown = e.to_string();
        assert!(matches!(e, StoreError::TooNew { floor: 5, .. }), "{e:?}");
        for part in [
            "/data/hearth.db",
            "migrations 4, 5",
            "migration 5",
            "backup",
        ] {
            assert!(shown.contains(part), "{part}: {shown}");
        }
    }
}
