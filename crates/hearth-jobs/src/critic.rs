//! The critic: ruff (lint, syntax) and bandit (security) run inside the sandbox on
//! the generated script, their JSON turned into [`Finding`]s, and the policy that
//! says which findings block the script from running.
//!
//! Both tools run in one sandbox run through a small driver (`critic.py`) that
//! prints one JSON object with each tool's exit code and output: one start-up cost,
//! and the tools never see anything but the script.

use hearth_sandbox::{Limits, Outcome, Spec};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::settings::{CriticPolicy, Severity};

/// Ruff's rules: its classic defaults (pyflakes and the pycodestyle errors), so a
/// new ruff release does not change what is reported.
pub const RUFF_RULES: &str = "E4,E7,E9,F";

/// The driver that runs both tools on `/sandbox/main.py`.
/// bandit runs as `python3 -m bandit`: its console script's `#!` names the venv's
/// host path, which the sandbox shows at `/opt/venv` instead.
pub const DRIVER: &str = r#"import json, subprocess, sys

def run(argv):
    p = subprocess.run(argv, capture_output=True, text=True)
    return {"code": p.returncode, "stdout": p.stdout, "stderr": p.stderr[-4000:]}

print(json.dumps({
    "ruff": run(["ruff", "check", "--no-cache", "--isolated", "--output-format", "json",
                 "--select", "E4,E7,E9,F", "/sandbox/main.py"]),
    "bandit": run([sys.executable, "-m", "bandit", "--format", "json", "--quiet",
                   "/sandbox/main.py"]),
}))
"#;

/// One thing a tool found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// `ruff` or `bandit`.
    pub tool: String,
    /// The tool's rule (`F821`, `invalid-syntax`, `B602`...).
    pub rule: String,
    pub line: u32,
    /// `error` (a syntax error), `warning` (other ruff findings), or bandit's
    /// `low`, `medium`, `high`.
    pub severity: String,
    pub message: String,
    /// This finding stops the script from running.
    pub blocking: bool,
}

/// The critic's verdict on one script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub findings: Vec<Finding>,
    pub blocked: bool,
}

/// The critic could not give a verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the critic could not check the script: {0}")]
pub struct CriticError(pub String);

/// The sandbox run that checks `script`.
pub fn spec(script: &str, limits: Limits) -> Spec {
    Spec {
        argv: vec!["python3".into(), "/sandbox/critic.py".into()],
        files: vec![
            ("main.py".into(), script.as_bytes().to_vec()),
            ("critic.py".into(), DRIVER.as_bytes().to_vec()),
        ],
        limits,
        ..Spec::default()
    }
}

/// Reads the driver's output into a verdict under `policy`.
pub fn review(outcome: &Outcome, policy: CriticPolicy) -> Result<Review, CriticError> {
    if !outcome.success() {
        return Err(CriticError(format!(
            "the check ended with {} ({})",
            outcome
                .exit_code
                .map(|c| format!("exit code {c}"))
                .or(outcome.signal.map(|s| format!("signal {s}")))
                .unwrap_or_else(|| "no status".into()),
            last_line(&outcome.stderr)
        )));
    }
    let v: Value = serde_json::from_str(outcome.stdout.trim())
        .map_err(|e| CriticError(format!("its output is not JSON: {e}")))?;
    let mut findings = ruff(v.get("ruff"))?;
    findings.extend(bandit(v.get("bandit"))?);
    for f in &mut findings {
        f.blocking = blocks(f, policy);
    }
    findings.sort_by(|a, b| (b.blocking, a.line).cmp(&(a.blocking, b.line)));
    let blocked = findings.iter().any(|f| f.blocking);
    Ok(Review { findings, blocked })
}

fn last_line(s: &str) -> &str {
    s.trim().lines().last().unwrap_or("no message")
}

fn blocks(f: &Finding, policy: CriticPolicy) -> bool {
    match f.tool.as_str() {
        "ruff" => policy.block_syntax_errors && f.severity == "error",
        "bandit" => match (policy.block_bandit, Severity::parse(&f.severity)) {
            (Some(min), Some(s)) => s >= min,
            _ => false,
        },
        _ => false,
    }
}

/// A tool's run as the driver reports it: its JSON output, or why there is none.
fn tool_output(run: Option<&Value>, tool: &str) -> Result<Value, CriticError> {
    let run = run.ok_or_else(|| CriticError(format!("{tool} did not run")))?;
    let stdout = run.get("stdout").and_then(Value::as_str).unwrap_or("");
    serde_json::from_str(stdout).map_err(|_| {
        let stderr = run.get("stderr").and_then(Value::as_str).unwrap_or("");
        CriticError(format!("{tool} failed: {}", last_line(stderr)))
    })
}

