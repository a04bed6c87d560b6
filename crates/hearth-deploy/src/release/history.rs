//! The deploy history: one JSON line per event, appended, never rewritten.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// What a history line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Install,
    Upgrade,
    Rollback,
    AutoRollback,
    /// A GitOps service removed from its repository, stopped.
    Remove,
}

/// Whether the event left the host ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventOutcome {
    Ok,
    Failed,
}

/// One line of `var/lib/hearth/deploy-history.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// UTC, RFC 3339, to the second.
    pub time: String,
    pub action: Action,
    pub from: Option<String>,
    pub to: String,
    pub outcome: EventOutcome,
    pub message: String,
}

impl HistoryEntry {
    pub fn now(
        action: Action,
        from: Option<String>,
        to: impl Into<String>,
        outcome: EventOutcome,
        message: impl Into<String>,
    ) -> Self {
        HistoryEntry {
            time: now_rfc3339(),
            action,
            from,
            to: to.into(),
            outcome,
            message: message.into(),
        }
    }

    /// The JSON line, newline included, written in one `write` so that
    /// concurrent readers never see half an entry.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_else(|e| {
            // Serializing these plain fields cannot fail; keep a trace if it ever does.
            format!("{{\"error\":\"unserializable history entry: {e}\"}}")
        });
        line.push('\n');
        line
    }
}

/// Parses a history file, skipping lines that do not parse: a crash can tear
/// the last line, and one bad line must not hide the rest.
pub fn parse(text: &str) -> Vec<HistoryEntry> {
    text.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The current time as `YYYY-MM-DDTHH:MM:SSZ`, without a date crate.
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

pub use hearth_api::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_torn_lines_are_skipped() {
        let e = HistoryEntry::now(
            Action::AutoRollback,
            Some("0.2.0".into()),
            "0.1.0",
            EventOutcome::Ok,
            "not ready",
        );
        let line = e.to_line();
        assert!(line.contains("\"action\":\"auto-rollback\""), "{line}");
        let text = format!("{line}{{\"time\":\"2026-");
        assert_eq!(parse(&text), vec![e]);
    }
}
