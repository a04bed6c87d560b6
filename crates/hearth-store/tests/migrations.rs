//! The rule that lets a rollback cross migrations (see `src/schema.rs`): every
//! migration after the floor came only adds, or raises the floor to its own
//! number, so that an older Hearth never runs on tables it misreads.
#![allow(clippy::unwrap_used)]

use std::path::Path;

/// Each folder of migrations, and the first of its migrations the rule holds.
const FOLDERS: &[(&str, u32)] = &[("migrations", 6), ("migrations/postgres", 7)];

/// What an older Hearth's queries would trip on, in a migration's upper-cased SQL.
const BREAKING: &[&str] = &[
    "DROP ",
    "RENAME ",
    "ALTER COLUMN",
    "ADD CONSTRAINT",
    "UNIQUE",
    "DELETE FROM",
];

/// Why `sql` (migration `number`) would break an older Hearth without raising
/// the floor; `None` when it only adds, or raises the floor to `number`.
fn breaks(number: u32, sql: &str) -> Option<String> {
    let code: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
        .to_uppercase();
    let code = code.split_whitespace().collect::<Vec<_>>().join(" ");
    if code.contains(&format!("UPDATE SCHEMA_FLOOR SET VERSION = {number}")) {
        return None;
    }
    if let Some(word) = BREAKING.iter().find(|w| code.contains(*w)) {
        return Some(format!("it has `{}`", word.trim()));
    }
    // A new column an older Hearth's inserts leave out must have a value.
    for statement in code.split(';') {
        if statement.contains("ADD COLUMN")
            && statement.contains("NOT NULL")
            && !statement.contains("DEFAULT")
        {
            return Some(format!("`{}` has no DEFAULT", statement.trim()));
        }
    }
    None
}

#[test]
fn every_migration_since_the_floor_only_adds_or_raises_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for (folder, first) in FOLDERS {
        for entry in std::fs::read_dir(root.join(folder)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let Some(number) = name
                .split('_')
                .next()
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|_| name.ends_with(".sql"))
            else {
                continue;
            };
            if number < *first {
                continue;
            }
            seen += 1;
            let sql = std::fs::read_to_string(&path).unwrap();
            let why = breaks(number, &sql);
            assert!(
                why.is_none(),
                "{folder}/{name} would break an older Hearth after a rollback: {}. \
                 Only add (tables, nullable columns, indexes), or end it with \
                 `UPDATE schema_floor SET version = {number};`",
                why.unwrap_or_default()
            );
        }
    }
    assert!(seen >= 2, "the floor's own migrations were not found");
}

#[test]
fn the_rule_tells_adding_from_breaking() {
    assert_eq!(breaks(8, "ALTER TABLE jobs ADD COLUMN note TEXT;"), None);
    assert_eq!(
        breaks(8, "-- drop nothing\nCREATE INDEX a ON jobs (owner);"),
        None
    );
    assert_eq!(
        breaks(
            8,
            "ALTER TABLE jobs ADD COLUMN n INTEGER NOT NULL DEFAULT 0;"
        ),
        None
    );
    assert!(breaks(8, "ALTER TABLE jobs DROP COLUMN note;").is_some());
    assert!(breaks(8, "ALTER TABLE jobs RENAME COLUMN a TO b;").is_some());
    assert!(breaks(8, "ALTER TABLE jobs ADD COLUMN n INTEGER NOT NULL;").is_some());
    assert!(breaks(8, "CREATE UNIQUE INDEX a ON jobs (owner);").is_some());
    assert_eq!(
        breaks(
            8,
            "ALTER TABLE jobs DROP COLUMN note;\nUPDATE schema_floor SET version = 8;"
        ),
        None
    );
    // Raising it to another migration's number does not count.
    assert!(breaks(8, "DROP TABLE a;\nUPDATE schema_floor SET version = 7;").is_some());
}