fn ruff(run: Option<&Value>) -> Result<Vec<Finding>, CriticError> {
    let out = tool_output(run, "ruff")?;
    let items = out
        .as_array()
        .ok_or_else(|| CriticError("ruff's output is not a list".into()))?;
    Ok(items
        .iter()
        .map(|i| {
            let code = i.get("code").and_then(Value::as_str);
            let message = i
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let syntax = code.is_none_or(|c| c == "invalid-syntax" || c == "E999")
                || message.starts_with("SyntaxError");
            Finding {
                tool: "ruff".into(),
                rule: code.unwrap_or("invalid-syntax").to_owned(),
                line: line(i.pointer("/location/row")),
                severity: if syntax { "error" } else { "warning" }.into(),
                message,
                blocking: false,
            }
        })
        .collect())
}

fn bandit(run: Option<&Value>) -> Result<Vec<Finding>, CriticError> {
    let out = tool_output(run, "bandit")?;
    Ok(out
        .get("results")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|r| Finding {
            tool: "bandit".into(),
            rule: r
                .get("test_id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            line: line(r.get("line_number")),
            severity: r
                .get("issue_severity")
                .and_then(Value::as_str)
                .unwrap_or("low")
                .to_ascii_lowercase(),
            message: r
                .get("issue_text")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            blocking: false,
        })
        .collect())
}

fn line(v: Option<&Value>) -> u32 {
    v.and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_sandbox::Usage;
    use serde_json::json;

    fn outcome(stdout: Value) -> Outcome {
        Outcome {
            exit_code: Some(0),
            signal: None,
            limit: None,
            stdout: stdout.to_string(),
            stdout_truncated: false,
            stderr: String::new(),
            stderr_truncated: false,
            files: Vec::new(),
            files_truncated: false,
            usage: Usage::default(),
            isolation: "namespaces",
            warnings: Vec::new(),
        }
    }

    fn driver(ruff: Value, bandit: Value) -> Outcome {
        outcome(json!({
            "ruff": {"code": 1, "stdout": ruff.to_string(), "stderr": ""},
            "bandit": {"code": 1, "stdout": bandit.to_string(), "stderr": ""},
        }))
    }

    #[test]
    fn syntax_errors_and_high_bandit_findings_block_the_rest_warn() {
        let o = driver(
            json!([
                {"code": "invalid-syntax", "message": "Expected `)`", "location": {"row": 5, "column": 8}},
                {"code": "F401", "message": "`os` imported but unused", "location": {"row": 1, "column": 8}},
            ]),
            json!({"errors": [], "results": [
                {"test_id": "B602", "issue_severity": "HIGH", "issue_text": "shell=True", "line_number": 3},
                {"test_id": "B404", "issue_severity": "LOW", "issue_text": "subprocess", "line_number": 1},
            ]}),
        );
        let r = review(&o, CriticPolicy::default()).unwrap();
        assert!(r.blocked);
        let got: Vec<_> = r
            .findings
            .iter()
            .map(|f| {
                (
                    f.tool.as_str(),
                    f.rule.as_str(),
                    f.line,
                    f.severity.as_str(),
                    f.blocking,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("bandit", "B602", 3, "high", true),
                ("ruff", "invalid-syntax", 5, "error", true),
                ("ruff", "F401", 1, "warning", false),
                ("bandit", "B404", 1, "low", false),
            ]
        );
        let lenient = CriticPolicy {
            block_syntax_errors: false,
            block_bandit: None,
        };
        assert!(!review(&o, lenient).unwrap().blocked);
        let strict = CriticPolicy {
            block_syntax_errors: true,
            block_bandit: Some(Severity::Low),
        };
        assert_eq!(
            review(&o, strict)
                .unwrap()
                .findings
                .iter()
                .filter(|f| f.blocking)
                .count(),
            3
        );
    }

    #[test]
    fn a_clean_script_passes_and_a_broken_tool_is_an_error() {
        let o = driver(json!([]), json!({"errors": [], "results": []}));
        assert_eq!(
            review(&o, CriticPolicy::default()).unwrap(),
            Review {
                findings: vec![],
                blocked: false
            }
        );
        let broken = outcome(json!({
            "ruff": {"code": 2, "stdout": "", "stderr": "ruff: command not found"},
            "bandit": {"code": 0, "stdout": "{}", "stderr": ""},
        }));
        let e = review(&broken, CriticPolicy::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains("ruff failed: ruff: command not found"),
            "{e}"
        );
    }
}
