//! What a check found, and the two ways the report is shown: aligned lines for people
//! and a stable JSON object for scripts.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    /// Upper case for what needs attention, so it stands out in a column of `ok`.
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One finding. `remedy` is empty when the status is ok.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub group: &'static str,
    pub name: String,
    pub status: Status,
    /// One line: what was found.
    pub reason: String,
    /// What to do about it.
    pub remedy: String,
}

impl Check {
    pub fn ok(group: &'static str, name: impl Into<String>, reason: impl Into<String>) -> Self {
        Check {
            group,
            name: name.into(),
            status: Status::Ok,
            reason: one_line(reason.into()),
            remedy: String::new(),
        }
    }

    pub fn warn(
        group: &'static str,
        name: impl Into<String>,
        reason: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Self {
        Check {
            status: Status::Warn,
            remedy: one_line(remedy.into()),
            ..Check::ok(group, name, reason)
        }
    }

    pub fn fail(
        group: &'static str,
        name: impl Into<String>,
        reason: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Self {
        Check {
            status: Status::Fail,
            ..Check::warn(group, name, reason, remedy)
        }
    }
}

/// Tool output may span lines; a reason is one.
fn one_line(s: String) -> String {
    if s.contains('\n') {
        s.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        s
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub ok: usize,
    pub warn: usize,
    pub fail: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    pub summary: Summary,
}

impl Report {
    pub fn new(checks: Vec<Check>) -> Self {
        let mut summary = Summary::default();
        for c in &checks {
            match c.status {
                Status::Ok => summary.ok += 1,
                Status::Warn => summary.warn += 1,
                Status::Fail => summary.fail += 1,
            }
        }
        Report { checks, summary }
    }

    /// One aligned line per check, the remedy indented under each that is not ok,
    /// and the summary last.
    pub fn human(&self) -> Vec<String> {
        let group_w = self.checks.iter().map(|c| c.group.len()).max().unwrap_or(0);
        let name_w = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut lines = Vec::new();
        for c in &self.checks {
            lines.push(
                format!(
                    "{:<4}  {:<group_w$}  {:<name_w$}  {}",
                    c.status.label(),
                    c.group,
                    c.name,
                    c.reason
                )
                .trim_end()
                .to_owned(),
            );
            if c.status != Status::Ok && !c.remedy.is_empty() {
                lines.push(format!("      fix: {}", c.remedy));
            }
        }
        let s = self.summary;
        lines.push(format!(
            "{} ok, {} warn, {} fail{}",
            s.ok,
            s.warn,
            s.fail,
            if s.fail > 0 {
                ": fix the FAIL lines before serving"
            } else {
                ""
            }
        ));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_output_aligns_and_indents_remedies() {
        let r = Report::new(vec![
            Check::ok("gpu", "nvidia-smi", "driver 550.54.15, CUDA 12.4"),
            Check::warn("host", "data_dir", "3.1 GiB free", "free some space"),
            Check::fail("models", "qwen launcher", "no vllm\non PATH", "install it"),
        ]);
        insta::assert_snapshot!(r.human().join("\n"), @r"
        ok    gpu     nvidia-smi     driver 550.54.15, CUDA 12.4
        WARN  host    data_dir       3.1 GiB free
              fix: free some space
        FAIL  models  qwen launcher  no vllm; on PATH
              fix: install it
        1 ok, 1 warn, 1 fail: fix the FAIL lines before serving
        ");
        assert_eq!(
            r.summary,
            Summary {
                ok: 1,
                warn: 1,
                fail: 1
            }
        );
    }
}
