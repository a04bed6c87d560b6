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

/// Formats Unix seconds as RFC 3339 UTC (Howard Hinnant's days-to-civil).
pub fn rfc3339(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_051_045), "2026-11-30T15:04:05Z");
    }

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
